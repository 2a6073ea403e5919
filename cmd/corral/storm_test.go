package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/corraldev/corral/control"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/workers"
)

// stormWorker crashes at start (exit 1) while the file $CORRAL_TEST_STORM
// exists. Otherwise it is an echo worker that crashes at SIGUSR1.
func stormWorker() int {
	if _, err := os.Stat(os.Getenv("CORRAL_TEST_STORM")); err == nil {
		fmt.Fprintln(os.Stderr, "test worker: crashing on start (storm)")
		return 1
	}
	if err := startEcho(); err != nil {
		fmt.Fprintf(os.Stderr, "test worker: %v\n", err)
		return 4
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGUSR1)
	daemon.SdNotify(false, daemon.SdNotifyReady)
	if <-sigs == syscall.SIGUSR1 {
		fmt.Fprintln(os.Stderr, "test worker: crashing (SIGUSR1)")
		return 1
	}
	return 0
}

// TestCrashStorm is the crash storm row: every worker crashes at once and
// then at each restart, for 5 s in make test and a minute in make soak.
// corral restarts each slot on the README's schedule (100 ms, then ×1.5
// up to 15 s), answers status all along, keeps its memory, and serves
// again once the app is fixed.
func TestCrashStorm(t *testing.T) {
	storm := 5 * time.Second
	if soakLong() {
		storm = time.Minute
	}
	corral, _ := builtBinaries(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "storm")
	addr := testenv.FreeAddr(t)
	ctl := filepath.Join(t.TempDir(), "control.sock")
	cmd := exec.Command(corral, "run", "-i", "2", "--listen", addr, "--control", ctl, "--", exe)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=", "CORRAL_TEST_WORKER=storm", "CORRAL_TEST_STORM="+marker)
	in := startInstance(t, cmd, ctl)
	before := in.waitRunning(2)

	// The storm: each worker crashes now, and every restart crashes.
	testenv.WriteFile(t, marker, "")
	for _, w := range before.Workers {
		if err := syscall.Kill(w.PID, syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
	}
	polls, slowest, peak := watchStatus(t, ctl, storm)
	// Between two crashes a slot is down, waiting for its restart, or
	// starting again: wait for a moment it is down to read what the
	// status line says of it.
	var during workers.Status
	testenv.WaitFor(t, 30*time.Second, "worker 0 down between two crashes", func() bool {
		during, err = control.Status(context.Background(), ctl)
		if err != nil {
			return false
		}
		for _, w := range during.Workers {
			if w.Slot == 0 {
				return false // starting again
			}
		}
		return true
	})

	// The fix: the next restart of each slot serves again.
	os.Remove(marker)
	fixed := time.Now()
	after := in.waitRunning(2)
	recovered := time.Since(fixed)
	if got, err := ask("tcp", addr); err != nil || !strings.HasSuffix(got, " unknown 1") {
		t.Fatalf("after the storm the workers answer %q, %v", got, err)
	}
	restarts := checkBackoff(t, in.stderr.String())
	t.Logf("storm of %v: %d restarts (%v); status answered %d times, the slowest in %v; corral's RSS at most %.1f MiB (%.1f before, %.1f after), live heap %.2f MiB; status during the storm: %q; recovered %v after the fix",
		storm, during.Restarts, restarts, polls, slowest.Round(time.Millisecond), mib(peak.RSSBytes),
		mib(before.Corral.RSSBytes), mib(after.Corral.RSSBytes), mib(after.Corral.HeapBytes), during.Line, recovered.Round(time.Millisecond))
	if !strings.Contains(during.Line, "worker 0 down (exited with status 1 during start; restart") {
		t.Errorf("the status line during the storm does not say worker 0 is down: %q", during.Line)
	}
	if after.Restarts < 2*4 {
		t.Errorf("%d restarts in a storm of %v, want at least 4 a slot", after.Restarts, storm)
	}
	if after.Corral.FDs != before.Corral.FDs || after.Corral.Goroutines != before.Corral.Goroutines {
		t.Errorf("corral had %d fds and %d goroutines before the storm, %d and %d after it",
			before.Corral.FDs, before.Corral.Goroutines, after.Corral.FDs, after.Corral.Goroutines)
	}
	if peak.RSSBytes > 20<<20 || after.Corral.HeapBytes > 2<<20 {
		t.Errorf("corral's RSS reached %.1f MiB and its live heap is %.1f MiB, want at most 20 and 2", mib(peak.RSSBytes), mib(after.Corral.HeapBytes))
	}
}

// watchStatus asks corral for its status 10 times a second for d, the
// length of the storm, failing t if an answer takes more than 2 s or does
// not come. It returns how many answers came, the slowest, and corral's
// figures when its RSS was highest.
func watchStatus(t *testing.T, ctl string, d time.Duration) (int, time.Duration, workers.Self) {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	end := time.After(d)
	var n int
	var slowest time.Duration
	var peak workers.Self
	for {
		select {
		case <-end:
			return n, slowest, peak
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		start := time.Now()
		st, err := control.Status(ctx, ctl)
		took := time.Since(start)
		cancel()
		if err != nil {
			t.Fatalf("status %d of the storm: %v", n+1, err)
		}
		n++
		slowest = max(slowest, took)
		if st.Corral.RSSBytes > peak.RSSBytes {
			peak = st.Corral
		}
	}
}

var (
	logTime   = `^(\d\d:\d\d:\d\d\.\d\d\d) corral: `
	startedRe = regexp.MustCompile(logTime + `worker (\d+) \(pid \d+, generation \d+\): started$`)
	crashedRe = regexp.MustCompile(logTime + `warning: worker (\d+) \(pid \d+, generation \d+\): exited with status 1`)
	restartRe = regexp.MustCompile(logTime + `worker (\d+): restarting in (\S+) \(restart (\d+)\)$`)
)

// checkBackoff checks corral's log of the storm: each slot's restarts wait the README's delays (100 ms, then ×1.5, at most
// 15 s), each as logged, and the next start comes no sooner. It returns the
// delays of slot 0.
func checkBackoff(t *testing.T, log string) []time.Duration {
	t.Helper()
	type slotLog struct {
		crashed time.Time       // the last crash
		delays  []time.Duration // as logged
		waited  []time.Duration // from each crash to the next start
	}
	slots := map[string]*slotLog{"0": {}, "1": {}}
	for _, line := range strings.Split(log, "\n") {
		var m []string
		if m = crashedRe.FindStringSubmatch(line); m == nil {
			if m = restartRe.FindStringSubmatch(line); m == nil {
				m = startedRe.FindStringSubmatch(line)
			}
		}
		if m == nil {
			continue
		}
		at, err := time.Parse("15:04:05.000", m[1])
		if err != nil {
			t.Fatal(err)
		}
		s := slots[m[2]]
		switch {
		case crashedRe.MatchString(line):
			s.crashed = at
		case restartRe.MatchString(line):
			d, err := time.ParseDuration(m[3])
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := strconv.Atoi(m[4]); n != len(s.delays)+1 {
				t.Errorf("slot %s: restart %d logged as restart %d", m[2], len(s.delays)+1, n)
			}
			s.delays = append(s.delays, d)
		case !s.crashed.IsZero():
			s.waited = append(s.waited, at.Sub(s.crashed))
			s.crashed = time.Time{}
		}
	}
	for name, s := range slots {
		want := 100 * time.Millisecond
		for i, d := range s.delays {
			if d != want.Round(time.Millisecond) {
				t.Errorf("slot %s: restart %d waits %v, want %v (%v)", name, i+1, d, want.Round(time.Millisecond), s.delays)
				break
			}
			if i < len(s.waited) && s.waited[i] < d-time.Millisecond {
				t.Errorf("slot %s: restart %d came %v after the crash, before its delay %v", name, i+1, s.waited[i], d)
			}
			want = min(time.Duration(float64(want)*1.5), 15*time.Second)
		}
		if len(s.delays) < 4 {
			t.Errorf("slot %s: %d restarts logged in the storm, want at least 4: %v", name, len(s.delays), s.delays)
		}
	}
	return slots["0"].delays
}
