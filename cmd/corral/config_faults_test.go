package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/testenv"
)

// TestConfigFaultsOnReload is the config faults row: a reload whose config
// file is deleted, unreadable, a directory or a named pipe, truncated, of a wrong type, with
// an unknown key, empty, or whose command no longer exists fails with the
// reason, and no worker is touched: the same workers serve the load
// throughout, and a reload of the fixed file works.
func TestConfigFaultsOnReload(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "api.toml")
	app := filepath.Join(dir, "app") // the command, a link to this test binary
	if err := os.Symlink(testExe(t), app); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	head := `command = ["` + app + `"]
instances = 2
listen = ["` + addr + `"]
stop_timeout = "10s"
`
	env := `
[environment]
CORRAL_TEST_WORKER = "http"
`
	good := head + env
	write := func(text string) { testenv.WriteFile(t, conf, text) }
	write(good)
	// As root, corral runs without CAP_DAC_OVERRIDE, so that a file of
	// mode 0000 is unreadable to it as to any other user.
	ctl := filepath.Join(dir, "control.sock")
	cmd := corralCmd(t, []string{"NOTIFY_SOCKET="}, "run", "--control", ctl, "--config", conf)
	if os.Geteuid() == 0 {
		setpriv := testenv.Need(t, "setpriv", "util-linux")
		cmd = exec.Command(setpriv, append([]string{"--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search", "--"}, cmd.Args...)...)
		cmd.Env = append(os.Environ(), "CORRAL_TEST_MAIN=1", "NOTIFY_SOCKET=")
	}
	in := startInstance(t, cmd, ctl)
	before := in.waitRunning(2)
	load := loadtest.Options{Addr: addr, NewConn: 2, KeepAlive: 2, Rate: 400}.Start()
	defer load.Stop()

	for _, fault := range []struct {
		name  string
		make  func()
		wants []string // in the reload's message
	}{
		{"deleted", func() { os.Remove(conf) }, []string{"read config", conf, "no such file or directory"}},
		{"unreadable", func() { os.Chmod(conf, 0) }, []string{"read config", conf, "permission denied"}},
		{"a directory", func() { os.Remove(conf); os.Mkdir(conf, 0o755) }, []string{"read config", conf, "not a regular file but a directory"}},
		{"a named pipe", func() { os.Remove(conf); syscall.Mkfifo(conf, 0o644) }, []string{"read config", conf, "not a regular file but a named pipe"}},
		{"truncated", func() { write(good[:20]) }, []string{conf, "line 1", "expected"}},
		{"empty", func() { write("") }, []string{"no command to run"}},
		{"wrong type", func() { write(head + "ready_timeout = 5\n" + env) }, []string{"ready_timeout", `"5"`, "30s"}},
		{"unknown key", func() { write(head + "instancs = 4\n" + env) }, []string{"unknown setting instancs", "known: command, instances"}},
		{"command gone", func() { os.Remove(app) }, []string{app}},
	} {
		fault.make()
		out, code := reloadCLI(t, ctl)
		t.Logf("%s: exit %d: %s", fault.name, code, out)
		if code != 1 || !strings.Contains(out, "no worker was touched, generation 1 keeps serving") {
			t.Errorf("reload with the config %s: exit %d: %s; want 1 and no worker touched", fault.name, code, out)
		}
		for _, w := range fault.wants {
			if !strings.Contains(out, w) {
				t.Errorf("reload with the config %s: the message lacks %q: %s", fault.name, w, out)
			}
		}
		if st := in.waitSettled(2); pidsOf(st) != pidsOf(before) || st.Generation != 1 {
			t.Fatalf("after a reload with the config %s: workers %v, generation %d; want %v, 1", fault.name, pidsOf(st), st.Generation, pidsOf(before))
		}
		// The fix.
		os.Remove(conf)
		write(good)
		os.Symlink(testExe(t), app)
	}
	if out, code := reloadCLI(t, ctl); code != 0 {
		t.Errorf("reload of the fixed config: exit %d: %s", code, out)
	}
	ok, failed, errs := load.Stop()
	if failed > 0 || ok == 0 {
		t.Errorf("%d requests ok, %d failed through the faults: %v", ok, failed, errs)
	}
}

// reloadCLI runs `corral reload` and returns its output and exit code.
func reloadCLI(t *testing.T, ctl string) (string, int) {
	t.Helper()
	cmd := corralCmd(t, nil, "reload", "--control", ctl)
	out, _ := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), cmd.ProcessState.ExitCode()
}
