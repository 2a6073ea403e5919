package systemd_test

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"

	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/workers"
	"golang.org/x/sys/unix"
)

// greeting is what the example app answers.
var greeting = regexp.MustCompile(`^hello from worker (\d+) \(pid (\d+), generation (\d+)\)\n$`)

// pidOf returns the worker PID in a greeting.
func pidOf(t testing.TB, body string) int {
	t.Helper()
	m := greeting.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("unexpected answer %q", body)
	}
	pid, _ := strconv.Atoi(m[2])
	return pid
}

// TestStartBySocket: the first connection starts the service; systemd
// calls it active only once every worker is online; the workers serve;
// systemd's status line is corral's.
func TestStartBySocket(t *testing.T) {
	m := startManager(t)
	_, hello := buildBinaries(t)
	a := installApp(t, m, appOptions{instances: 2, command: []string{hello, "-startup-delay", "500ms"}})
	m.mustSystemctl(t, "start", a.socket())
	if got := m.show(t, a.service(), "ActiveState")["ActiveState"]; got != "inactive" {
		t.Fatalf("before any connection the service is %s, want inactive", got)
	}

	// Watch the service's state and status line while the first
	// connection starts it.
	snaps := make(chan []snapshot, 1)
	go func() {
		var seen []snapshot
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			p, err := m.props(a.service(), "ActiveState", "StatusText")
			if err != nil {
				break
			}
			seen = append(seen, snapshot{state: p["ActiveState"], status: p["StatusText"]})
			if p["ActiveState"] == "active" || p["ActiveState"] == "failed" {
				break
			}
		}
		snaps <- seen
	}()
	first := pidOf(t, a.get(t))
	seen := <-snaps
	if len(seen) == 0 {
		t.Fatal("systemctl show failed while the service started")
	}

	activating := false
	for _, s := range seen {
		switch s.state {
		case "activating":
			activating = true
		case "active":
			if !strings.HasPrefix(s.status, "2/2 workers online") {
				t.Errorf("active with status %q: systemd was told READY=1 before every worker was online", s.status)
			}
		}
	}
	if last := seen[len(seen)-1]; last.state != "active" {
		t.Fatalf("the service ended up %s (%q), want active; states seen: %s", last.state, last.status, summarize(seen))
	}
	if !activating {
		t.Errorf("never saw the service activating; states seen: %s", summarize(seen))
	}
	t.Logf("states seen while the first connection started the service: %s", summarize(seen))

	st := a.status(t)
	if st.State != "running" || st.Online != 2 || len(st.Workers) != 2 {
		t.Fatalf("corral status: %s, %d online, %d workers; want running, 2, 2", st.State, st.Online, len(st.Workers))
	}
	if got := m.show(t, a.service(), "StatusText")["StatusText"]; got != st.Line {
		t.Errorf("systemd's StatusText is %q, corral's status line %q", got, st.Line)
	}
	pids := workerPIDs(st)
	if !pids[first] {
		t.Errorf("the first request was answered by pid %d, not a worker (%v)", first, pids)
	}
	served := map[int]bool{first: true}
	testenv.WaitFor(t, 20*time.Second, "every worker to answer a request", func() bool {
		pid := pidOf(t, a.get(t))
		if !pids[pid] {
			t.Fatalf("answered by pid %d, not a worker (%v)", pid, pids)
		}
		served[pid] = true
		return len(served) == len(pids)
	})
}

// waitActive waits until systemd calls unit active. A worker may answer
// a request before corral learned it is online: the socket accepts
// connections whether the service is ready or not.
func waitActive(t testing.TB, m *manager, unit string) map[string]string {
	t.Helper()
	var p map[string]string
	testenv.WaitFor(t, 30*time.Second, unit+" to be active", func() bool {
		p = m.show(t, unit, "ActiveState", "StatusText", "MainPID")
		return p["ActiveState"] == "active"
	})
	return p
}

// snapshot is a unit's state and status line at one moment.
type snapshot struct{ state, status string }

// summarize lists snapshots, each run of equal ones once with its count.
func summarize(snaps []snapshot) string {
	var parts []string
	for i := 0; i < len(snaps); {
		j := i
		for j < len(snaps) && snaps[j] == snaps[i] {
			j++
		}
		parts = append(parts, fmt.Sprintf("%s %q ×%d", snaps[i].state, snaps[i].status, j-i))
		i = j
	}
	return strings.Join(parts, ", ")
}

// TestReloadUnderLoad: `systemctl reload` 20 times while clients send
// requests on new and kept-alive connections: none fails, each reload
// returns once the new generation serves every slot, and every reload
// replaces every worker.
func TestReloadUnderLoad(t *testing.T) {
	for _, n := range []int{2, 4} {
		t.Run(fmt.Sprintf("%d_workers", n), func(t *testing.T) { reloadUnderLoad(t, n, 20) })
	}
}

func reloadUnderLoad(t testing.TB, n, reloads int) {
	m := startManager(t)
	a := installApp(t, m, appOptions{instances: n})
	m.mustSystemctl(t, "start", a.service()) // Requires= starts the socket first
	if got := m.show(t, a.socket(), "ActiveState")["ActiveState"]; got != "active" {
		t.Fatalf("starting the service left its socket %s, want active", got)
	}
	prev := a.status(t)
	load := startLoad(t, a)

	var took, inCorral []time.Duration
	for i := 1; i <= reloads; i++ {
		start := time.Now()
		m.mustSystemctl(t, "reload", a.service())
		took = append(took, time.Since(start))
		st := a.status(t)
		if st.LastReload != nil {
			inCorral = append(inCorral, st.LastReload.Duration)
		}
		checkGeneration(t, st, n, prev.Generation+1)
		for pid := range onlinePIDs(st) {
			if onlinePIDs(prev)[pid] {
				t.Fatalf("reload %d: worker pid %d was not replaced", i, pid)
			}
		}
		p := m.show(t, a.service(), "ActiveState", "StatusText")
		if p["ActiveState"] != "active" || !strings.Contains(p["StatusText"], fmt.Sprintf("generation %d", st.Generation)) {
			t.Fatalf("reload %d: systemd says %s, %q", i, p["ActiveState"], p["StatusText"])
		}
		prev = st
	}
	ok, failed, errs := load.stop()
	if failed > 0 || ok == 0 {
		t.Errorf("%d reloads of %d workers: %d requests ok, %d failed: %v", reloads, n, ok, failed, errs)
	}
	t.Logf("%d workers, %d reloads under load: systemctl reload took %s; corral's rolling replacement %s; %d requests ok, %d failed",
		n, reloads, spread(took), spread(inCorral), ok, failed)
}

// spread returns the minimum, median and maximum of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "(none)"
	}
	ds = slices.Sorted(slices.Values(ds))
	r := func(d time.Duration) time.Duration { return d.Round(100 * time.Microsecond) }
	return fmt.Sprintf("min %v, median %v, max %v", r(ds[0]), r(ds[len(ds)/2]), r(ds[len(ds)-1]))
}

// checkGeneration fails t unless st shows n online workers, all of
// generation gen; the workers they replaced may still be draining.
func checkGeneration(t testing.TB, st workers.Status, n, gen int) {
	t.Helper()
	if st.State != "running" || st.Generation != gen || st.Online != n {
		t.Fatalf("after the reload: %s, generation %d, %d online; want running, %d, %d (%q)",
			st.State, st.Generation, st.Online, gen, n, st.Line)
	}
	for _, w := range st.Workers {
		if w.State == "online" && w.Generation != gen || w.State != "online" && w.State != "stopping" {
			t.Fatalf("after the reload: worker %d (pid %d) is %s, of generation %d; want online of %d, or stopping", w.Slot, w.PID, w.State, w.Generation, gen)
		}
	}
}

// TestBrokenRelease: a reload of a release that fails at start makes
// `systemctl reload` fail and `systemctl status` say why, and the old
// workers keep serving without a failed request.
func TestBrokenRelease(t *testing.T) {
	m := startManager(t)
	_, hello := buildBinaries(t)
	a := installApp(t, m, appOptions{instances: 2})
	m.mustSystemctl(t, "start", a.service())
	before := a.status(t)
	load := startLoad(t, a)

	a.writeConfig(t, 2, hello, "-fail")
	out, err := m.systemctl("reload", a.service())
	if err == nil {
		t.Fatalf("systemctl reload of a broken release succeeded: %s", out)
	}
	t.Logf("systemctl reload of the broken release: %v %s", err, strings.TrimSpace(out))
	status, _ := m.systemctl("status", a.service())
	if !strings.Contains(status, "last reload failed") {
		t.Errorf("systemctl status does not say the reload failed:\n%s", status)
	}
	t.Logf("systemctl status:\n%s", status)
	// systemctl reload prints nothing on systemd 252: its exit code and
	// ReloadResult= tell, and systemctl status says why.
	if p := m.show(t, a.service(), "ActiveState", "ReloadResult"); p["ActiveState"] != "active" || p["ReloadResult"] != "exit-code" {
		t.Errorf("after the failed reload the service is %s, reload result %s; want active, exit-code", p["ActiveState"], p["ReloadResult"])
	}
	after := a.status(t)
	if !maps.Equal(workerPIDs(before), workerPIDs(after)) || after.Online != 2 {
		t.Errorf("the old workers did not all keep serving: before %v, after %v (%d online)", workerPIDs(before), workerPIDs(after), after.Online)
	}
	for range 5 {
		if pid := pidOf(t, a.get(t)); !workerPIDs(before)[pid] {
			t.Errorf("answered by pid %d, not an old worker", pid)
		}
	}
	ok, failed, errs := load.stop()
	if failed > 0 || ok == 0 {
		t.Errorf("around the failed reload: %d requests ok, %d failed: %v", ok, failed, errs)
	}
	t.Logf("around the failed reload: %d requests ok, %d failed", ok, failed)

	// Fixing the release makes the next reload succeed.
	a.writeConfig(t, 2, hello)
	m.mustSystemctl(t, "reload", a.service())
	if st := a.status(t); st.Online != 2 || st.Generation <= after.Generation {
		t.Errorf("the reload after the fix: generation %d, %d online; want above %d, 2", st.Generation, st.Online, after.Generation)
	}
}

// TestRestartUnderLoad: while the service restarts, the socket unit keeps
// the sockets open, so connections wait for the new workers and none fails.
func TestRestartUnderLoad(t *testing.T) {
	m := startManager(t)
	a := installApp(t, m, appOptions{instances: 2})
	m.mustSystemctl(t, "start", a.service())
	oldMain := m.show(t, a.service(), "MainPID")["MainPID"]
	load := startLoad(t, a)

	start := time.Now()
	m.mustSystemctl(t, "restart", a.service())
	took := time.Since(start)
	p := m.show(t, a.service(), "MainPID", "ActiveState")
	if p["MainPID"] == oldMain || p["ActiveState"] != "active" {
		t.Fatalf("after the restart: MainPID %s (was %s), %s; want a new one, active", p["MainPID"], oldMain, p["ActiveState"])
	}
	if st := a.status(t); st.Online != 2 {
		t.Errorf("after the restart %d workers are online, want 2", st.Online)
	}
	for range 5 {
		a.get(t)
	}
	ok, failed, errs := load.stop()
	if failed > 0 || ok == 0 {
		t.Errorf("around the restart: %d requests ok, %d failed: %v", ok, failed, errs)
	}
	t.Logf("systemctl restart took %v; %d requests ok, %d failed", took.Round(time.Millisecond), ok, failed)
}

// TestStop: `systemctl stop` leaves no process of the unit, and the socket
// unit listening.
func TestStop(t *testing.T) {
	m := startManager(t)
	a := installApp(t, m, appOptions{instances: 2})
	m.mustSystemctl(t, "start", a.service())
	p := m.show(t, a.service(), "MainPID", "ControlGroup")
	mainPID, _ := strconv.Atoi(p["MainPID"])
	pids := []int{mainPID}
	for pid := range workerPIDs(a.status(t)) {
		pids = append(pids, pid)
	}
	procs := watch(t, pids...)

	start := time.Now()
	m.mustSystemctl(t, "stop", a.service())
	t.Logf("systemctl stop took %v", time.Since(start).Round(time.Millisecond))
	waitExited(t, 5*time.Second, procs)
	if left := cgroupProcs(p["ControlGroup"]); len(left) > 0 {
		t.Errorf("processes left in the unit's cgroup: %s", describe(left))
	}
	q := m.show(t, a.service(), "ActiveState", "Result")
	if q["ActiveState"] != "inactive" || q["Result"] != "success" {
		t.Errorf("after the stop: %s, result %s; want inactive, success", q["ActiveState"], q["Result"])
	}
	if got := m.show(t, a.socket(), "ActiveState")["ActiveState"]; got != "active" {
		t.Errorf("after the service stopped its socket is %s, want active", got)
	}
}

// TestUnixSocketOutlivesTheService: the socket unit's own unix socket sits
// beside the service's RuntimeDirectory=, which systemd removes when the
// service stops, so the socket survives the stop and the next connection
// starts the service again.
func TestUnixSocketOutlivesTheService(t *testing.T) {
	m := startManager(t)
	a := installApp(t, m, appOptions{instances: 2, unix: true})
	m.mustSystemctl(t, "start", a.socket())
	first := pidOf(t, a.get(t))
	waitActive(t, m, a.service())

	m.mustSystemctl(t, "stop", a.service())
	runtimeDir := a.control()[:len(a.control())-len("/control.sock")]
	if _, err := os.Stat(runtimeDir); !os.IsNotExist(err) {
		t.Errorf("the runtime directory %s is still there after the stop (%v)", runtimeDir, err)
	}
	if fi, err := os.Stat(a.sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("the socket unit's socket %s after the service stopped: %v, %v", a.sock, fi, err)
	}
	if again := pidOf(t, a.get(t)); again == first {
		t.Errorf("answered by pid %d again after the stop", again)
	}
	waitActive(t, m, a.service())
}

// TestKillMainPID: after a SIGKILL of corral, no worker survives it,
// systemd restarts the service, and it serves again.
func TestKillMainPID(t *testing.T) {
	m := startManager(t)
	a := installApp(t, m, appOptions{instances: 2})
	m.mustSystemctl(t, "start", a.service())
	p := m.show(t, a.service(), "MainPID", "NRestarts")
	mainPID, _ := strconv.Atoi(p["MainPID"])
	var old []int
	for pid := range workerPIDs(a.status(t)) {
		old = append(old, pid)
	}
	orphans := watch(t, old...)

	if err := unix.Kill(mainPID, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExited(t, 10*time.Second, orphans)
	var q map[string]string
	testenv.WaitFor(t, 30*time.Second, "systemd to restart the service", func() bool {
		q = m.show(t, a.service(), "MainPID", "ActiveState", "NRestarts")
		return q["ActiveState"] == "active" && q["MainPID"] != p["MainPID"] && q["MainPID"] != "0"
	})
	if before, _ := strconv.Atoi(p["NRestarts"]); q["NRestarts"] != strconv.Itoa(before+1) {
		t.Errorf("NRestarts %s, want %d", q["NRestarts"], before+1)
	}
	st := a.status(t)
	if st.Online != 2 {
		t.Errorf("after the restart %d workers are online, want 2", st.Online)
	}
	pids := workerPIDs(st)
	if pid := pidOf(t, a.get(t)); !pids[pid] {
		t.Errorf("answered by pid %d, not a new worker (%v)", pid, pids)
	}
	newMain, _ := strconv.Atoi(q["MainPID"])
	pids[newMain] = true
	if procs := m.unitProcs(t, a.service()); len(procs) != len(pids) {
		t.Errorf("the unit's cgroup holds %s; want corral (%d) and its workers only", describe(procs), newMain)
	}
}

// TestWorkerNotifyReachesCorral: a worker that reports with systemd-notify
// reaches corral, not systemd: corral shows the worker's status, and
// systemd's status line stays corral's.
func TestWorkerNotifyReachesCorral(t *testing.T) {
	m := startManager(t)
	script := `systemd-notify --ready --status="hi from worker $CORRAL_WORKER_INDEX"; exec sleep infinity`
	a := installApp(t, m, appOptions{instances: 2, command: []string{"/bin/sh", "-c", script}})
	// Start returns once corral said READY=1, which it says once both
	// workers' READY=1 reached it.
	m.mustSystemctl(t, "start", a.service())
	st := a.status(t)
	for _, w := range st.Workers {
		if want := fmt.Sprintf("hi from worker %d", w.Slot); w.Status != want || w.State != "online" {
			t.Errorf("worker %d: %s, status %q; want online, %q", w.Slot, w.State, w.Status, want)
		}
	}
	if st.Ignored > 0 || st.Dropped > 0 {
		t.Errorf("corral ignored %d and dropped %d notify messages", st.Ignored, st.Dropped)
	}
	if got := m.show(t, a.service(), "StatusText")["StatusText"]; got != st.Line || !strings.HasPrefix(got, "2/2 workers online") {
		t.Errorf("systemd's StatusText is %q, want corral's line %q", got, st.Line)
	}
}

// TestAppTemplate: the units under another template name, as `corral
// units --template app` writes them, run the same app as app@api.
func TestAppTemplate(t *testing.T) {
	m := startManager(t)
	a := installApp(t, m, appOptions{template: "app", instances: 2})
	m.mustSystemctl(t, "start", a.socket())
	pidOf(t, a.get(t))
	p := waitActive(t, m, a.service())
	if !strings.HasPrefix(p["StatusText"], "2/2 workers online") {
		t.Fatalf("app@api.service is active with status %q", p["StatusText"])
	}
	env, err := os.ReadFile("/proc/" + p["MainPID"] + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(string(env), "\x00"), "CORRAL_UNIT=app@api.service") {
		t.Error("corral runs without CORRAL_UNIT=app@api.service")
	}
	before := a.status(t)
	m.mustSystemctl(t, "reload", a.service())
	checkGeneration(t, a.status(t), 2, before.Generation+1)
}

// load is client load on an app, stopped when the test ends at the latest.
type load struct {
	l       *loadtest.Load
	stopped bool
}

// startLoad sends requests to a from 4 clients that open a connection per
// request and 4 that keep theirs alive.
func startLoad(t testing.TB, a *app) *load {
	l := &load{l: loadtest.Start(a.addr, 4, 4)}
	t.Cleanup(func() { l.stop() })
	return l
}

func (l *load) stop() (ok, failed int64, errs []string) {
	if l.stopped {
		return 0, 0, nil
	}
	l.stopped = true
	return l.l.Stop()
}

// TestNamedSockets: the README's way to give an app two named sockets, a
// second socket unit that activates the same service, hands the workers
// both, each with its name.
func TestNamedSockets(t *testing.T) {
	m := startManager(t)
	a := installApp(t, m, appOptions{instances: 2})
	admin := testenv.FreeAddr(t)
	testenv.WriteFile(t, filepath.Join(m.unitDir, a.socket()+".d", "name.conf"), "[Socket]\nFileDescriptorName=http\n")
	testenv.WriteFile(t, filepath.Join(m.unitDir, "corral-admin@.socket"),
		"[Socket]\nListenStream="+admin+"\nFileDescriptorName=admin\nService=corral@%i.service\n")
	testenv.WriteFile(t, filepath.Join(m.unitDir, a.service()+".d", "sockets.conf"),
		"[Unit]\nRequires=corral-admin@api.socket\nAfter=corral-admin@api.socket\n"+
			"[Service]\nSockets=corral@api.socket corral-admin@api.socket\n")
	m.mustSystemctl(t, "daemon-reload")
	m.mustSystemctl(t, "start", a.service())

	for _, w := range a.status(t).Workers {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", w.PID))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, kv := range strings.Split(string(env), "\x00") {
			if v, ok := strings.CutPrefix(kv, "LISTEN_FDNAMES="); ok {
				names = strings.Split(v, ":")
			}
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"admin", "http"}) {
			t.Errorf("worker %d has LISTEN_FDNAMES %v, want admin and http", w.Slot, names)
		}
	}
	pidOf(t, a.get(t))
	adminApp := *a
	adminApp.addr = admin
	pidOf(t, adminApp.get(t))
}
