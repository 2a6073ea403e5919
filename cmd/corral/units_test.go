package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnitsWritesTheShippedUnits(t *testing.T) {
	dir := t.TempDir()
	out := runUnits(t, exitOK, "--dir", dir)
	for _, name := range []string{"corral@.service", "corral@.socket"} {
		want, err := os.ReadFile(filepath.Join("..", "..", "contrib", "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%v (output: %s)", err, out)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from contrib/systemd/%s", name, name)
		}
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, %v; want 0644", name, fi.Mode(), err)
		}
	}
	if !strings.Contains(out, "systemctl enable --now corral@APP.socket") {
		t.Errorf("output does not say what to run next:\n%s", out)
	}
}

func TestUnitsUnderAnotherName(t *testing.T) {
	dir := t.TempDir()
	runUnits(t, exitOK, "--template", "app", "--corral", "/opt/corral/bin/corral", "--dir", dir)
	tests := []struct {
		file     string
		want     []string
		wantNone string
	}{
		{
			file: "app@.service",
			want: []string{
				"Requires=app@%i.socket\n",
				"After=app@%i.socket ",
				"ExecStart=/opt/corral/bin/corral run --config /etc/corral/%i.toml\n",
				"ExecReload=+/opt/corral/bin/corral reload --config /etc/corral/%i.toml\n",
				"RuntimeDirectory=corral/%i\n",
				"Environment=CORRAL_UNIT=%n\n",
			},
			wantNone: "corral@",
		},
		{
			file:     "app@.socket",
			want:     []string{"ListenStream=/run/corral/%i.sock\n", "systemctl edit app@api.socket"},
			wantNone: "corral@",
		},
	}
	for _, tt := range tests {
		b, err := os.ReadFile(filepath.Join(dir, tt.file))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tt.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %q", tt.file, w)
			}
		}
		if strings.Contains(string(b), tt.wantNone) {
			t.Errorf("%s still holds %q", tt.file, tt.wantNone)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "corral@.service")); err == nil {
		t.Error("corral@.service was written too")
	}
}

func TestUnitsKeepsAUnitThatDiffers(t *testing.T) {
	dir := t.TempDir()
	mine := []byte("[Service]\nExecStart=/bin/true\n")
	service := filepath.Join(dir, "app@.service")
	if err := os.WriteFile(service, mine, 0o644); err != nil {
		t.Fatal(err)
	}
	runUnits(t, exitFailure, "-t", "app", "--dir", dir)
	if b, _ := os.ReadFile(service); !bytes.Equal(b, mine) {
		t.Error("app@.service was overwritten without --force")
	}
	if _, err := os.Stat(filepath.Join(dir, "app@.socket")); err == nil {
		t.Error("app@.socket was written although app@.service could not be")
	}
	runUnits(t, exitOK, "-t", "app", "--dir", dir, "--force")
	if b, _ := os.ReadFile(service); bytes.Equal(b, mine) {
		t.Error("app@.service was not overwritten with --force")
	}
	runUnits(t, exitOK, "-t", "app", "--dir", dir) // the same units again: nothing differs
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestUnitsPrint(t *testing.T) {
	out := runUnits(t, exitOK, "--template", "web", "--print")
	for _, w := range []string{"# web@.service\n", "# web@.socket\n", "Requires=web@%i.socket"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q", w)
		}
	}
}

func TestUnitsBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{name: "template with @", args: []string{"--template", "app@x"}},
		{name: "template with slash", args: []string{"--template", "a/b"}},
		{name: "empty template", args: []string{"--template", ""}},
		{name: "relative corral", args: []string{"--corral", "bin/corral"}},
		{name: "corral with a space", args: []string{"--corral", "/opt/my corral"}},
		{name: "argument", args: []string{"app"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			runUnits(t, exitUsage, append(tt.args, "--dir", dir)...)
			if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				t.Errorf("wrote %d files", len(entries))
			}
		})
	}
}

// runUnits runs `corral units args...` and checks that it failed as want
// says: exitOK, exitFailure or exitUsage, as corral would exit. It returns
// what the command printed.
func runUnits(t *testing.T, want int, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	err := unitsCommand(args, &out)
	got := exitOK
	switch {
	case errors.As(err, new(usageError)):
		got = exitUsage
	case err != nil:
		got = exitFailure
	}
	if got != want {
		t.Fatalf("corral units %s: exit %d (%v), want %d; output:\n%s", strings.Join(args, " "), got, err, want, out.String())
	}
	return out.String()
}

func TestUnitsForTheUserManager(t *testing.T) {
	dir := t.TempDir()
	out := runUnits(t, exitOK, "--user", "--dir", dir)
	for _, name := range []string{"corral@.service", "corral@.socket"} {
		want, err := os.ReadFile(filepath.Join("..", "..", "contrib", "systemd", "user", name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%v (output: %s)", err, out)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from contrib/systemd/user/%s", name, name)
		}
	}
	svc, _ := os.ReadFile(filepath.Join(dir, "corral@.service"))
	for _, want := range []string{"ExecStart=/usr/bin/corral run --config %E/corral/%i.toml\n", "WantedBy=default.target\n"} {
		if !strings.Contains(string(svc), want) {
			t.Errorf("the user service lacks %q", want)
		}
	}
	if strings.Contains(string(svc), "\nDynamicUser=") {
		t.Error("the user service sets DynamicUser=, which a user manager cannot apply")
	}
	if !strings.Contains(out, "systemctl --user") {
		t.Errorf("output does not say what to run next:\n%s", out)
	}
}
