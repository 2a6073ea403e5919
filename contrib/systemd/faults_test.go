package systemd_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corraldev/corral/control"
	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/workers"
)

// TestKilledMidReload is the systemd half of the reliability suite's row
// "corral SIGKILLed in the middle of a reload" (cmd/corral has the
// standalone half): corral is killed while `systemctl reload` replaces its
// workers, under load from clients that open a connection per request. No
// worker outlives it, systemd restarts the service, the new corral serves,
// and no connection is refused: the socket unit holds the socket, so the
// connections made meanwhile wait for the new workers.
func TestKilledMidReload(t *testing.T) {
	m := startManager(t)
	_, hello := buildBinaries(t)
	a := installApp(t, m, appOptions{instances: 2})
	m.mustSystemctl(t, "start", a.service())
	p := m.show(t, a.service(), "MainPID", "NRestarts")
	mainPID, _ := strconv.Atoi(p["MainPID"])
	load := loadtest.Options{Addr: a.addr, NewConn: 4}.Start()
	t.Cleanup(func() { load.Stop() })

	// The new release takes 2 s to start: the reload is still under way
	// when corral is killed, and so is the restarted corral's start.
	a.writeConfig(t, 2, hello, "-startup-delay", "2s")
	reloaded := make(chan error, 1)
	go func() {
		_, err := m.systemctl("reload", a.service())
		reloaded <- err
	}()
	var mid workers.Status
	testenv.WaitFor(t, 30*time.Second, "a candidate of the reload", func() bool {
		var err error
		mid, err = control.Status(context.Background(), a.control())
		for _, w := range mid.Workers {
			if err == nil && w.State == "candidate" {
				return true
			}
		}
		return false
	})
	var pids []int
	for _, w := range mid.Workers {
		pids = append(pids, w.PID)
	}
	procs := watch(t, append(pids, mainPID)...)
	if err := unix.Kill(mainPID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitExited(t, 5*time.Second, procs)
	gone := time.Since(killed)
	reloadErr := <-reloaded

	var q map[string]string
	testenv.WaitFor(t, time.Minute, "systemd to restart the service", func() bool {
		q = m.show(t, a.service(), "MainPID", "ActiveState", "NRestarts")
		return q["ActiveState"] == "active" && q["MainPID"] != p["MainPID"] && q["MainPID"] != "0"
	})
	restarted := time.Since(killed)
	load.Mark()
	st := a.status(t)
	served := pidOf(t, a.get(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	load.Wait(ctx, func(c loadtest.Counts) bool { return c.SinceMark.OK >= 100 })
	rep := load.Report()
	t.Logf("corral (pid %d) SIGKILLed with %d workers (%s): all gone %v later; systemctl reload: %v; active again %v later; %d requests ok, %d failed %v, none of them after the restart (%d ok since)",
		mainPID, len(pids), states(mid), gone.Round(time.Millisecond), reloadErr, restarted.Round(time.Millisecond), rep.OK, rep.Failed, rep.Kinds, rep.SinceMark.OK)
	if reloadErr == nil {
		t.Error("systemctl reload succeeded though corral was killed during it")
	}
	if st.Online != 2 || st.Generation != 1 || !workerPIDs(st)[served] {
		t.Errorf("the restarted corral: %d online, generation %d, answered by pid %d of %v", st.Online, st.Generation, served, workerPIDs(st))
	}
	if n := rep.Kinds["connection refused"]; n > 0 || rep.OK == 0 {
		t.Errorf("%d connections refused, %d requests answered: the socket must queue them while corral restarts", n, rep.OK)
	}
	// What fails is a request in flight in a worker as it is killed: one
	// a client, or two if a client's next connection went to another
	// worker in the same few milliseconds. Nothing fails once the
	// restarted corral serves.
	if rep.Failed > 8 || rep.SinceMark.Failed > 0 || rep.SinceMark.OK == 0 {
		t.Errorf("%d requests failed (%d after the restart, when %d were answered), want at most two a client, and none after the restart: %v",
			rep.Failed, rep.SinceMark.Failed, rep.SinceMark.OK, rep.Errs)
	}
}

// states lists the workers in st as "SLOT/GENERATION STATE".
func states(st workers.Status) string {
	s := ""
	for i, w := range st.Workers {
		if i > 0 {
			s += ", "
		}
		s += strconv.Itoa(w.Slot) + "/" + strconv.Itoa(w.Generation) + " " + w.State
	}
	return s
}
