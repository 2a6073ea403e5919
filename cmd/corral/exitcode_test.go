package main

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corraldev/corral/activation"
	"github.com/corraldev/corral/config"
)

// Exit status 2 is for what the user typed or configured: corral's unit has
// RestartPreventExitStatus=2, so systemd never restarts after it. Whatever
// fails at run time must exit 1, which systemd retries.

// workers.New fails at run time when it cannot read the sockets; before
// the fix that was a usage error, exit 2.
func TestPoolSetupFailureIsNotUsage(t *testing.T) {
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Command = []string{exe}
	if err := cfg.Instances.Set("1"); err != nil {
		t.Fatal(err)
	}
	spec, err := buildSpec(cfg, dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "not-a-socket"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	socks := []activation.Socket{{Name: "web", Addr: f.Name(), File: f}}
	pl := place{control: filepath.Join(dir, "control.sock")}
	err = supervise(pl, dir, spec, socks, newLogger(io.Discard), cgroups{}, nil)
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("supervise with a file for a socket = %v, want an error that it is not a socket", err)
	}
	if errors.As(err, new(usageError)) {
		t.Fatalf("supervise = %q, a usage error (exit 2); want a run-time failure (exit 1)", err)
	}
}

// The run-time failures a user meets on the command line exit 1.
func TestRunTimeFailuresExit1(t *testing.T) {
	dir := t.TempDir()
	exe, _ := os.Executable()
	busy := filepath.Join(dir, "busy", "control.sock")
	os.MkdirAll(filepath.Dir(busy), 0o700)
	ln, err := net.Listen("unix", busy)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	notify := filepath.Join(dir, "notify", "control.sock")
	os.MkdirAll(filepath.Dir(notify), 0o700)
	os.WriteFile(filepath.Join(dir, "notify", "notify.sock"), []byte("not a socket"), 0o600)
	for _, tc := range []struct {
		name    string
		control string
		want    []string
	}{
		{name: "control socket in use", control: busy, want: []string{busy, "another corral is running"}},
		{name: "control path not a socket", control: file, want: []string{file, "is not a socket"}},
		{name: "runtime directory", control: filepath.Join(file, "control.sock"), want: []string{"create runtime directory", "not a directory"}},
		{name: "notify socket", control: notify, want: []string{"notify.sock", "not a socket"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := corralCmd(t, []string{"CORRAL_TEST_WORKER=echo"},
				"run", "--control", tc.control, "--listen", "127.0.0.1:0", "--", exe)
			out, _ := cmd.CombinedOutput()
			if got := cmd.ProcessState.ExitCode(); got != 1 {
				t.Errorf("exit code %d, want 1; output:\n%s", got, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]
			for _, w := range tc.want {
				if !strings.Contains(last, w) {
					t.Errorf("last line %q lacks %q; output:\n%s", last, w, out)
				}
			}
		})
	}
}
