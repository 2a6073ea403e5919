package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/httpworker"
	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/proc"
	"github.com/corraldev/corral/internal/testenv"
)

// httpWorker serves HTTP with httpworker, answering "PID SLOT GENERATION".
// A worker of generation N in slot S first waits for the FIFO
// $CORRAL_TEST_GATES/gen-N-slot-S, or else gen-N, to be written, if it
// exists. A worker of generation $CORRAL_TEST_STUBBORN ignores SIGTERM.
func httpWorker() int {
	gen, slot := os.Getenv("CORRAL_GENERATION"), os.Getenv("CORRAL_WORKER_INDEX")
	if dir := os.Getenv("CORRAL_TEST_GATES"); dir != "" {
		for _, gate := range []string{"gen-" + gen + "-slot-" + slot, "gen-" + gen} {
			if _, err := os.Stat(filepath.Join(dir, gate)); err != nil {
				continue
			}
			if _, err := os.ReadFile(filepath.Join(dir, gate)); err != nil {
				fmt.Fprintln(os.Stderr, "test worker: gate:", err)
				return 6
			}
			break
		}
	}
	opts := httpworker.Options{}
	if os.Getenv("CORRAL_TEST_STUBBORN") == gen {
		signal.Ignore(syscall.SIGTERM)
		opts.Signals = []os.Signal{syscall.SIGUSR2} // never sent
	}
	id := fmt.Sprintf("%d %s %s\n", os.Getpid(), slot, gen)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(id)) })}
	if err := httpworker.Serve(context.Background(), srv, opts); err != nil {
		fmt.Fprintln(os.Stderr, "test worker:", err)
		return 1
	}
	return 0
}

// hungCorral runs corral with 2 http workers and flags, under load, and
// returns it with its gates' directory once both serve. The test runs in
// parallel with the other hung worker cases.
func hungCorral(t *testing.T, env []string, flags ...string) (*instance, string, *loadtest.Load) {
	t.Helper()
	t.Parallel()
	gates := t.TempDir()
	addr := testenv.FreeAddr(t)
	in := runCorral(t, append(env, "CORRAL_TEST_WORKER=http", "CORRAL_TEST_GATES="+gates),
		append(append([]string{"-i", "2", "--listen", addr}, flags...), "--", testExe(t))...)
	in.waitRunning(2)
	// Paced, so that the rows can run side by side on two cores.
	load := loadtest.Options{Addr: addr, NewConn: 2, KeepAlive: 2, Rate: 400}.Start()
	t.Cleanup(func() { load.Stop() })
	return in, gates, load
}

// TestHungWorkers is the hung worker row.
func TestHungWorkers(t *testing.T) {
	// A candidate stopped before it comes online misses its ready
	// timeout: the reload fails and says so, the candidate is stopped
	// (SIGTERM, then SIGCONT, which lets it die at once), and the old
	// workers keep serving without a failed request.
	t.Run("stopped candidate", func(t *testing.T) {
		in, gates, load := hungCorral(t, nil, "--ready-timeout", "3s", "--stop-timeout", "10s")
		before := in.waitRunning(2)
		testenv.Gate(t, filepath.Join(gates, "gen-2"))
		result := in.reloadAsync()
		cand := in.candidate(t)
		if err := syscall.Kill(cand, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		if in.candidate(t) != cand {
			t.Fatal("the reload moved on before the candidate was stopped: the machine is too slow for a 3s ready timeout")
		}
		r := <-result
		took := waitGone(t, 10*time.Second, cand)
		ok, failed, errs := load.Stop()
		t.Logf("reload with a stopped candidate: %q; the candidate gone %v after the result; %d requests ok, %d failed", r.Message, took.Round(time.Millisecond), ok, failed)
		if r.OK || !strings.Contains(r.Message, "worker 0 of generation 2 did not come online within 3s") || !strings.Contains(r.Message, "generation 1 kept") {
			t.Errorf("reload result %+v, want a failure that names worker 0, the ready timeout and generation 1 kept", r)
		}
		if after := in.waitRunning(2); pidsOf(after) != pidsOf(before) {
			t.Errorf("workers %v after the failed reload, want the old ones %v", pidsOf(after), pidsOf(before))
		}
		if failed > 0 || ok == 0 {
			t.Errorf("%d requests ok, %d failed: %v", ok, failed, errs)
		}
		if strings.Contains(in.stderr.String(), fmt.Sprintf("(pid %d, generation 2): still running", cand)) {
			t.Errorf("the stopped candidate needed SIGKILL: SIGCONT should have let it act on SIGTERM")
		}
	})

	// An old worker that ignores the stop signal gets SIGKILL at the stop
	// timeout; the reload itself succeeds once the new workers serve.
	t.Run("old worker ignores SIGTERM", func(t *testing.T) {
		in, _, load := hungCorral(t, []string{"CORRAL_TEST_STUBBORN=1"}, "--stop-timeout", "1s")
		before := in.waitRunning(2)
		r := <-in.reloadAsync()
		var old []int
		for _, w := range before.Workers {
			old = append(old, w.PID)
		}
		took := waitGone(t, 10*time.Second, old...)
		in.waitRunning(2)
		ok, failed, _ := load.Stop()
		t.Logf("reload with old workers that ignore SIGTERM: %q; they were gone %v after it; %d requests ok, %d failed (in flight in them at SIGKILL)", r.Message, took.Round(time.Millisecond), ok, failed)
		if !r.OK {
			t.Errorf("reload failed: %s", r.Message)
		}
		for _, pid := range old {
			waitLogCount(t, in, fmt.Sprintf("(pid %d, generation 1): was killed by signal 9 (SIGKILL) after stop", pid), 1)
			if !strings.Contains(in.stderr.String(), fmt.Sprintf("(pid %d, generation 1): still running 1s after SIGTERM; sending SIGKILL", pid)) {
				t.Errorf("worker %d: the log does not show SIGKILL at the stop timeout", pid)
			}
		}
		if took > 5*time.Second {
			t.Errorf("old workers gone %v after the reload, want about the 1s stop timeout", took)
		}
		if ok == 0 {
			t.Error("no request answered")
		}
	})

	// Old workers stopped when the reload begins get SIGTERM, then
	// SIGCONT: they drain and exit 0 at once, not at the stop timeout,
	// and nothing is lost.
	t.Run("stopped old workers", func(t *testing.T) {
		in, _, load := hungCorral(t, nil, "--stop-timeout", "30s")
		before := in.waitRunning(2)
		var old []int
		for _, w := range before.Workers {
			old = append(old, w.PID)
			if err := syscall.Kill(w.PID, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			testenv.WaitFor(t, 10*time.Second, "the worker stopped", func() bool {
				st, err := proc.ReadStat(w.PID)
				return err == nil && st.State == 'T'
			})
		}
		r := <-in.reloadAsync()
		took := waitGone(t, 20*time.Second, old...)
		ok, failed, errs := load.Stop()
		t.Logf("reload of stopped workers: %q; they were gone %v after it; %d requests ok, %d failed", r.Message, took.Round(time.Millisecond), ok, failed)
		if !r.OK {
			t.Errorf("reload failed: %s", r.Message)
		}
		for _, pid := range old {
			// Gone but not yet reaped is gone: wait for corral to say how.
			waitLogCount(t, in, fmt.Sprintf("(pid %d, generation 1): exited ", pid), 1)
			if !strings.Contains(in.stderr.String(), fmt.Sprintf("(pid %d, generation 1): exited with status 0 after stop", pid)) {
				t.Errorf("stopped worker %d did not drain and exit 0", pid)
			}
		}
		if failed > 0 || ok == 0 {
			t.Errorf("%d requests ok, %d failed: %v", ok, failed, errs)
		}
	})
}
