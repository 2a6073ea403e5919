package activation

import (
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseTrampoline(t *testing.T) {
	tests := []struct {
		args    []string
		fds     int
		cgroup  string
		journal string
		argv    []string
		wantErr string
	}{
		{args: []string{"fds=2", "--", "/srv/app", "-p", "8080"}, fds: 2, argv: []string{"/srv/app", "-p", "8080"}},
		{args: []string{"--", "/srv/app", "--", "x"}, argv: []string{"/srv/app", "--", "x"}},
		{args: []string{"fds=0", "--", "/a"}, argv: []string{"/a"}},
		{args: []string{"fds=1", "journal=api/0", "--", "/a"}, fds: 1, journal: "api/0", argv: []string{"/a"}},
		{args: []string{"journal=", "--", "/a"}, wantErr: `option "journal=": want journal=IDENTIFIER`},
		{args: []string{"cgroup=/sys/fs/cgroup/x", "--", "/a"}, cgroup: "/sys/fs/cgroup/x", argv: []string{"/a"}},
		{args: []string{"cgroup=x", "--", "/a"}, wantErr: `option "cgroup=x": want cgroup=/ABSOLUTE/PATH`},
		{args: []string{"fds=-1", "--", "/a"}, wantErr: `option "fds=-1": want fds=N`},
		{args: []string{"fds=x", "--", "/a"}, wantErr: `option "fds=x"`},
		{args: []string{"color=red", "--", "/a"}, wantErr: `unknown option "color=red"`},
		{args: []string{"fds=1", "--"}, wantErr: "want [fds=N] [cgroup=DIR] [journal=IDENTIFIER] -- PATH"},
		{args: []string{"fds=1", "/a"}, wantErr: `unknown option "/a"`},
		{args: nil, wantErr: "want [fds=N] [cgroup=DIR] [journal=IDENTIFIER] -- PATH"},
	}
	for _, tt := range tests {
		o, argv, err := parseTrampoline(tt.args)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseTrampoline(%q) error %v, want one containing %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || o.fds != tt.fds || o.cgroup != tt.cgroup || o.journal != tt.journal || !slices.Equal(argv, tt.argv) {
			t.Errorf("parseTrampoline(%q) = %+v, %q, %v; want %d, %q, %q, %q", tt.args, o, argv, err, tt.fds, tt.cgroup, tt.journal, tt.argv)
		}
	}
}

func TestListenEnv(t *testing.T) {
	if env := listenEnv(nil); env != nil {
		t.Errorf("listenEnv(nil) = %q, want nil", env)
	}
	env := listenEnv([]Socket{{Name: "http"}, {}, {Name: "admin"}})
	want := []string{"LISTEN_FDS=3", "LISTEN_FDNAMES=http:unknown:admin"}
	if !slices.Equal(env, want) {
		t.Errorf("listenEnv = %q, want %q", env, want)
	}
}

// TestTrampolineHandsOverListeners starts this test binary through the
// trampoline with two sockets and has it take them with go-systemd, which
// accepts them only when LISTEN_PID is its own PID.
func TestTrampolineHandsOverListeners(t *testing.T) {
	socks := mustOpen(t,
		ListenSpec{Name: "http", Network: "tcp", Address: "127.0.0.1:0"},
		ListenSpec{Name: "admin", Network: "unix", Address: filepath.Join(t.TempDir(), "admin.sock")},
	)
	c := startChild(t, trampolineHelper(t, "listeners", socks))
	if c.err != "" {
		t.Fatalf("child: %s; stderr:\n%s", c.err, &c.stderr)
	}
	want := []string{
		"listener admin " + socks[1].Addr,
		"listener http " + socks[0].Addr,
	}
	if !slices.Equal(c.report, want) {
		t.Errorf("child reported %q, want %q", c.report, want)
	}
	for _, s := range socks {
		if pid := dialPID(t, s.Addr); pid != c.pid {
			t.Errorf("%s answered from PID %d, want the started PID %d", s.Name, pid, c.pid)
		}
	}
	c.mustSucceed(t)
}

// TestTrampolineWithoutSockets checks that arguments pass through and that
// LISTEN_PID is not invented for a worker without sockets.
func TestTrampolineWithoutSockets(t *testing.T) {
	c := startChild(t, trampolineHelper(t, "env", nil, "a b", "", "--c"))
	want := []string{`args ["a b" "" "--c"]`, `LISTEN_PID "" false`}
	if !slices.Equal(c.report, want) {
		t.Errorf("child reported %q, want %q", c.report, want)
	}
	c.mustSucceed(t)
}

func TestTrampolineExecFailure(t *testing.T) {
	c := launchChild(t, &Worker{Path: "/nonexistent/app", Env: childEnv()})
	err := c.wait()
	if err == nil || err.Error() != "exited with status 127" {
		t.Fatalf("trampoline exit: %v; want status 127", err)
	}
	want := "corral: exec /nonexistent/app: no such file or directory\n"
	if got := c.stderr.String(); got != want {
		t.Errorf("trampoline said %q, want %q", got, want)
	}
}

func TestTrampolineMalformed(t *testing.T) {
	cmd := exec.Command(testBinary(t), TrampolineArg)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 127 || !strings.Contains(string(out), "want [fds=N] [cgroup=DIR] [journal=IDENTIFIER] -- PATH") {
		t.Fatalf("malformed trampoline call: %v, %q; want status 127 and usage", err, out)
	}
}
