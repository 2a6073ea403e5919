package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/control"
	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/workers"
)

// TestSoak is the soak row: reloads of 2 workers back to back, under load
// from clients that open a new connection per request and clients that
// keep theirs alive, with the Go example and with the Node example. No
// request may fail, and corral's descriptors, threads, goroutines and
// memory, sampled at every tenth of the run with no worker draining, must
// stay flat; no child of corral may stay a zombie. 50 reloads in make test,
// 1,000 in make soak.
func TestSoak(t *testing.T) {
	reloads := 50
	if soakLong() {
		reloads = 1000
	}
	corral, hello := builtBinaries(t)
	t.Run("go", func(t *testing.T) { soak(t, corral, reloads, hello) })
	t.Run("node", func(t *testing.T) {
		node := testenv.Need(t, "node", "nodejs")
		app, err := filepath.Abs("../../examples/pm2-app/app.js")
		if err != nil {
			t.Fatal(err)
		}
		soak(t, corral, reloads, node, app)
	})
}

// soakSample is corral as it was after a number of reloads, once every
// worker they replaced had exited.
type soakSample struct {
	reloads int
	self    workers.Self
	ok      int64 // requests answered so far
	served  int   // workers that answered one
	ignored uint64
	zombies int // zombies seen, each reaped soon after
}

// soak runs corral with 2 workers of command under load and reloads it
// reloads times.
func soak(t *testing.T, corral string, reloads int, command ...string) {
	addr := testenv.FreeAddr(t)
	ctl := filepath.Join(t.TempDir(), "control.sock")
	cmd := exec.Command(corral, append([]string{"run", "-i", "2", "--listen", addr, "--control", ctl, "--"}, command...)...)
	cmd.Env = append(os.Environ(), "PORT="+addr[strings.LastIndexByte(addr, ':')+1:], "NOTIFY_SOCKET=")
	in := startInstance(t, cmd, ctl)
	in.waitRunning(2)
	load := loadtest.Options{Addr: addr, NewConn: 2, KeepAlive: 2}.Start()
	defer load.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if _, err := load.Wait(ctx, func(c loadtest.Counts) bool { return c.OK > 0 }); err != nil {
		t.Fatalf("no request answered before the reloads: %v", err)
	}
	cancel()

	every := max(reloads/10, 1)
	series := []soakSample{in.soakSample(t, 0, load)}
	start := time.Now()
	for i := 1; i <= reloads; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		r, err := control.Reload(ctx, ctl)
		cancel()
		if err != nil || !r.OK {
			t.Fatalf("reload %d: %v %s", i, err, r.Message)
		}
		if i%every == 0 {
			series = append(series, in.soakSample(t, i, load))
		}
	}
	took := time.Since(start)
	rep := load.Report()
	t.Logf("%d reloads in %v; %d requests answered, %d failed, on %d connections, by %d workers",
		reloads, took.Round(time.Millisecond), rep.OK, rep.Failed, rep.Conns, len(rep.ByPID))
	t.Logf("corral after N reloads (no worker draining):\n%s", soakTable(series))
	if rep.Failed > 0 {
		t.Errorf("%d requests failed during the reloads: %v", rep.Failed, rep.Errs)
	}
	// The load ran through the reloads: the workers of most generations
	// answered, and the keep-alive clients were moved by the drains.
	if len(rep.ByPID) < reloads || rep.OK < int64(10*reloads) {
		t.Errorf("the load did not span the reloads: %d requests answered by %d workers on %d connections, want at least %d workers and %d requests",
			rep.OK, len(rep.ByPID), rep.Conns, reloads, 10*reloads)
	}
	checkFlat(t, series)
}

// soakSample waits until exactly 2 workers run, all online, and samples
// corral with `corral status --json`.
func (in *instance) soakSample(t *testing.T, reloads int, load *loadtest.Load) soakSample {
	t.Helper()
	in.waitSettled(2)
	st, err := in.status()
	if err != nil {
		t.Fatalf("corral status --json: %v", err)
	}
	c := load.Counts()
	s := soakSample{reloads: reloads, self: st.Corral, ok: c.OK, served: len(c.ByPID), ignored: st.Ignored}
	if s.self.PID != in.cmd.Process.Pid {
		t.Fatalf("status reports corral as pid %d, it is %d", s.self.PID, in.cmd.Process.Pid)
	}
	s.zombies = checkNoZombie(t, s.self.PID)
	return s
}

// waitSettled polls corral's status until exactly n workers run, all
// online: no candidate left and no replaced worker still draining. It asks
// over the control socket itself, which is quicker than running `corral
// status` (waitRunning does that).
func (in *instance) waitSettled(n int) workers.Status {
	in.t.Helper()
	var st workers.Status
	testenv.WaitFor(in.t, time.Minute, fmt.Sprintf("exactly %d workers, all online", n), func() bool {
		var err error
		st, err = control.Status(context.Background(), in.control)
		return err == nil && st.State == "running" && st.Online == n && len(st.Workers) == n
	})
	return st
}

func soakTable(series []soakSample) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%8s %8s %9s %5s %8s %11s %10s %8s %8s %8s\n", "reloads", "RSS MiB", "heap MiB", "fds", "threads", "goroutines", "requests", "workers", "ignored", "zombies")
	for _, s := range series {
		fmt.Fprintf(&b, "%8d %8.1f %9.2f %5d %8d %11d %10d %8d %8d %8d\n", s.reloads, mib(s.self.RSSBytes), mib(s.self.HeapBytes),
			s.self.FDs, s.self.Threads, s.self.Goroutines, s.ok, s.served, s.ignored, s.zombies)
	}
	return b.String()
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// checkFlat fails t unless corral's figures stayed flat over the run.
//
// Memory: Go's heap fills up to the collector's minimum goal, 4 MiB,
// before its first collection, so corral's RSS climbs by about 5 MiB over
// the first hundred or so reloads and is flat after that, while the live
// heap stays under 1 MiB. So RSS is bounded at every sample, and in the
// long run its second half must not grow.
func checkFlat(t *testing.T, series []soakSample) {
	t.Helper()
	if len(series) < 3 {
		t.Fatalf("%d samples, want at least 3", len(series))
	}
	// The first reload makes what corral keeps for later ones (a thread
	// for the launches, the Node preload): compare from there.
	first := series[1]
	for _, s := range series[1:] {
		if s.self.FDs != first.self.FDs {
			t.Errorf("after %d reloads corral has %d fds, after %d it had %d", s.reloads, s.self.FDs, first.reloads, first.self.FDs)
		}
		if s.self.Threads > 12 {
			t.Errorf("after %d reloads corral runs %d threads, want at most 12 for 2 workers", s.reloads, s.self.Threads)
		}
		if s.self.Goroutines != first.self.Goroutines {
			t.Errorf("after %d reloads corral runs %d goroutines, after %d it ran %d", s.reloads, s.self.Goroutines, first.reloads, first.self.Goroutines)
		}
		if s.self.RSSBytes > 20<<20 || s.self.HeapBytes > 2<<20 {
			t.Errorf("after %d reloads corral's RSS is %.1f MiB and its live heap %.1f MiB, want at most 20 and 2", s.reloads, mib(s.self.RSSBytes), mib(s.self.HeapBytes))
		}
		if s.ignored > 0 {
			t.Errorf("after %d reloads corral ignored %d notify messages as a stranger's; the workers sent them all", s.reloads, s.ignored)
		}
	}
	if !soakLong() {
		return
	}
	half, last := series[len(series)/2], series[len(series)-1]
	if grow := last.self.RSSBytes - half.self.RSSBytes; grow > 1<<20 {
		t.Errorf("corral's RSS grew by %.1f MiB from reload %d to %d", mib(grow), half.reloads, last.reloads)
	}
}
