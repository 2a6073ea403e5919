package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"

	"github.com/corraldev/corral/workers"
)

func TestServesOnNamedSockets(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	addr := testenv.FreeAddr(t)
	in := startCorral(t, "echo", "-i", "2", "--listen", "http="+addr, "--listen", "admin=unix:"+sock)
	st := in.waitRunning(2)
	seen := map[string]bool{}
	for i := 0; i < 5000 && len(seen) < 2; i++ {
		got, err := ask("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(got)
		if len(f) != 3 || f[1] != "http" || f[2] != "1" {
			t.Fatalf("answer %q, want PID http 1", got)
		}
		seen[f[0]] = true
	}
	for _, w := range st.Workers {
		if !seen[strconv.Itoa(w.PID)] {
			t.Errorf("worker %d never answered on the shared TCP socket (answers from %v)", w.PID, seen)
		}
	}
	got, err := ask("unix", sock)
	if err != nil || !strings.Contains(got, " admin 1") {
		t.Fatalf("unix socket answered %q, %v", got, err)
	}
}

func TestSocketActivation(t *testing.T) {
	tool := testenv.Need(t, "systemd-socket-activate", "systemd")
	addr := testenv.FreeAddr(t)
	exe, _ := os.Executable()
	control := filepath.Join(t.TempDir(), "control.sock")
	cmd := exec.Command(tool, "-l", addr, "--fdname=web",
		"-E", "CORRAL_TEST_MAIN=1", "-E", "CORRAL_TEST_WORKER=echo",
		exe, "run", "-i", "2", "--control", control, "--listen", "127.0.0.1:1", "--", exe)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=")
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("stderr:\n%s", stderr)
		}
	})
	// systemd-socket-activate listens, then starts corral at the first
	// connection, which waits in the queue until a worker accepts it.
	var first string
	var err error
	testenv.WaitFor(t, 30*time.Second, "the activated socket to answer", func() bool {
		first, err = ask("tcp", addr)
		return err == nil
	})
	if f := strings.Fields(first); len(f) != 3 || f[1] != "web" {
		t.Fatalf("answer %q, want the name web from --fdname", first)
	}
	in := &instance{t: t, control: control}
	st := in.waitRunning(2)
	seen := map[string]bool{}
	for i := 0; i < 5000 && len(seen) < 2; i++ {
		got, err := ask("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		seen[strings.Fields(got)[0]] = true
	}
	if len(seen) != 2 {
		t.Errorf("answers from %v, want both workers of %+v", seen, st.Workers)
	}
	if !strings.Contains(stderr.String(), "systemd passed 1 sockets; ignoring the listen setting") {
		t.Errorf("corral did not say it ignored --listen:\n%s", stderr)
	}
}

func TestSIGKILLedCorralLeavesNoWorker(t *testing.T) {
	in := startCorral(t, "echo", "-i", "2", "--listen", testenv.FreeAddr(t))
	st := in.waitRunning(2)
	in.cmd.Process.Kill()
	in.wait()
	for _, w := range st.Workers {
		testenv.WaitFor(t, 30*time.Second, "worker "+strconv.Itoa(w.PID)+" to die with corral", func() bool { return processGone(w.PID) })
	}
}

func TestSIGTERMDrainsAndExitsZero(t *testing.T) {
	in := startCorral(t, "echo", "-i", "2", "--listen", testenv.FreeAddr(t))
	st := in.waitRunning(2)
	in.cmd.Process.Signal(syscall.SIGTERM)
	if code := in.wait(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	for _, w := range st.Workers {
		if !processGone(w.PID) {
			t.Errorf("worker %d outlived corral", w.PID)
		}
	}
	if _, err := os.Stat(in.control); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
}

func TestSIGHUPReloads(t *testing.T) {
	in := startCorral(t, "echo", "-i", "1", "--listen", testenv.FreeAddr(t))
	before := in.waitRunning(1)
	in.cmd.Process.Signal(syscall.SIGHUP)
	testenv.WaitFor(t, 30*time.Second, "generation 2", func() bool {
		st, err := in.status()
		return err == nil && st.Generation == 2 && st.State == "running" && len(st.Workers) == 1
	})
	after := in.waitRunning(1)
	if after.Workers[0].PID == before.Workers[0].PID {
		t.Fatal("SIGHUP did not replace the worker")
	}
}

func TestReloadCommandRereadsConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "api.toml")
	write := func(s string) {
		if err := os.WriteFile(conf, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	exe, _ := os.Executable()
	write(`command = ["` + exe + `"]
instances = 1
listen = ["` + testenv.FreeAddr(t) + `"]
[environment]
CORRAL_TEST_WORKER = "echo"
`)
	in := startCorral(t, "echo", "--config", conf)
	in.waitRunning(1)
	reload := func() (string, int) {
		cmd := corralCmd(t, nil, "reload", "--control", in.control)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	write(strings.Replace(mustRead(t, conf), "instances = 1", "instances = 2", 1))
	if out, code := reload(); code != 0 || !strings.Contains(out, "reload done: generation 2 serves in 2 slots") {
		t.Fatalf("reload: exit %d: %s", code, out)
	}
	good := in.waitRunning(2)

	write(strings.Replace(mustRead(t, conf), "instances = 2", "instancs = 3", 1))
	out, code := reload()
	if code != 1 || !strings.Contains(out, `unknown setting instancs`) || !strings.Contains(out, "no worker was touched") {
		t.Fatalf("reload of a bad config: exit %d: %s", code, out)
	}
	write(strings.Replace(mustRead(t, conf), "instancs = 3", "instances = 2", 1))
	write(strings.Replace(mustRead(t, conf), `CORRAL_TEST_WORKER = "echo"`, `CORRAL_TEST_WORKER = "crash"`, 1))
	out, code = reload()
	if code != 1 || !strings.Contains(out, "exited with status 1 during start") || !strings.Contains(out, "generation 2 kept") {
		t.Fatalf("reload of a crashing release: exit %d: %s", code, out)
	}
	after := in.waitRunning(2)
	if pidsOf(after) != pidsOf(good) {
		t.Fatalf("failed reloads changed the workers: %v -> %v", pidsOf(good), pidsOf(after))
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func pidsOf(st workers.Status) string {
	var p []string
	for _, w := range st.Workers {
		p = append(p, strconv.Itoa(w.PID))
	}
	return strings.Join(p, " ")
}
