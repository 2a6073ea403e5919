package workers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/notify"
)

// reload asks for a reload and fails the test unless it ends as wantOK.
func (h *harness) reload(wantOK bool) ReloadResult {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := h.pool.Reload(ctx)
	if r.OK != wantOK {
		h.t.Fatalf("reload ok=%v, want %v: %s", r.OK, wantOK, r.Message)
	}
	return r
}

func TestReloadUnderLoadLosesNothing(t *testing.T) {
	for _, n := range []int{2, 4} {
		t.Run(fmt.Sprintf("workers=%d", n), func(t *testing.T) {
			h := startPool(t, testSpec(t, "http", n))
			before := pids(h.waitOnline(n))
			l := loadtest.Start(h.addr, 4, 4)
			for i := range 20 {
				r := h.reload(true)
				if r.Replaced != n || r.Generation != i+2 {
					t.Fatalf("reload %d: %+v", i, r)
				}
			}
			st := h.settle(n)
			ok, failed, errs := l.Stop()
			t.Logf("%d workers, 20 reloads: %d requests ok, %d failed", n, ok, failed)
			if failed > 0 || ok == 0 {
				t.Fatalf("%d of %d requests failed during reloads: %q", failed, ok+failed, errs)
			}
			for pid := range pids(st) {
				if before[pid] {
					t.Errorf("pid %d survived 20 reloads", pid)
				}
			}
			for _, w := range st.Workers {
				if w.Generation != 21 {
					t.Errorf("worker %+v not of generation 21", w)
				}
			}
		})
	}
}

func TestReloadSendsReloadingThenReady(t *testing.T) {
	h := startPool(t, testSpec(t, "http", 2))
	h.waitOnline(2)
	start := h.sys.waitFor(t, 0, "READY=1")
	h.reload(true)
	i := h.sys.waitFor(t, start+1, "RELOADING=1")
	msg := h.sys.all()[i]
	if !strings.Contains(msg, "MONOTONIC_USEC=") || !strings.Contains(msg, "STATUS=reloading: 0/2 replaced, generation 2") {
		t.Errorf("RELOADING=1 datagram %q lacks MONOTONIC_USEC= or the status", msg)
	}
	j := h.sys.waitFor(t, i+1, "READY=1")
	if msg := h.sys.all()[j]; !strings.Contains(msg, "STATUS=2/2 workers online · generation 2") {
		t.Errorf("READY=1 after reload: %q", msg)
	}
}

// brokenRelease reloads into spec and checks that the reload fails with
// reason, the old workers keep serving, and load sees no error.
func brokenRelease(t *testing.T, next Spec, reason string) {
	spec := testSpec(t, "http", 2)
	h := startPool(t, spec, func(o *Options) {
		o.Load = func() (Spec, error) { return next, nil }
	})
	before := h.waitOnline(2)
	l := loadtest.Start(h.addr, 2, 2)
	r := h.reload(false)
	if !strings.Contains(r.Message, reason) || !strings.Contains(r.Message, "generation 1 kept") {
		t.Errorf("reload message %q lacks %q or what was kept", r.Message, reason)
	}
	after := h.settle(2)
	ok, failed, errs := l.Stop()
	if failed > 0 || ok == 0 {
		t.Fatalf("%d of %d requests failed: %q", failed, ok+failed, errs)
	}
	if fmt.Sprint(pids(before)) != fmt.Sprint(pids(after)) || after.Generation != 1 {
		t.Fatalf("workers changed: before %v, after %v (generation %d)", pids(before), pids(after), after.Generation)
	}
	if !strings.Contains(after.Line, "last reload failed") {
		t.Errorf("status line %q does not say the reload failed", after.Line)
	}
}

func TestReloadOfCrashingReleaseKeepsOld(t *testing.T) {
	brokenRelease(t, testSpec(t, "crash", 2), "exited with status 1 during start")
}

func TestReloadOfNeverReadyReleaseKeepsOld(t *testing.T) {
	next := testSpec(t, "never", 2)
	next.ReadyTimeout = 200 * time.Millisecond
	brokenRelease(t, next, "did not come online within 200ms")
}

func TestReloadWithBadConfigTouchesNothing(t *testing.T) {
	h := startPool(t, testSpec(t, "http", 1), func(o *Options) {
		o.Load = func() (Spec, error) { return Spec{}, errors.New("config api.toml: unknown setting \"instancs\"") }
	})
	before := h.waitOnline(1)
	r := h.reload(false)
	if !strings.Contains(r.Message, "instancs") || !strings.Contains(r.Message, "no worker was touched") {
		t.Errorf("message %q", r.Message)
	}
	if after := h.waitOnline(1); after.Workers[0].PID != before.Workers[0].PID {
		t.Errorf("worker replaced by a failed reload")
	}
}

func TestReloadProceedPolicy(t *testing.T) {
	next := testSpec(t, "never", 1)
	next.ReadyTimeout = 100 * time.Millisecond
	next.ReloadFailure = Proceed
	h := startPool(t, testSpec(t, "http", 1), func(o *Options) {
		o.Load = func() (Spec, error) { return next, nil }
	})
	before := h.waitOnline(1)
	r := h.reload(true)
	if !strings.Contains(r.Message, "proceeded past failures") {
		t.Errorf("message %q", r.Message)
	}
	st := h.settle(1)
	if st.Workers[0].PID == before.Workers[0].PID || st.Generation != 2 {
		t.Errorf("proceed kept the old worker: %+v", st)
	}
}

func TestReloadKillsStubbornOldWorkers(t *testing.T) {
	spec := testSpec(t, "stubborn", 2)
	spec.StopTimeout = 100 * time.Millisecond
	h := startPool(t, spec)
	h.waitOnline(2)
	h.reload(true)
	h.settle(2)
	if n := strings.Count(h.log.String(), "sending SIGKILL"); n != 2 {
		t.Errorf("%d SIGKILLs, want 2:\n%s", n, h.log)
	}
}

func TestReloadsQueueAndCoalesce(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	testenv.Gate(t, gate+"0")
	spec := testSpec(t, "gated", 1, "CORRAL_TEST_GATE="+gate)
	h := startPool(t, spec)
	testenv.OpenGate(t, gate+"0")
	h.waitOnline(1)
	results := make(chan ReloadResult, 3)
	for range 3 {
		go func() { results <- h.pool.Reload(context.Background()) }()
	}
	// One reload runs (its candidate waits at the gate); two queue.
	h.waitFor("a reload running", func(st Status) bool { return st.State == "reloading" })
	waitLog(t, h, "queued to run after it", 2)
	testenv.OpenGate(t, gate+"0") // generation 2 comes online
	// A FIFO's writer reaches whoever has it open: wait until generation
	// 3's candidate is the one at the gate.
	h.waitFor("generation 3 starting", func(st Status) bool {
		return st.State == "reloading" && st.LastReload != nil && st.LastReload.Generation == 2
	})
	testenv.OpenGate(t, gate+"0") // generation 3, for both queued requests
	gens := map[int]int{}
	for range 3 {
		r := <-results
		if !r.OK {
			t.Fatalf("reload failed: %s", r.Message)
		}
		gens[r.Generation]++
	}
	if gens[2] != 1 || gens[3] != 2 {
		t.Fatalf("results by generation %v, want one of 2 and two of 3", gens)
	}
}

func waitLog(t *testing.T, h *harness, substr string, n int) {
	t.Helper()
	h.waitFor(fmt.Sprintf("%d log lines with %q", n, substr), func(Status) bool {
		return strings.Count(h.log.String(), substr) >= n
	})
}

func TestReloadScales(t *testing.T) {
	instances := 2
	h := startPool(t, testSpec(t, "http", 2), func(o *Options) {
		o.Load = func() (Spec, error) { return testSpec(t, "http", instances), nil }
	})
	h.waitOnline(2)
	instances = 3
	h.reload(true)
	st := h.settle(3)
	if st.Instances != 3 {
		t.Fatalf("after scaling up: %+v", st)
	}
	instances = 1
	h.reload(true)
	st = h.settle(1)
	if st.Workers[0].Slot != 0 || st.Generation != 3 {
		t.Fatalf("after scaling down: %+v", st)
	}
}

func TestStopDuringReload(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "gate")
	testenv.Gate(t, gate+"0")
	h := startPool(t, testSpec(t, "gated", 1, "CORRAL_TEST_GATE="+gate))
	testenv.OpenGate(t, gate+"0")
	h.waitOnline(1)
	result := make(chan ReloadResult, 1)
	go func() { result <- h.pool.Reload(context.Background()) }()
	st := h.waitFor("the candidate running", func(st Status) bool { return len(st.Workers) == 2 })
	if err := h.shutdown(); err != nil {
		t.Fatal(err)
	}
	if r := <-result; r.OK || !strings.Contains(r.Message, "reload aborted: corral is stopping") {
		t.Errorf("reload result %+v", r)
	}
	for pid := range pids(st) {
		if _, err := os.FindProcess(pid); err == nil && processExists(pid) {
			t.Errorf("pid %d outlived the pool", pid)
		}
	}
}

func TestManyReloadsLeakNothing(t *testing.T) {
	h := startPool(t, testSpec(t, "ready", 2))
	h.waitOnline(2)
	h.reload(true) // warm up: timers, goroutines, and the pool's channels
	h.settle(2)
	fds, goroutines := openFds(t), runtime.NumGoroutine()
	for range 200 {
		h.reload(true)
	}
	h.settle(2)
	if got := openFds(t); got != fds {
		t.Errorf("open fds %d after 200 reloads, %d before", got, fds)
	}
	if got := runtime.NumGoroutine(); got > goroutines+2 {
		t.Errorf("goroutines %d after 200 reloads, %d before", got, goroutines)
	}
	if z := zombies(t); len(z) > 0 {
		t.Errorf("zombie children: %v", z)
	}
}

// A worker's last datagram (STOPPING=1 as it exits, say) can reach the
// pool after its exit does, when the pool's goroutine takes the exit
// first: the datagram was queued on the socket before the exit, but the
// two come on different channels. It came from a worker all the same, so
// it is handled quietly, neither counted as a stranger's nor logged as
// one; a stranger's still is. The datagrams are put on the pool's channel
// directly: the order of two channels cannot be forced from outside.
func TestLateMessageOfAnExitedWorker(t *testing.T) {
	h := startPool(t, testSpec(t, "ready", 1))
	old := h.waitOnline(1).Workers[0].PID
	h.reload(true)
	before := h.settle(1)
	for _, pid := range []int{old, os.Getpid()} {
		h.pool.msgs <- notify.Message{PID: pid, Stopping: true, HasStatus: true, Status: "bye"}
	}
	st := h.waitFor("both handled", func(st Status) bool { return st.Received == before.Received+2 })
	if st.Ignored != before.Ignored+1 || strings.Count(h.log.String(), "which is not a worker") != 1 {
		t.Errorf("ignored %d -> %d, want +1: only the stranger's; log:\n%s", before.Ignored, st.Ignored, h.log)
	}
	if st.Workers[0].Status != "" || st.State != "running" {
		t.Errorf("the late datagram changed the pool: %+v", st)
	}
}

// A worker that cannot be started at all (here its directory is gone; an
// open file limit does the same) fails the reload with one clear reason,
// and at start ends Run with it.
func TestWorkerThatCannotStart(t *testing.T) {
	gone := filepath.Join(t.TempDir(), "gone")
	broken := testSpec(t, "ready", 1)
	broken.Dir = gone
	h := startPool(t, testSpec(t, "ready", 1), func(o *Options) {
		o.Load = func() (Spec, error) { return broken, nil }
	})
	h.waitOnline(1)
	r := h.reload(false)
	want := "reload failed: worker 0 of generation 2 could not be started: start " + broken.Path + ": working directory: stat " + gone + ": no such file or directory"
	if !strings.HasPrefix(r.Message, want) || !strings.HasSuffix(r.Message, "generation 1 kept") {
		t.Errorf("reload result %q, want %q ... generation 1 kept", r.Message, want)
	}

	h = startPool(t, broken)
	err := h.wait()
	if want := "no worker came online: worker 0 could not be started: start "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Run = %v, want %q...", err, want)
	}
}
