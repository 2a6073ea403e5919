package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every bad input is one line that names the value and the fix, exit code 2
// for what the user typed or configured and 1 for what failed at run time,
// and nothing left running or left behind.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyUDP, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busyUDP.Close()
	notExec := filepath.Join(dir, "app.js")
	os.WriteFile(notExec, []byte("console.log(1)"), 0o644)
	badConf := filepath.Join(dir, "bad.toml")
	os.WriteFile(badConf, []byte("instances = \"lots\"\n"), 0o644)
	typoConf := filepath.Join(dir, "typo.toml")
	os.WriteFile(typoConf, []byte("command = [\"/bin/true\"]\nlisten = [\":0\"]\ninstance = 2\n"), 0o644)
	exe, _ := os.Executable()

	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"no command", []string{"bogus"}, 2, []string{`unknown command "bogus"`, "corral help"}},
		{"unknown flag", []string{"run", "--instanses", "2"}, 2, []string{"unknown flag: --instanses", "corral run --help"}},
		{"instances not a number", []string{"run", "-i", "four", "--", "true"}, 2, []string{`instances "four"`, "max"}},
		{"bad address", []string{"run", "--listen", "localhost", "--", exe}, 2, []string{`--listen "localhost"`, "HOST:PORT"}},
		{"bad port", []string{"run", "--listen", ":99999", "--", exe}, 2, []string{"99999"}},
		{"udp without a colon", []string{"run", "--listen", "udp:5353", "--", exe}, 2, []string{`--listen "udp:5353"`, `did you mean "udp::5353"?`}},
		{"relative unixgram path", []string{"run", "--listen", "unixgram:log.sock", "--", exe}, 2, []string{"unixgram:/PATH"}},
		{"bad receive buffer", []string{"run", "--receive-buffer", "lots", "--listen", "udp::0", "--", exe}, 2, []string{`--receive-buffer`, `"lots"`, "300M"}},
		{"receive buffer too big", []string{"run", "--receive-buffer", "1G", "--listen", "udp::0", "--", exe}, 2, []string{"receive buffer 1G", "at most 512M"}},
		{"receive buffer without udp", []string{"run", "--receive-buffer", "4M", "--listen", ":0", "--", exe}, 2, []string{"receive_buffer 4M", "udp:HOST:PORT"}},
		{"no sockets", []string{"run", "--", exe}, 2, []string{"no sockets for the workers", "--listen"}},
		{"missing command", []string{"run", "--listen", ":0"}, 2, []string{"no command to run", "--"}},
		{"command not found", []string{"run", "--listen", ":0", "--", "no-such-app-here"}, 2, []string{`"no-such-app-here"`, "give the full path"}},
		{"not executable", []string{"run", "--listen", ":0", "--", notExec}, 2, []string{notExec, "node app.js"}},
		{"unreadable config", []string{"run", "--config", filepath.Join(dir, "missing.toml")}, 2, []string{"missing.toml", "no such file"}},
		{"bad config value", []string{"run", "--config", badConf}, 2, []string{"bad.toml", `instances "lots"`}},
		{"unknown config key", []string{"run", "--config", typoConf}, 2, []string{"unknown setting instance", "known: command, instances"}},
		{"bad duration", []string{"run", "--ready-timeout", "5", "--listen", ":0", "--", exe}, 2, []string{`"5"`, "30s"}},
		{"bad signal", []string{"run", "--stop-signal", "SIGNOPE", "--listen", ":0", "--", exe}, 2, []string{`"SIGNOPE"`, "SIGTERM"}},
		{"bad policy", []string{"run", "--reload-failure", "retry", "--listen", ":0", "--", exe}, 2, []string{`"retry"`, "keep-old"}},
		{"port in use", []string{"run", "--listen", busy.Addr().String(), "--", exe}, 1, []string{busy.Addr().String(), "already in use", "ss -ltnp"}},
		{"udp port in use", []string{"run", "--listen", "udp:" + busyUDP.LocalAddr().String(), "--", exe}, 1, []string{"udp:" + busyUDP.LocalAddr().String(), "already in use", "ss -lunp"}},
		{"reload with nothing running", []string{"reload", "--control", filepath.Join(dir, "none.sock")}, 1, []string{"no corral is running", "none.sock"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := corralCmd(t, []string{"CORRAL_TEST_WORKER=echo", "RUNTIME_DIRECTORY=" + t.TempDir()}, tc.args...)
			out, _ := cmd.CombinedOutput()
			if got := cmd.ProcessState.ExitCode(); got != tc.code {
				t.Errorf("exit code %d, want %d; output:\n%s", got, tc.code, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 {
				t.Errorf("want one line of error, got:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestReloadBadMainPID: corral reload reads $MAINPID, which systemd sets for
// ExecReload=, to check who serves the control socket; a value that is no
// PID is a usage error that names it.
func TestReloadBadMainPID(t *testing.T) {
	for _, v := range []string{"abc", "0", "-5"} {
		cmd := corralCmd(t, []string{"MAINPID=" + v}, "reload", "--control", filepath.Join(t.TempDir(), "none.sock"))
		out, _ := cmd.CombinedOutput()
		if got := cmd.ProcessState.ExitCode(); got != 2 || !strings.Contains(string(out), `MAINPID="`+v+`" is not a process ID`) {
			t.Errorf("MAINPID=%s: exit code %d, output:\n%s; want 2 and the value named", v, got, out)
		}
	}
}
