package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/control"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/workers"
)

// TestKilledMidReload is the standalone half of the row "corral SIGKILLed
// in the middle of a reload" (contrib/systemd has the half under systemd).
// corral is killed with a worker of every kind alive: a replaced one
// still draining (it ignores SIGTERM), a new one online, an old one not
// yet replaced, and a candidate still starting. None outlives corral: each
// gets SIGKILL from its death signal. A corral started again on the same
// control socket replaces the stale sockets and serves.
func TestKilledMidReload(t *testing.T) {
	gates := t.TempDir()
	testenv.Gate(t, filepath.Join(gates, "gen-2-slot-1"))
	addr := testenv.FreeAddr(t)
	ctl := filepath.Join(t.TempDir(), "control.sock")
	env := []string{"NOTIFY_SOCKET=", "CORRAL_TEST_WORKER=http", "CORRAL_TEST_GATES=" + gates, "CORRAL_TEST_STUBBORN=1"}
	args := []string{"run", "-i", "2", "--listen", addr, "--control", ctl, "--stop-timeout", "1m", "--", testExe(t)}
	in := startInstance(t, corralCmd(t, env, args...), ctl)
	in.waitRunning(2)
	result := in.reloadAsync()

	var mid workers.Status
	testenv.WaitFor(t, 30*time.Second, "slot 0 replaced and slot 1's candidate starting", func() bool {
		var err error
		mid, err = control.Status(context.Background(), ctl)
		return err == nil && states(mid) == "0/1 stopping, 0/2 online, 1/1 online, 1/2 candidate"
	})
	in.cmd.Process.Kill()
	in.wait()
	var pids []int
	for _, w := range mid.Workers {
		pids = append(pids, w.PID)
	}
	took := waitGone(t, 5*time.Second, pids...)
	r := <-result
	t.Logf("corral SIGKILLed with workers %s: all %d gone %v after corral; the reload's client got %q",
		states(mid), len(pids), took.Round(time.Millisecond), r.Message)
	if r.OK || !strings.Contains(r.Message, "control socket") {
		t.Errorf("the reload's client got %+v, want an error from the control socket", r)
	}
	if took > time.Second {
		t.Errorf("the workers outlived corral by %v, want under 1s (the death signal)", took)
	}

	again := startInstance(t, corralCmd(t, env[:3], args...), ctl)
	st := again.waitRunning(2)
	if got := fmt.Sprint(len(st.Workers), st.Generation); got != "2 1" {
		t.Errorf("the restarted corral runs %s workers and generations", got)
	}
	if body := testenv.Get(t, addr); !strings.HasSuffix(body, " 1\n") {
		t.Errorf("the restarted corral's workers answer %q", body)
	}
}

// states lists the workers in st as "SLOT/GENERATION STATE", in order.
func states(st workers.Status) string {
	var s []string
	for _, w := range st.Workers {
		s = append(s, fmt.Sprintf("%d/%d %s", w.Slot, w.Generation, w.State))
	}
	return strings.Join(s, ", ")
}
