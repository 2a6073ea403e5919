package apps

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/corraldev/corral/config"
)

// The config Start writes is read back by config.Load as the same
// settings, whatever they are; a key of config.Config that configText
// cannot write fails here.
func TestConfigTextRoundTrips(t *testing.T) {
	cfg := config.Default()
	cfg.Command = []string{"/usr/bin/node", "/srv/app/server.js", "--flag=\"quoted\"", "tab\there"}
	if err := cfg.Instances.Set("-1"); err != nil {
		t.Fatal(err)
	}
	cfg.Ready, cfg.IPC, cfg.MaxSurge, cfg.ReloadFailure = "notify", "none", 3, "proceed"
	if err := cfg.ReadyTimeout.Set("1.5s"); err != nil {
		t.Fatal(err)
	}
	if err := cfg.StopTimeout.Set("2m"); err != nil {
		t.Fatal(err)
	}
	if err := cfg.StopSignal.Set("SIGQUIT"); err != nil {
		t.Fatal(err)
	}
	if err := cfg.MaxMemory.Set("300M"); err != nil {
		t.Fatal(err)
	}
	if err := cfg.MemoryLimit.Set("536870912"); err != nil {
		t.Fatal(err)
	}
	if err := cfg.ReceiveBuffer.Set("8M"); err != nil {
		t.Fatal(err)
	}
	cfg.WorkingDirectory = "/srv/app"
	cfg.Environment = map[string]string{"PORT": "3000", "NODE_ENV": "production", "WEIRD": "a \"b\" \\ c\n<&>"}
	cfg.Listen = []string{"127.0.0.1:1"}
	v := reflect.ValueOf(cfg)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("the test leaves config key %s unset: set it, so that its writing is tested", v.Type().Field(i).Tag.Get("toml"))
		}
	}
	text, err := configText("first line\nsecond line", cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "app.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(path)
	if err != nil {
		t.Fatalf("config.Load: %v\n%s", err, text)
	}
	if !reflect.DeepEqual(got, cfg) {
		t.Errorf("config.Load read back\n%+v\nwant\n%+v\nfrom\n%s", got, cfg, text)
	}
	if !strings.HasPrefix(text, "# first line\n# second line\n") {
		t.Errorf("the header is not a comment:\n%s", text)
	}
}

func TestConfigTextWritesOnlyWhatDiffers(t *testing.T) {
	cfg := config.Default()
	cfg.Command = []string{"/bin/app"}
	text, err := configText("h", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# h\ncommand = [\"/bin/app\"]\n"; text != want {
		t.Errorf("got %q, want %q", text, want)
	}
}

func TestCheckName(t *testing.T) {
	for _, good := range []string{"api", "shop-web", "api.v2", "a_b:c", "A1"} {
		if err := CheckName(good); err != nil {
			t.Errorf("CheckName(%q): %v", good, err)
		}
	}
	for _, tc := range []struct{ name, want string }{
		{"", "empty"},
		{"all", "reserved"},
		{"my app", `' ' is not allowed`},
		{"a/b", `'/' is not allowed`},
		{"a@b", `'@' is not allowed`},
		{".hidden", "not starting with '.'"},
		{"-x", "not starting with '.' or '-'"},
		{"é", "is not allowed"},
		{strings.Repeat("a", 201), "at most 200"},
	} {
		err := CheckName(tc.name)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckName(%q) = %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

func TestListenStream(t *testing.T) {
	for _, tc := range []struct{ in, listen, name string }{
		{":8080", "8080", ""},
		{"127.0.0.1:8080", "127.0.0.1:8080", ""},
		{"[::1]:8080", "[::1]:8080", ""},
		{"http=:80", "80", "http"},
		{"unix:/run/app.sock", "/run/app.sock", ""},
		{"tcp:127.0.0.1:8080", "127.0.0.1:8080", ""},
	} {
		l, n, err := ListenStream(tc.in)
		if err != nil || l != tc.listen || n != tc.name {
			t.Errorf("ListenStream(%q) = %q, %q, %v; want %q, %q", tc.in, l, n, err, tc.listen, tc.name)
		}
	}
	for _, bad := range []string{"8080", "127.0.0.1:0", "nohost", "unix:relative", "udp::5353", "dns=udp:127.0.0.1:53", "unixgram:/run/log.sock", "unixpacket:/run/seq.sock"} {
		if _, _, err := ListenStream(bad); !errors.Is(err, ErrBadInput) {
			t.Errorf("ListenStream(%q): %v, want a bad input error", bad, err)
		}
	}
	for _, bad := range []string{"0", "65536", "http", ""} {
		if _, err := PortListen(bad); !errors.Is(err, ErrBadInput) {
			t.Errorf("PortListen(%q): %v, want a bad input error", bad, err)
		}
	}
}

// PM2's interpreter rule: .js with node, .py with python3, anything else
// with itself; every program an absolute path.
func TestCommand(t *testing.T) {
	dir := t.TempDir()
	for name, mode := range map[string]os.FileMode{"app.js": 0o644, "app.py": 0o644, "run": 0o755, "data": 0o644} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
	}
	bin := func(name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			t.Skipf("%s: %v", name, err)
		}
		return p
	}
	for _, tc := range []struct {
		script, interp string
		args, want     []string
	}{
		{script: "app.js", args: []string{"a"}, want: []string{bin("node"), filepath.Join(dir, "app.js"), "a"}},
		{script: "app.py", want: []string{bin("python3"), filepath.Join(dir, "app.py")}},
		{script: "run", args: []string{"-x"}, want: []string{filepath.Join(dir, "run"), "-x"}},
		{script: "./run", want: []string{filepath.Join(dir, "run")}},
		{script: "sh", want: []string{bin("sh")}},
		{script: "data", interp: "sh", want: []string{bin("sh"), filepath.Join(dir, "data")}},
	} {
		got, err := Command(tc.script, tc.args, tc.interp, dir)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Command(%q, %q, %q) = %q, %v; want %q", tc.script, tc.args, tc.interp, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ script, want string }{
		{"missing.js", "no such file"},
		{"data", "not executable"},
		{"no-such-program-anywhere", "not found"},
	} {
		_, err := Command(tc.script, nil, "", dir)
		if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Command(%q): %v, want a bad input error saying %q", tc.script, err, tc.want)
		}
	}
}

func TestDefaultName(t *testing.T) {
	for _, tc := range []struct {
		command []string
		want    string
	}{
		{[]string{"/usr/bin/node", "/srv/app/server.js", "x"}, "server"},
		{[]string{"/usr/bin/python3", "-m", "http.server"}, "python3"},
		{[]string{"/srv/api/bin/api"}, "api"},
		{[]string{"/usr/bin/node", "/srv/app/app.config.cjs"}, "app.config"},
	} {
		if got := DefaultName(tc.command); got != tc.want {
			t.Errorf("DefaultName(%q) = %q, want %q", tc.command, got, tc.want)
		}
	}
}
