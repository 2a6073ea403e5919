package activation

import (
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestTrampolineCommand(t *testing.T) {
	path, args := TrampolineCommand("/srv/app", []string{"-p", "8080"})
	want := []string{TrampolineArg, "--", "/srv/app", "-p", "8080"}
	if path != "/proc/self/exe" || !slices.Equal(args, want) {
		t.Errorf("TrampolineCommand = %q, %q; want /proc/self/exe, %q", path, args, want)
	}
}

func TestEnv(t *testing.T) {
	if env := Env(nil); env != nil {
		t.Errorf("Env(nil) = %q, want nil", env)
	}
	env := Env([]Socket{{Name: "http"}, {}, {Name: "admin"}})
	want := []string{"LISTEN_FDS=3", "LISTEN_FDNAMES=http:unknown:admin"}
	if !slices.Equal(env, want) {
		t.Errorf("Env = %q, want %q", env, want)
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
		if pid := dialPID(t, s.Addr); pid != c.cmd.Process.Pid {
			t.Errorf("%s answered from PID %d, want the started PID %d", s.Name, pid, c.cmd.Process.Pid)
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
	cmd := trampolineHelper(t, "env", nil)
	cmd.Args[3] = "/nonexistent/app" // the command after "--"
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 127 {
		t.Fatalf("trampoline exit: %v; want status 127", err)
	}
	want := "corral: exec /nonexistent/app: no such file or directory\n"
	if string(out) != want {
		t.Errorf("trampoline said %q, want %q", out, want)
	}
}

func TestTrampolineMalformed(t *testing.T) {
	cmd := trampolineHelper(t, "env", nil)
	cmd.Args = cmd.Args[:2] // "/proc/self/exe __corral-exec-worker"
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 127 || !strings.Contains(string(out), "want -- PATH") {
		t.Fatalf("malformed trampoline call: %v, %q; want status 127 and usage", err, out)
	}
}
