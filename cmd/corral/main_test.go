package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	corralact "github.com/corraldev/corral/activation"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/workers"
)

// The test binary plays corral itself (CORRAL_TEST_MAIN=1), corral's exec
// trampoline, and the workers (CORRAL_TEST_WORKER), so the tests run the
// real program with the race detector, on real processes and sockets.
func TestMain(m *testing.M) {
	corralact.MaybeRunTrampoline()
	if os.Getenv("CORRAL_TEST_MAIN") == "1" {
		os.Unsetenv("CORRAL_TEST_MAIN")
		main()
	}
	switch w := os.Getenv("CORRAL_TEST_WORKER"); w {
	case "":
	case "echo":
		os.Exit(echoWorker())
	case "storm":
		os.Exit(stormWorker())
	case "http":
		os.Exit(httpWorker())
	case "abuser":
		os.Exit(abuserWorker())
	case "contract":
		os.Exit(contractWorker())
	case "crash":
		fmt.Fprintln(os.Stderr, "test worker: crashing on start")
		os.Exit(1)
	default:
		fmt.Fprintf(os.Stderr, "no test worker %q\n", w)
		os.Exit(3)
	}
	code := m.Run()
	removeBuilt()
	os.Exit(code)
}

// echoWorker takes its sockets with go-systemd's activation.Listeners,
// which checks LISTEN_PID against its own PID, reports READY=1, and answers
// each connection with "PID NAME GENERATION\n".
func echoWorker() int {
	if err := startEcho(); err != nil {
		fmt.Fprintf(os.Stderr, "test worker: %v\n", err)
		return 4
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	daemon.SdNotify(false, daemon.SdNotifyReady)
	<-sigs
	return 0
}

// startEcho serves every inherited socket as echoWorker does.
func startEcho() error {
	named, err := activation.ListenersWithNames()
	if err != nil || len(named) == 0 {
		return fmt.Errorf("no listeners (LISTEN_PID=%s, pid %d): %v", os.Getenv("LISTEN_PID"), os.Getpid(), err)
	}
	for name, lns := range named {
		for _, ln := range lns {
			go serveEcho(ln, name)
		}
	}
	return nil
}

func serveEcho(ln net.Listener, name string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		fmt.Fprintf(c, "%d %s %s\n", os.Getpid(), name, os.Getenv("CORRAL_GENERATION"))
		c.Close()
	}
}

// corralCmd returns a command that runs corral with args.
func corralCmd(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), "CORRAL_TEST_MAIN=1"), env...)
	return cmd
}

// instance is a corral running in the background.
type instance struct {
	t       *testing.T
	cmd     *exec.Cmd
	control string
	stderr  *testenv.Buffer
	done    chan struct{}
	err     error
}

// startCorral runs `corral run ARGS -- TESTBINARY` with the worker kind,
// its control socket in a temporary directory. With --config in args the
// command comes from the config file.
func startCorral(t *testing.T, worker string, args ...string) *instance {
	t.Helper()
	if !strings.Contains(strings.Join(args, " "), "--config") {
		exe, _ := os.Executable()
		args = append(args, "--", exe)
	}
	return runCorral(t, []string{"CORRAL_TEST_WORKER=" + worker}, args...)
}

// runCorral runs `corral run --control TMP ARGS` in the background with env
// added, and stops it when the test ends.
func runCorral(t *testing.T, env []string, args ...string) *instance {
	t.Helper()
	control := filepath.Join(t.TempDir(), "control.sock")
	cmd := corralCmd(t, append(env, "NOTIFY_SOCKET="), append([]string{"run", "--control", control}, args...)...)
	return startInstance(t, cmd, control)
}

// startInstance starts cmd, a `corral run` whose control socket is at
// control, and stops it when the test ends.
func startInstance(t *testing.T, cmd *exec.Cmd, control string) *instance {
	t.Helper()
	in := &instance{t: t, cmd: cmd, control: control, stderr: &testenv.Buffer{}, done: make(chan struct{})}
	cmd.Stderr = in.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		in.err = cmd.Wait()
		close(in.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-in.done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("corral did not stop within 30s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("corral's stderr:\n%s", in.stderr)
		}
	})
	return in
}

// status runs `corral status --json`.
func (in *instance) status() (workers.Status, error) {
	var out bytes.Buffer
	cmd := corralCmd(in.t, nil, "status", "--json", "--control", in.control)
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return workers.Status{}, err
	}
	var st workers.Status
	err := json.Unmarshal(out.Bytes(), &st)
	return st, err
}

// waitRunning polls `corral status` until n workers serve, within a bound.
func (in *instance) waitRunning(n int) workers.Status {
	in.t.Helper()
	var st workers.Status
	testenv.WaitFor(in.t, 30*time.Second, fmt.Sprintf("%d workers running", n), func() bool {
		if in.done != nil {
			select {
			case <-in.done:
				in.t.Fatalf("corral exited with %v while starting", in.err)
			default:
			}
		}
		var err error
		st, err = in.status()
		return err == nil && st.State == "running" && st.Online == n && len(st.Workers) == n
	})
	return st
}

// wait waits for corral to exit and returns its exit code.
func (in *instance) wait() int {
	in.t.Helper()
	select {
	case <-in.done:
	case <-time.After(30 * time.Second):
		in.t.Fatalf("corral did not exit within 30s")
	}
	return in.cmd.ProcessState.ExitCode()
}

// ask connects to addr and returns the echo worker's answer.
func ask(network, addr string) (string, error) {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}

func processGone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}
