package workers

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/proc"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/notify"
)

func TestWorkersShareTheSocket(t *testing.T) {
	h := startPool(t, testSpec(t, "http", 2))
	st := h.waitOnline(2)
	want := pids(st)
	seen := map[int]bool{}
	// Which worker accepts a connection is the kernel's choice; keep
	// asking until both have answered, within a bound.
	for i := 0; i < 5000 && len(seen) < 2; i++ {
		body, err := h.get()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		f := strings.Fields(body)
		pid, _ := strconv.Atoi(f[0])
		if !want[pid] {
			t.Fatalf("answer from pid %d, not a worker %v", pid, want)
		}
		seen[pid] = true
	}
	if len(seen) != 2 {
		t.Fatalf("only pids %v answered of %v", seen, want)
	}
}

func TestReadyOnlyWhenAllOnline(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	testenv.Gate(t, gate+"0")
	testenv.Gate(t, gate+"1")
	h := startPool(t, testSpec(t, "gated", 2, "CORRAL_TEST_GATE="+gate))
	testenv.OpenGate(t, gate+"0")
	h.waitFor("worker 0 online", func(st Status) bool { return st.Online == 1 })
	for _, m := range h.sys.all() {
		if strings.Contains(m, "READY=1") {
			t.Fatalf("READY=1 with one of two workers online: %q", m)
		}
	}
	testenv.OpenGate(t, gate+"1")
	i := h.sys.waitFor(t, 0, "READY=1")
	if m := h.sys.all()[i]; !strings.Contains(m, "STATUS=2/2 workers online · generation 1 · 0 restarts") {
		t.Errorf("READY=1 datagram %q lacks the status line", m)
	}
}

func TestNotifyFromStrangersIsIgnored(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	testenv.Gate(t, gate+"0")
	h := startPool(t, testSpec(t, "gated", 1, "CORRAL_TEST_GATE="+gate))
	c, err := net.Dial("unixgram", h.pool.opts.Notify.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, m := range []string{"READY=1", "online", "READY=1\x00", "garbage line", strings.Repeat("X", 5000)} {
		if _, err := c.Write([]byte(m)); err != nil && !strings.Contains(m, "XXXX") {
			t.Fatal(err)
		}
	}
	h.waitFor("the spoofed message counted", func(st Status) bool { return st.Ignored >= 2 && st.Dropped >= 2 })
	if st, _ := h.pool.Status(context.Background()); st.Online != 0 {
		t.Fatalf("a stranger's READY=1 brought a worker online: %+v", st)
	}
	testenv.OpenGate(t, gate+"0")
	h.waitOnline(1)
}

func TestReadyFromDescendant(t *testing.T) {
	h := startPool(t, testSpec(t, "child", 1))
	st := h.waitOnline(1)
	if st.Workers[0].Status != "child ready" {
		t.Errorf("worker status %q, want the child's STATUS=", st.Workers[0].Status)
	}
}

func TestWorkerEnvironmentAndFds(t *testing.T) {
	out := t.TempDir()
	h := startPool(t, testSpec(t, "fds", 1, "CORRAL_TEST_OUT="+out))
	st := h.waitOnline(1)
	b, err := os.ReadFile(filepath.Join(out, "fds-"+strconv.Itoa(st.Workers[0].PID)))
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, fd := range strings.Split(string(b), "\n") {
		// Go >= 1.25 opens the cgroup CPU limit files in every process,
		// this worker included: they are the worker's own.
		if !strings.Contains(fd, " /sys/fs/cgroup/") {
			fds = append(fds, fd)
		}
	}
	// 0 is /dev/null; 1 and 2 are the test's; 3 is the one listener.
	if len(fds) != 4 || !strings.HasPrefix(fds[0], "0 /dev/null") || !strings.HasPrefix(fds[3], "3 socket:") {
		t.Fatalf("worker started with fds %q, want stdin /dev/null, stdout, stderr and one socket", fds)
	}
}

func TestCrashRestartsWithBackoff(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	testenv.Gate(t, gate+"0")
	h := startPool(t, testSpec(t, "flaky", 1, "CORRAL_TEST_GATE="+gate),
		func(o *Options) { o.Backoff = Backoff{Initial: 20 * time.Millisecond, Max: 45 * time.Millisecond} })
	h.waitOnline(1)
	var starts []time.Time
	for i := 1; i <= 4; i++ {
		testenv.OpenGate(t, gate+"0") // the worker exits 1
		st := h.waitFor("restart "+strconv.Itoa(i), func(st Status) bool {
			return st.Restarts == i && st.Online == 1
		})
		starts = append(starts, st.Workers[0].Started)
		if got := st.Workers[0].LastExit; got != "exited with status 1" {
			t.Fatalf("last exit %q", got)
		}
	}
	// Delays 20, 30, 45 (capped) ms: each restart at least that long after
	// the crash, which came after the previous start.
	for i, min := range []time.Duration{30, 45, 45} {
		if d := starts[i+1].Sub(starts[i]); d < min*time.Millisecond {
			t.Errorf("restart %d came %v after the previous start, want at least %vms", i+2, d, min)
		}
	}
	if !strings.Contains(h.log.String(), "restarting in 30ms (restart 2)") {
		t.Errorf("log lacks the backoff schedule:\n%s", h.log)
	}
}

func TestNoWorkerEverOnline(t *testing.T) {
	h := startPool(t, testSpec(t, "crash", 2))
	err := h.wait()
	if err == nil || !strings.Contains(err.Error(), "no worker came online: worker") ||
		!strings.Contains(err.Error(), "exited with status 1 during start") {
		t.Fatalf("Run returned %v, want the reason no worker came online", err)
	}
}

func TestReadyTimeoutCountsAsFailure(t *testing.T) {
	spec := testSpec(t, "never", 1)
	spec.ReadyTimeout = 100 * time.Millisecond
	h := startPool(t, spec)
	err := h.wait()
	if err == nil || !strings.Contains(err.Error(), "did not come online within 100ms") {
		t.Fatalf("Run returned %v", err)
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	spec := testSpec(t, "stubborn", 2)
	spec.StopTimeout = 200 * time.Millisecond
	h := startPool(t, spec)
	st := h.waitOnline(2)
	if err := h.shutdown(); err != nil {
		t.Fatal(err)
	}
	for pid := range pids(st) {
		if err := syscall.Kill(pid, 0); err != syscall.ESRCH {
			t.Errorf("worker %d still exists after Run returned (kill 0: %v)", pid, err)
		}
	}
	if n := strings.Count(h.log.String(), "sending SIGKILL"); n != 2 {
		t.Errorf("%d SIGKILLs in the log, want 2:\n%s", n, h.log)
	}
	h.sys.waitFor(t, 0, "STOPPING=1")
}

func TestKillStopsAtOnce(t *testing.T) {
	spec := testSpec(t, "stubborn", 1)
	spec.StopTimeout = time.Hour
	h := startPool(t, spec)
	h.waitOnline(1)
	h.stop()
	h.waitFor("stopping", func(st Status) bool { return st.State == "stopping" })
	h.pool.Kill()
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
}

func TestStatusSaysWhichWorkerIsDown(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	testenv.Gate(t, gate+"0")
	testenv.Gate(t, gate+"1")
	h := startPool(t, testSpec(t, "flaky", 2, "CORRAL_TEST_GATE="+gate),
		func(o *Options) { o.Backoff = Backoff{Initial: time.Hour} })
	h.waitOnline(2)
	testenv.OpenGate(t, gate+"1")
	st := h.waitFor("worker 1 down", func(st Status) bool { return st.Online == 1 && st.Restarts == 1 })
	want := "1/2 workers online · generation 1 · 1 restarts · worker 1 down (exited with status 1; restart 1 pending)"
	if st.Line != want {
		t.Fatalf("status line %q, want %q", st.Line, want)
	}
	h.sys.waitFor(t, 0, "STATUS="+want)
}

func TestWatchdogPings(t *testing.T) {
	h := startPool(t, testSpec(t, "ready", 1), func(o *Options) {
		t.Setenv("WATCHDOG_USEC", "100000")
		t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
		o.Up = notify.NewUpstream()
	})
	h.waitOnline(1)
	i := h.sys.waitFor(t, 0, "WATCHDOG=1")
	h.sys.waitFor(t, i+1, "WATCHDOG=1")
}

// A worker's WATCHDOG=1 is logged, as the README says, once: at its first
// ping. Each worker pings three times and then sends READY=1 on the same
// socket; the pool handles a socket's datagrams in order, so once both are
// online every ping has been handled.
func TestWorkerWatchdogLoggedOnce(t *testing.T) {
	h := startPool(t, testSpec(t, "pinger", 2))
	st := h.waitOnline(2)
	log := h.log.String()
	for _, w := range st.Workers {
		line := fmt.Sprintf("worker %d (pid %d, generation %d): sent WATCHDOG=1", w.Slot, w.PID, w.Generation)
		if n := strings.Count(log, line); n != 1 {
			t.Errorf("%q logged %d times for 3 pings, want once; log:\n%s", line, n, log)
		}
	}
}

// A worker that never notifies is online once it accepts on the socket,
// and not while it only holds it.
func TestReadyListen(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	testenv.Gate(t, gate+"0")
	spec := testSpec(t, "plainhttp", 1, "CORRAL_TEST_GATE="+gate+"0")
	spec.Ready = ReadyListen
	h := startPool(t, spec)
	// Until the gate opens the worker holds the socket and serves nothing.
	st := h.waitFor("5 looks at the worker", func(st Status) bool { return st.Probes >= 5 })
	if st.Online != 0 {
		t.Fatalf("online before it served: %+v", st)
	}
	testenv.OpenGate(t, gate+"0")
	h.waitOnline(1)
	if body, err := h.get(); err != nil || body != "plain\n" {
		t.Fatalf("GET = %q, %v", body, err)
	}
	waitLog(t, h, "listening: pid", 1)
}

// Status carries corral's own figures, read from /proc: they are this
// process's, and a descriptor corral opens shows in them.
func TestStatusShowsCorralItself(t *testing.T) {
	h := startPool(t, testSpec(t, "ready", 1))
	st := h.waitOnline(1)
	c := st.Corral
	if c.PID != os.Getpid() || c.Threads < 1 || c.Goroutines < 1 || c.RSSBytes < 1<<20 || c.FDs < 5 {
		t.Fatalf("corral's figures %+v: want this process (%d), at least a thread, a goroutine, 1 MiB and 5 fds", c, os.Getpid())
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h.waitFor("one more fd in the status", func(st Status) bool { return st.Corral.FDs == c.FDs+1 })
}

// A stopped worker (SIGSTOP, a debugger, a job-control stop) cannot act
// on its stop signal until it runs again: as systemd does, the pool sends
// SIGCONT after the stop signal, so it drains and exits now instead of at
// the stop timeout's SIGKILL.
func TestStopWakesAStoppedWorker(t *testing.T) {
	spec := testSpec(t, "http", 1)
	spec.StopTimeout = time.Hour
	h := startPool(t, spec)
	pid := h.waitOnline(1).Workers[0].PID
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	h.waitFor("the worker stopped", func(Status) bool {
		st, err := proc.ReadStat(pid)
		return err == nil && st.State == 'T'
	})
	if err := h.shutdown(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h.log.String(), fmt.Sprintf("(pid %d, generation 1): exited with status 0 after stop", pid)) {
		t.Errorf("the stopped worker did not drain and exit 0:\n%s", h.log)
	}
}
