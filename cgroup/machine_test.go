package cgroup_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/contrib/systemd"
	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/internal/testenv/debian"
	"github.com/corraldev/corral/workers"
)

// booted is the Debian 12 that this package's booted tests share: systemd
// as PID 1 (in systemd-nspawn, on this machine's hybrid cgroups), the
// shipped units, corral and the hog worker installed, and corral@api
// listening on apiAddr. Tests that use it leave corral@api running.
var (
	booted  = debian.Shared{Options: debian.Options{Setup: setupMachine}}
	apiAddr string
)

// setupMachine installs corral, the units, the hog worker and the app api
// (2 workers, max_memory 64M, on a TCP port of the host's loopback) into
// the root file system before the machine boots.
func setupMachine(root string) error {
	corralBin, hog := bins.corral, bins.hog
	units, err := systemd.Units(systemd.Options{})
	if err != nil {
		return err
	}
	files := map[string]string{
		"etc/corral/api.toml":                             "command = [\"/usr/local/bin/hog\"]\ninstances = 2\nstop_timeout = \"5s\"\nmax_memory = \"64M\"\n",
		"etc/corral/lim.toml":                             "command = [\"/usr/local/bin/hog\"]\ninstances = 1\nmemory_limit = \"512M\"\n",
		"etc/systemd/system/corral@api.socket.d/tcp.conf": "[Socket]\nListenStream=\nListenStream=" + apiAddr + "\n",
	}
	for _, u := range units {
		files["etc/systemd/system/"+u.Name] = u.Text
	}
	for path, text := range files {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(path)), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, path), []byte(text), 0o644); err != nil {
			return err
		}
	}
	for from, to := range map[string]string{corralBin: "usr/bin/corral", hog: "usr/local/bin/hog"} {
		b, err := os.ReadFile(from)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, to), b, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// machine returns the booted Debian with corral@api running.
func machine(t *testing.T) *debian.Machine {
	t.Helper()
	debian.Need(t)
	build(t)
	if apiAddr == "" {
		apiAddr = testenv.FreeAddr(t)
	}
	m := booted.Get(t)
	m.MustRun(t, "systemctl", "start", "corral@api.service")
	return m
}

// apiStatus is corral status --json of the app api, in the machine.
func apiStatus(t *testing.T, m *debian.Machine) workers.Status {
	t.Helper()
	var st workers.Status
	out := m.MustRun(t, "corral", "status", "--json", "--config", "/etc/corral/api.toml")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("corral status --json: %v\n%s", err, out)
	}
	return st
}

// apiSettled waits until api runs n workers, all online, none other.
func apiSettled(t *testing.T, m *debian.Machine, n int, what string, ok func(workers.Status) bool) workers.Status {
	t.Helper()
	var st workers.Status
	testenv.WaitFor(t, time.Minute, what, func() bool {
		st = apiStatus(t, m)
		return st.State == "running" && st.Online == n && len(st.Workers) == n && (ok == nil || ok(st))
	})
	return st
}

// unified is the machine's cgroup v2 hierarchy (a hybrid system's).
const unified = "/sys/fs/cgroup/unified"

// serviceCgroup returns the directory of corral@api.service's cgroup.
func serviceCgroup(t *testing.T, m *debian.Machine) string {
	t.Helper()
	return unified + m.Show(t, "corral@api.service", "ControlGroup")["ControlGroup"]
}

// machineProcs reads a cgroup.procs in the machine.
func machineProcs(t *testing.T, m *debian.Machine, dir string) []int {
	t.Helper()
	var pids []int
	for _, f := range strings.Fields(m.MustRun(t, "cat", dir+"/cgroup.procs")) {
		pids = append(pids, atoi(t, f))
	}
	return pids
}

// machineGet asks the app api for path and returns the answer's fields;
// the first is the PID (in the machine) of the worker that answered.
func machineGet(t *testing.T, path string) []string {
	t.Helper()
	c := &corral{t: t, addr: apiAddr}
	return c.get(path)
}

// The shipped unit, under systemd as PID 1: corral in a leaf of its own,
// each worker in a cgroup named by app, slot and generation, what a worker
// starts in another session in its worker's cgroup; corral status's
// figures from those cgroups.
func TestBootedLayout(t *testing.T) {
	m := machine(t)
	st := apiSettled(t, m, 2, "api's 2 workers online", nil)
	svc := serviceCgroup(t, m)
	main := atoi(t, m.Show(t, "corral@api.service", "MainPID")["MainPID"])
	if got := machineProcs(t, m, svc+"/corral"); len(got) != 1 || got[0] != main {
		t.Errorf("%s/corral holds %v, want corral's pid %d", svc, got, main)
	}
	f := machineGet(t, "/daemon")
	owner, daemon := atoi(t, f[0]), atoi(t, f[2])
	st = apiStatus(t, m)
	for _, w := range st.Workers {
		dir := fmt.Sprintf("%s/api.worker%d.gen%d", svc, w.Slot, w.Generation)
		if w.Cgroup != dir {
			t.Errorf("worker %d: cgroup %q, want %q", w.Slot, w.Cgroup, dir)
		}
		want := []int{w.PID}
		if w.PID == owner {
			want = append(want, daemon)
		}
		if got := machineProcs(t, m, dir); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s holds %v, want %v", dir, got, want)
		}
	}
	t.Logf("systemd-cgls -u corral@api.service:\n%s", m.MustRun(t, "systemd-cgls", "--no-pager", "-u", "corral@api.service"))

	// The figures: memory from /proc (a hybrid tree has no memory
	// controller), summed over the cgroup's members; CPU from cpu.stat.
	st = apiStatus(t, m)
	for _, w := range st.Workers {
		var rss int64
		for _, pid := range machineProcs(t, m, w.Cgroup) {
			rss += machineRSS(t, m, pid)
		}
		if d := w.MemoryBytes - rss; rss == 0 || d < -rss/10 || d > rss/10 {
			t.Errorf("worker %d: memory_bytes %d, the VmRSS of its cgroup's processes %d", w.Slot, w.MemoryBytes, rss)
		}
		usec := keyedIn(t, m, w.Cgroup+"/cpu.stat", "usage_usec")
		if got := int64(w.CPUSeconds * 1e6); got > usec || got < usec-50000 {
			t.Errorf("worker %d: cpu_seconds %.3f, its cpu.stat usage_usec %d just after", w.Slot, w.CPUSeconds, usec)
		}
	}
	if st.Accounting != "cgroup; memory from /proc" {
		t.Errorf("accounting %q", st.Accounting)
	}

	// A reload kills the old worker's daemon with its cgroup.
	m.MustRun(t, "systemctl", "reload", "corral@api.service")
	apiSettled(t, m, 2, "generation 2 alone", func(st workers.Status) bool {
		return st.Workers[0].Generation == st.Generation && st.Workers[1].Generation == st.Generation
	})
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("the daemon, pid %d, to be gone", daemon), func() bool {
		out, err := m.Run(t.Context(), "cat", fmt.Sprintf("/proc/%d/stat", daemon))
		return err != nil || regexp.MustCompile(`\) [ZX] `).MatchString(out)
	})
	journal := m.MustRun(t, "journalctl", "-u", "corral@api.service", "--no-pager", "-o", "cat")
	if !strings.Contains(journal, fmt.Sprintf("(pid %d, generation 1): killed what was left in its cgroup", owner)) {
		t.Errorf("the journal does not say the old worker's cgroup was killed:\n%s", journal)
	}
}

// machineRSS returns a process's VmRSS in the machine, in bytes.
func machineRSS(t *testing.T, m *debian.Machine, pid int) int64 {
	t.Helper()
	out, err := m.Run(t.Context(), "cat", fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// keyedIn reads one value of a flat keyed cgroup file in the machine.
func keyedIn(t *testing.T, m *debian.Machine, path, key string) int64 {
	t.Helper()
	for _, line := range strings.Split(m.MustRun(t, "cat", path), "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatalf("%s has no %s", path, key)
	return 0
}

// journalEntry is what the test reads of a journal entry.
type journalEntry struct {
	PID        string `json:"_PID"`
	Identifier string `json:"SYSLOG_IDENTIFIER"`
	Priority   string `json:"PRIORITY"`
	Message    string `json:"MESSAGE"`
	Cgroup     string `json:"_SYSTEMD_CGROUP"`
	Unit       string `json:"_SYSTEMD_UNIT"`
}

// journal returns the entries of journalctl ARGS that hold marker.
func journal(t *testing.T, m *debian.Machine, marker string, args ...string) []journalEntry {
	t.Helper()
	out := m.MustRun(t, append([]string{"journalctl", "--no-pager", "-o", "json"}, args...)...)
	var es []journalEntry
	for _, line := range strings.Split(out, "\n") {
		var e journalEntry
		if json.Unmarshal([]byte(line), &e) == nil && strings.Contains(e.Message, marker) {
			es = append(es, e)
		}
	}
	return es
}

// Each worker's output is a journal stream of its own, which
// JOURNAL_STREAM names: its lines carry the worker's PID and cgroup, not
// corral's, and the identifier api/SLOT, by which `journalctl -u
// corral@api -t api/1` shows slot 1 alone, across generations; a <3>
// prefix is priority 3.
func TestBootedJournal(t *testing.T) {
	m := machine(t)
	marker := fmt.Sprintf("marker-%d", time.Now().UnixNano())
	logAll := func(gen int) map[int]int {
		st := apiSettled(t, m, 2, "api's 2 workers online", nil)
		pids := map[int]int{} // slot -> pid
		for _, w := range st.Workers {
			pids[w.Slot] = w.PID
		}
		for len(pids) > 0 {
			f := machineGet(t, fmt.Sprintf("/log?msg=%%3C3%%3E%s-round%d", marker, gen))
			pid := atoi(t, f[0])
			for slot, p := range pids {
				if p == pid {
					delete(pids, slot)
				}
			}
		}
		for _, w := range st.Workers {
			pids[w.Slot] = w.PID
		}
		return pids
	}
	// JOURNAL_STREAM names the worker's own stream, its stderr.
	f := machineGet(t, "/journal")
	if want := strconv.Quote(f[2]); f[1] != want || !strings.Contains(f[2], ":") {
		t.Errorf("worker %s: JOURNAL_STREAM %s, its stderr %s", f[0], f[1], f[2])
	}
	gen1 := logAll(1)
	m.MustRun(t, "systemctl", "reload", "corral@api.service")
	gen2 := logAll(2)
	main := m.Show(t, "corral@api.service", "MainPID")["MainPID"]

	var all []journalEntry
	testenv.WaitFor(t, 30*time.Second, "the workers' lines in the journal", func() bool {
		all = journal(t, m, marker, "-u", "corral@api.service")
		return len(all) >= 4
	})
	bySlot := map[string]map[string]bool{}
	for _, e := range all {
		slot := strings.TrimPrefix(e.Identifier, "api/")
		if e.PID == main || e.Priority != "3" || e.Unit != "corral@api.service" || !strings.Contains(e.Cgroup, "/api.worker"+slot+".gen") ||
			!strings.HasPrefix(e.Message, marker) {
			t.Errorf("journal entry %+v: want a worker's pid (corral is %s), identifier api/SLOT, priority 3, the worker's cgroup, the <3> taken off", e, main)
		}
		if bySlot[slot] == nil {
			bySlot[slot] = map[string]bool{}
		}
		bySlot[slot][e.PID] = true
	}
	for slot, pids := range map[string][]int{"0": {gen1[0], gen2[0]}, "1": {gen1[1], gen2[1]}} {
		for _, pid := range pids {
			if !bySlot[slot][strconv.Itoa(pid)] {
				t.Errorf("no line of slot %s's pid %d in the journal: %v", slot, pid, bySlot)
			}
		}
	}
	one := map[string]bool{}
	for _, e := range journal(t, m, marker, "-u", "corral@api.service", "-t", "api/1") {
		one[e.PID] = true
		if e.Identifier != "api/1" {
			t.Errorf("journalctl -t api/1 shows %+v", e)
		}
	}
	if want := map[string]bool{strconv.Itoa(gen1[1]): true, strconv.Itoa(gen2[1]): true}; fmt.Sprint(one) != fmt.Sprint(want) {
		t.Errorf("journalctl -u corral@api -t api/1 shows the lines of pids %v, want those of slot 1 in both generations, %v", one, want)
	}
	// corral logs api --worker 1 is that filter, by the app's name.
	logs := m.MustRun(t, "corral", "logs", "api", "--worker", "1", "--lines", "0")
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, marker) && !strings.Contains(line, fmt.Sprintf(" api/1[%d]: ", gen1[1])) && !strings.Contains(line, fmt.Sprintf(" api/1[%d]: ", gen2[1])) {
			t.Errorf("corral logs api --worker 1 shows %q, which is not slot 1's", line)
		}
	}
	for _, pid := range []int{gen1[1], gen2[1]} {
		if !strings.Contains(logs, fmt.Sprintf(" api/1[%d]: %s", pid, marker)) {
			t.Errorf("corral logs api --worker 1 lacks the line of slot 1's pid %d:\n%s", pid, logs)
		}
	}
}

// A worker that goes above max_memory under load is recycled: its
// replacement comes online first, then it drains; no request fails, the
// other slot is not touched, and the recycle is counted.
func TestBootedRecycle(t *testing.T) {
	m := machine(t)
	before := apiSettled(t, m, 2, "api's 2 workers online", nil)
	l := loadtest.Start(apiAddr, 4, 4)
	start := time.Now()
	hog := atoi(t, machineGet(t, "/grow?mb=128")[0])
	st := apiSettled(t, m, 2, "the worker above max_memory recycled", func(st workers.Status) bool {
		return st.Recycles == before.Recycles+1
	})
	took := time.Since(start)
	for range 10 {
		machineGet(t, "/")
	}
	ok, failed, errs := l.Stop()
	t.Logf("recycle of a worker above max_memory 64M, under load: %v; %d requests ok, %d failed", took.Round(time.Millisecond), ok, failed)
	if failed > 0 || ok < 100 {
		t.Fatalf("%d requests ok, %d failed (want at least 100 and none): %q", ok, failed, errs)
	}
	var slot, replacement int
	for i, w := range st.Workers {
		was := before.Workers[i].PID
		switch {
		case was == hog:
			slot, replacement = w.Slot, w.PID
			if w.PID == hog || w.Recycles != before.Workers[i].Recycles+1 {
				t.Errorf("slot %d, whose pid %d went above max_memory: %+v", w.Slot, hog, w)
			}
		case w.PID != was:
			t.Errorf("slot %d: pid %d replaced by %d, but it was under max_memory", w.Slot, was, w.PID)
		}
	}
	log := m.MustRun(t, "journalctl", "-u", "corral@api.service", "--no-pager", "-o", "cat", "--since", "-5min")
	above := strings.Index(log, fmt.Sprintf("worker %d (pid %d, generation %d): memory ", slot, hog, st.Generation))
	online := strings.Index(log, fmt.Sprintf("worker %d (pid %d, generation %d): online after", slot, replacement, st.Generation))
	stop := strings.Index(log, fmt.Sprintf("worker %d (pid %d, generation %d): stopping (recycled", slot, hog, st.Generation))
	if above < 0 || online < above || stop < online {
		t.Errorf("want pid %d above max_memory, then pid %d online, then pid %d stopping; the journal:\n%s", hog, replacement, hog, log)
	}
	if s := m.Show(t, "corral@api.service", "StatusText")["StatusText"]; !strings.Contains(s, "recycled (max_memory)") {
		t.Errorf("systemctl status does not count the recycle: %q", s)
	}
}

// On these hybrid machines there is no memory controller: corral@lim, with
// memory_limit, fails to start with the reason, exit status 2, and is not
// restarted.
func TestBootedMemoryLimitRefused(t *testing.T) {
	m := machine(t)
	out, err := m.Run(t.Context(), "systemctl", "start", "corral@lim.service")
	if err == nil {
		t.Fatalf("corral@lim started, with memory_limit and no memory controller: %s", out)
	}
	p := m.Show(t, "corral@lim.service", "ExecMainStatus", "ActiveState", "NRestarts")
	if p["ExecMainStatus"] != "2" || p["NRestarts"] != "0" {
		t.Errorf("corral@lim: %v; want exit status 2 and no restart", p)
	}
	log := m.MustRun(t, "journalctl", "-u", "corral@lim.service", "--no-pager", "-o", "cat")
	if !strings.Contains(log, "memory_limit 512M: a hard limit needs the memory controller, which corral's cgroup") {
		t.Errorf("the journal does not say why:\n%s", log)
	}
	m.Run(t.Context(), "systemctl", "reset-failed", "corral@lim.service")
}

// systemd itself, on the booted machine, rates the shipped unit at most 1.2
// with Delegate= and the ReadWritePaths= of its cgroup.
func TestBootedSecurity(t *testing.T) {
	m := machine(t)
	out := m.MustRun(t, "systemd-analyze", "security", "--no-pager", "corral@api.service")
	mm := regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d+)`).FindStringSubmatch(out)
	if mm == nil {
		t.Fatalf("systemd-analyze security: no exposure level:\n%s", out)
	}
	if score, _ := strconv.ParseFloat(mm[1], 64); score > 1.2 {
		t.Errorf("systemd-analyze security corral@api.service: %s, want at most 1.2:\n%s", mm[1], out)
	}
	t.Logf("systemd-analyze security corral@api.service: %s", mm[1])
}
