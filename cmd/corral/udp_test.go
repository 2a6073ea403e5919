package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/control"
	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/workers"
)

// udpRate is the datagrams per second the reload tests send: the issue's
// figure, each one answered. CORRAL_TEST_UDP_RATE sets another, to
// measure.
var udpRate = 5000

// udpBuffer is the receive buffer the reload tests give the socket, as the
// README advises: it holds 1.6 s of the load, so that a CI machine busy
// with other tests, which may keep every worker from reading for a moment,
// drops nothing; a reload that lost a datagram still shows.
const udpBuffer = "8M"

func init() {
	if n, err := strconv.Atoi(os.Getenv("CORRAL_TEST_UDP_RATE")); err == nil && n > 0 {
		udpRate = n
	}
}

// buildUDPEcho builds examples/udp-echo and returns its path.
func buildUDPEcho(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "udp-echo")
	build(t, bin, "../../examples/udp-echo")
	return bin
}

// startDatagrams starts a datagram load on addr, stopped when t ends.
func startDatagrams(t *testing.T, network, addr string) *loadtest.Datagrams {
	t.Helper()
	d, err := loadtest.DatagramOptions{Network: network, Addr: addr, Rate: udpRate}.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop() })
	return d
}

// waitAnswered waits until every PID of pids has answered a datagram of d.
func waitAnswered(t *testing.T, d *loadtest.Datagrams, pids []int) loadtest.DatagramCounts {
	t.Helper()
	return waitAnsweredSince(t, d, pids, loadtest.DatagramCounts{})
}

// waitAnsweredSince waits until every PID of pids has answered more
// datagrams of d than it had in since.
func waitAnsweredSince(t *testing.T, d *loadtest.Datagrams, pids []int, since loadtest.DatagramCounts) loadtest.DatagramCounts {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, err := d.Wait(ctx, func(c loadtest.DatagramCounts) bool {
		return !slices.ContainsFunc(pids, func(pid int) bool { return c.ByPID[pid] <= since.ByPID[pid] })
	})
	if err != nil {
		t.Fatalf("waiting for answers from every worker %v: %v; answers by PID %v", pids, err, c.ByPID)
	}
	return c
}

// TestUDPFanOut: two workers of the Go example on one UDP socket and one
// unix datagram socket both answer (each answer names its PID), and
// nothing else does.
func TestUDPFanOut(t *testing.T) {
	echo := buildUDPEcho(t)
	addr := testenv.FreeUDPAddr(t)
	path := filepath.Join(t.TempDir(), "log.sock")
	in := runCorral(t, nil, "-i", "2", "--listen", "dns=udp:"+addr, "--listen", "log=unixgram:"+path, "--", echo)
	st := waitServing(t, in, 2)
	pids := []int{st.Workers[0].PID, st.Workers[1].PID}
	for _, target := range []struct{ network, addr string }{{"udp", addr}, {"unixgram", path}} {
		d := startDatagrams(t, target.network, target.addr)
		waitAnswered(t, d, pids)
		r, err := d.Stop()
		if err != nil {
			t.Fatal(err)
		}
		if r.Lost != 0 || r.Duplicated != 0 || r.Stray != 0 || len(r.ByPID) != 2 {
			t.Errorf("%s %s: %d sent, %d lost, %d duplicated, %d stray, answers by PID %v; want every one answered once, by the 2 workers %v",
				target.network, target.addr, r.Sent, r.Lost, r.Duplicated, r.Stray, r.ByPID, pids)
		}
		t.Logf("%s: %d datagrams, answered by PID: %v", target.network, r.Sent, r.ByPID)
	}
	if log := in.stderr.String(); !strings.Contains(log, "socket udp:"+addr+" (dns) goes to every worker; receive buffer ") ||
		!strings.Contains(log, "socket unixgram:"+path+" (log) goes to every worker") {
		t.Errorf("corral did not log the sockets as --listen names them:\n%s", log)
	}
}

// reload asks in for a reload over its control socket, as `corral reload`
// does, in this process: a run of the race-enabled test binary as `corral
// reload` takes a second to start, which would space the reloads out.
func reload(t *testing.T, in *instance) workers.ReloadResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	r, err := control.Reload(ctx, in.control)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	return r
}

// waitServing is waitRunning, asking in this process, as reload does.
func waitServing(t *testing.T, in *instance, n int) workers.Status {
	t.Helper()
	var st workers.Status
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("%d workers running", n), func() bool {
		select {
		case <-in.done:
			t.Fatalf("corral exited with %v while starting", in.err)
		default:
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		var err error
		st, err = control.Status(ctx, in.control)
		return err == nil && st.State == "running" && st.Online == n && len(st.Workers) == n
	})
	return st
}

// reloadN runs n back-to-back reloads, each of which must succeed, and
// returns how long each took, as corral reports it.
func reloadN(t *testing.T, in *instance, n int) []time.Duration {
	t.Helper()
	var took []time.Duration
	for i := range n {
		r := reload(t, in)
		if !r.OK {
			t.Fatalf("reload %d failed: %s", i+1, r.Message)
		}
		took = append(took, r.Duration)
	}
	return took
}

// spread returns the minimum, median and maximum of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "(none)"
	}
	ds = slices.Sorted(slices.Values(ds))
	return fmt.Sprintf("min %v, median %v, max %v", ds[0], ds[len(ds)/2], ds[len(ds)-1])
}

// checkDatagrams fails t unless the load lost nothing, duplicated nothing,
// and ran: at least 90% of udpRate over its time, 1000 datagrams at the
// least, and answered by at least minPIDs workers. (Over 20 reloads, 42
// workers run; one that is replaced a few milliseconds after it came
// online may have read nothing.)
// reloadsUnderDatagrams reloads the 2 workers of in 20 times while a
// client sends numbered datagrams to addr: every datagram is answered
// once, the load reaches every generation's workers, and every worker is
// replaced. It returns the status of the last generation.
func reloadsUnderDatagrams(t *testing.T, in *instance, addr, what string) workers.Status {
	t.Helper()
	before := waitServing(t, in, 2)
	d := startDatagrams(t, "udp", addr)
	waitAnswered(t, d, pidList(before))
	took := reloadN(t, in, 20)
	after := waitServing(t, in, 2)
	waitAnswered(t, d, pidList(after)) // the load reached the last generation
	r, err := d.Stop()
	checkDatagrams(t, what, r, err, 21)
	t.Logf("reloads took %s", spread(took))
	if after.Generation != 21 || slices.ContainsFunc(pidList(after), func(pid int) bool { return slices.Contains(pidList(before), pid) }) {
		t.Errorf("workers not replaced: %v -> %v (generation %d)", pidList(before), pidList(after), after.Generation)
	}
	return after
}

func checkDatagrams(t *testing.T, what string, r loadtest.DatagramReport, err error, minPIDs int) {
	t.Helper()
	t.Logf("%s: %d datagrams sent in %v (%.0f/s), %d answered, %d lost (the kernel dropped %d at the workers' full buffer, %d answers at the client's), %d duplicated, %d stray; max wait for an answer %v; answered by %d workers",
		what, r.Sent, r.Elapsed.Round(time.Millisecond), r.Rate(), r.Answered, r.Lost, r.Dropped, r.ClientDropped, r.Duplicated, r.Stray, r.MaxLatency.Round(time.Microsecond), len(r.ByPID))
	switch {
	case err != nil:
		t.Errorf("%s: the load stopped early: %v", what, err)
	case r.Sent < int64(0.9*float64(udpRate)*r.Elapsed.Seconds()) || r.Sent < 1000:
		t.Errorf("%s: only %d datagrams sent in %v: the load did not run at %d/s", what, r.Sent, r.Elapsed, udpRate)
	case r.Lost != 0 || r.Duplicated != 0 || r.Stray != 0:
		t.Errorf("%s: %d lost (the first: %v; %d dropped by the kernel), %d duplicated, %d stray", what, r.Lost, r.LostSeqs, r.Dropped, r.Duplicated, r.Stray)
	case len(r.ByPID) < minPIDs:
		t.Errorf("%s: answered by %d workers (%v), want at least %d", what, len(r.ByPID), r.ByPID, minPIDs)
	}
}

// TestUDPReloadsLoseNothing is issue 13's headline for Go: 20 back-to-back
// reloads of two udp-echo workers while a client sends 5,000 numbered
// datagrams a second: every one is answered, once.
func TestUDPReloadsLoseNothing(t *testing.T) {
	echo := buildUDPEcho(t)
	addr := testenv.FreeUDPAddr(t)
	in := runCorral(t, nil, "-i", "2", "--listen", "udp:"+addr, "--receive-buffer", udpBuffer, "--", echo)
	reloadsUnderDatagrams(t, in, addr, "20 reloads of udp-echo")
}

// TestUDPBrokenRelease: 20 back-to-back reloads to a release that exits at
// start all fail, the old workers keep answering, and no datagram is lost.
func TestUDPBrokenRelease(t *testing.T) {
	echo := buildUDPEcho(t)
	addr := testenv.FreeUDPAddr(t)
	conf := filepath.Join(t.TempDir(), "udp.toml")
	write := func(args ...string) {
		testenv.WriteFile(t, conf, fmt.Sprintf("command = [%s]\ninstances = 2\nlisten = [\"udp:%s\"]\nreceive_buffer = %q\n",
			quoteAll(append([]string{echo}, args...)), addr, udpBuffer))
	}
	write()
	in := runCorral(t, nil, "--config", conf)
	before := waitServing(t, in, 2)
	d := startDatagrams(t, "udp", addr)
	waitAnswered(t, d, pidList(before))
	write("-fail")
	for i := range 20 {
		if r := reload(t, in); r.OK || !strings.Contains(r.Message, "exited with status 1 during start") ||
			!strings.Contains(r.Message, "generation 1 kept") {
			t.Fatalf("reload %d of a broken release: %+v", i+1, r)
		}
	}
	after := waitServing(t, in, 2)
	waitAnsweredSince(t, d, pidList(before), d.Counts()) // the old workers still answer
	r, err := d.Stop()
	checkDatagrams(t, "20 failed reloads of udp-echo", r, err, 2)
	if pidsOf(after) != pidsOf(before) {
		t.Errorf("the failed reloads changed the workers: %v -> %v", pidList(before), pidList(after))
	}
}

// quoteAll returns words as TOML strings, comma-separated.
func quoteAll(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = strconv.Quote(w)
	}
	return strings.Join(q, ", ")
}

// TestNodeDgramReloadsLoseNothing: the Node dgram app as Node's docs write
// it, unchanged (no shutdown handler, no process.send), in two workers:
// both answer, 20 reloads at 5,000 datagrams a second lose none, and 5
// reloads to a release that throws at start fail and lose none (the Go
// example's test makes 20; a node that throws at start takes longer).
func TestNodeDgramReloadsLoseNothing(t *testing.T) {
	node := testenv.Need(t, "node", "nodejs")
	app, err := filepath.Abs("../../examples/dgram-app/app.js")
	if err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeUDPAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	conf := filepath.Join(t.TempDir(), "dgram.toml")
	write := func(env string) {
		testenv.WriteFile(t, conf, fmt.Sprintf("command = [%s]\ninstances = 2\nlisten = [\"udp:%s\"]\nreceive_buffer = %q\n[environment]\nPORT = %q\n%s",
			quoteAll([]string{node, app}), addr, udpBuffer, port, env))
	}
	write("")
	in := runCorral(t, nil, "--config", conf)
	after := reloadsUnderDatagrams(t, in, addr, "20 reloads of the Node dgram app")
	if n := strings.Count(in.stderr.String(), "after 'shutdown'; sending"); n > 0 {
		t.Errorf("%d old workers needed the stop signal: the drained app should exit on 'shutdown'", n)
	}

	t.Run("broken release", func(t *testing.T) {
		d := startDatagrams(t, "udp", addr)
		waitAnswered(t, d, pidList(after))
		write("BROKEN_RELEASE = \"1\"\n")
		for i := range 5 {
			if r := reload(t, in); r.OK || !strings.Contains(r.Message, "exited with status 1 during start") {
				t.Fatalf("reload %d of a broken release: %+v", i+1, r)
			}
		}
		still := waitServing(t, in, 2)
		waitAnsweredSince(t, d, pidList(after), d.Counts())
		r, err := d.Stop()
		checkDatagrams(t, "5 failed reloads of the Node dgram app", r, err, 2)
		if pidsOf(still) != pidsOf(after) {
			t.Errorf("the failed reloads changed the workers: %v -> %v", pidList(after), pidList(still))
		}
	})
}
