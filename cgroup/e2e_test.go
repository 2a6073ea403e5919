package cgroup_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/control"
	"github.com/corraldev/corral/internal/cgtest"
	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/workers"
)

// bins are corral and the hog worker (testdata/hog), built once for the
// tests of this package.
var bins struct {
	once        sync.Once
	dir         string
	corral, hog string
	err         error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if err := booted.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// build returns the paths of corral and hog, static binaries that run on
// the host and in a booted Debian alike.
func build(t testing.TB) (corral, hog string) {
	t.Helper()
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "corral-cgroup-test-")
		if bins.err != nil {
			return
		}
		bins.corral, bins.hog = filepath.Join(bins.dir, "corral"), filepath.Join(bins.dir, "hog")
		for out, pkg := range map[string]string{bins.corral: "../cmd/corral", bins.hog: "./testdata/hog"} {
			cmd := exec.Command("go", "build", "-o", out, pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.corral, bins.hog
}

// corral is a `corral run` of hog workers on the host.
type corral struct {
	t       *testing.T
	cmd     *exec.Cmd
	addr    string
	control string
	log     *testenv.Buffer
	done    chan struct{}
}

// runCorral starts `corral run ARGS -- hog` listening on a free port, in
// the cgroup whose directory is cgroupDir, and stops it when the test ends.
func runCorral(t *testing.T, cgroupDir string, args ...string) *corral {
	t.Helper()
	corralBin, hog := build(t)
	c := &corral{t: t, addr: testenv.FreeAddr(t), control: filepath.Join(t.TempDir(), "control.sock"),
		log: &testenv.Buffer{}, done: make(chan struct{})}
	argv := append([]string{"run", "-n", "api", "--control", c.control, "--listen", c.addr}, args...)
	c.cmd = exec.Command(corralBin, append(argv, "--", hog)...)
	c.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=", "JOURNAL_STREAM=")
	c.cmd.Stderr, c.cmd.Stdout = c.log, c.log
	d, err := os.Open(cgroupDir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c.cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(d.Fd())}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			c.cmd.Process.Kill()
			t.Error("corral did not stop within 30s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("corral's output:\n%s", c.log)
		}
	})
	return c
}

// status asks corral for its status.
func (c *corral) status() workers.Status {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := control.Status(ctx, c.control)
	if err != nil {
		c.t.Fatalf("corral status: %v\n%s", err, c.log)
	}
	return st
}

// waitFor waits until ok accepts corral's status, and returns it.
func (c *corral) waitFor(what string, ok func(workers.Status) bool) workers.Status {
	c.t.Helper()
	var st workers.Status
	testenv.WaitFor(c.t, 60*time.Second, what, func() bool {
		select {
		case <-c.done:
			c.t.Fatalf("corral exited while the test waited for %s:\n%s", what, c.log)
		default:
		}
		if _, err := os.Stat(c.control); err != nil {
			return false
		}
		st = c.status()
		return ok(st)
	})
	return st
}

func (c *corral) settled(n int) workers.Status {
	c.t.Helper()
	return c.waitFor(fmt.Sprintf("%d workers online, none other", n), func(st workers.Status) bool {
		return st.State == "running" && st.Online == n && len(st.Workers) == n
	})
}

// get requests path on a new connection and returns the answer's fields;
// the first is the PID of the worker that answered.
func (c *corral) get(path string) []string {
	c.t.Helper()
	cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	resp, err := cl.Get("http://" + c.addr + path)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		c.t.Fatalf("GET %s: %s %v: %s", path, resp.Status, err, b)
	}
	return strings.Fields(string(b))
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// procs reads a cgroup's cgroup.procs.
func procs(t *testing.T, dir string) []int {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var pids []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pids = append(pids, atoi(t, sc.Text()))
	}
	return pids
}

// keyed reads one value of a flat keyed cgroup file such as cpu.stat.
func keyed(t *testing.T, path, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatalf("%s has no %s", path, key)
	return 0
}

// vmRSS returns a process's VmRSS in bytes, 0 once it has gone.
func vmRSS(pid int) int64 {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// gone reports whether pid has exited (a zombie has).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && len(b) > i+2 && (b[i+2] == 'Z' || b[i+2] == 'X')
}

// Under delegation (a test cgroup marked as systemd marks one, on this
// machine's kernel), corral runs in a leaf of its own and each worker in a
// cgroup named by app, slot and generation, children included; corral
// status's figures match the cgroup files; and a reload kills what an old
// worker left in another session.
func TestDelegatedLayout(t *testing.T) {
	dir := cgtest.Dir(t, true)
	c := runCorral(t, dir, "-i", "2", "--stop-timeout", "5s")
	st := c.settled(2)
	if got := procs(t, filepath.Join(dir, "corral")); len(got) != 1 || got[0] != c.cmd.Process.Pid {
		t.Errorf("corral's leaf holds %v, want corral's pid %d", got, c.cmd.Process.Pid)
	}
	if n := strings.Count(c.log.String(), "cgroups: "); n != 1 || !strings.Contains(c.log.String(), "cgroups: corral runs in "+dir+"/corral") {
		t.Errorf("corral said %d times what cgroups it has; want once, naming its leaf", n)
	}

	// A daemon in a session of its own, started by one worker, is in that
	// worker's cgroup.
	f := c.get("/daemon")
	owner, daemon := atoi(t, f[0]), atoi(t, f[2])
	st = c.status()
	for _, w := range st.Workers {
		want := filepath.Join(dir, fmt.Sprintf("api.worker%d.gen1", w.Slot))
		if w.Cgroup != want {
			t.Errorf("worker %d's cgroup is %q, want %q", w.Slot, w.Cgroup, want)
		}
		members := procs(t, want)
		wantN := 1
		if w.PID == owner {
			wantN = 2
		}
		if len(members) != wantN || members[0] != w.PID && members[len(members)-1] != w.PID {
			t.Errorf("%s holds %v; want worker %d's pid %d (and its daemon %d)", want, members, w.Slot, w.PID, daemon)
		}
	}
	checkFigures(t, c, dir)

	// A reload: the old workers stop, their cgroups are killed whole and
	// removed, the daemon with them.
	out, err := exec.Command(c.cmd.Path, "reload", "--control", c.control).CombinedOutput()
	if err != nil {
		t.Fatalf("corral reload: %v: %s", err, out)
	}
	c.settled(2)
	testenv.WaitFor(t, 30*time.Second, "the old worker's daemon to be killed", func() bool { return gone(daemon) })
	for slot := range 2 {
		old := filepath.Join(dir, fmt.Sprintf("api.worker%d.gen1", slot))
		testenv.WaitFor(t, 30*time.Second, old+" to be removed", func() bool { _, err := os.Stat(old); return os.IsNotExist(err) })
		if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("api.worker%d.gen2", slot))); err != nil {
			t.Errorf("generation 2's cgroup: %v", err)
		}
	}
	// The line comes through corral's stderr pipe, maybe after the cgroup
	// is gone.
	testenv.WaitFor(t, 30*time.Second, "corral to say it killed what an old worker left", func() bool {
		return strings.Contains(c.log.String(), "killed what was left in its cgroup api.worker")
	})
}

// checkFigures compares corral status's figures with the cgroup files and
// /proc, and the CPU % of a worker kept busy with the other's.
func checkFigures(t *testing.T, c *corral, dir string) {
	t.Helper()
	memoryController := false
	if b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control")); err == nil {
		memoryController = strings.Contains(string(b), "memory")
	}
	before := map[string]int64{}
	for slot := range 2 {
		cg := filepath.Join(dir, fmt.Sprintf("api.worker%d.gen1", slot))
		before[cg] = keyed(t, filepath.Join(cg, "cpu.stat"), "usage_usec")
	}
	st := c.status()
	var total int64
	for _, w := range st.Workers {
		after := keyed(t, filepath.Join(w.Cgroup, "cpu.stat"), "usage_usec")
		if us := int64(w.CPUSeconds * 1e6); us < before[w.Cgroup]-10000 || us > after+10000 {
			t.Errorf("worker %d: cpu_seconds %.3f, but cpu.stat's usage_usec went from %d to %d", w.Slot, w.CPUSeconds, before[w.Cgroup], after)
		}
		var want int64
		if memoryController {
			b, _ := os.ReadFile(filepath.Join(w.Cgroup, "memory.current"))
			cur, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
			want = cur - keyed(t, filepath.Join(w.Cgroup, "memory.stat"), "inactive_file")
		} else {
			for _, pid := range procs(t, w.Cgroup) {
				want += vmRSS(pid)
			}
		}
		if d := w.MemoryBytes - want; d < -want/10 || d > want/10 || want == 0 {
			t.Errorf("worker %d: memory_bytes %d, its cgroup's processes' VmRSS %d", w.Slot, w.MemoryBytes, want)
		}
		total += w.MemoryBytes
	}
	if st.MemoryBytes != total || st.Accounting == "/proc" {
		t.Errorf("status: memory_bytes %d (workers' sum %d), accounting %q", st.MemoryBytes, total, st.Accounting)
	}

	// CPU %: over the time between two looks, which the test brackets:
	// the window is at least t2-t1 and at most t3-t0. (A look less than a
	// second after the one before keeps the figure; the first spin puts a
	// second between them.) The busy worker must have used some CPU: on a
	// machine shared with other work a spin gets what the scheduler gives.
	c.get("/spin?ms=1100")
	t0 := time.Now()
	prev := c.status()
	t1 := time.Now()
	busy := atoi(t, c.get("/spin?ms=1500")[0])
	t2 := time.Now()
	st = c.status()
	t3 := time.Now()
	for i, w := range st.Workers {
		used := w.CPUSeconds - prev.Workers[i].CPUSeconds
		lo, hi := used/t3.Sub(t0).Seconds()*100, used/t2.Sub(t1).Seconds()*100
		switch {
		case w.PID == busy && used < 0.2:
			t.Errorf("worker %d spun for 1.5s, yet used %.3fs of CPU", w.Slot, used)
		case w.PID != busy && used > 0.2:
			t.Errorf("worker %d was idle, yet used %.3fs of CPU", w.Slot, used)
		}
		if w.CPUPercent < lo-1 || w.CPUPercent > hi+1 {
			t.Errorf("worker %d: cpu_percent %.1f, but it used %.3fs of CPU in %v to %v (%.1f%% to %.1f%%)",
				w.Slot, w.CPUPercent, used, t2.Sub(t1), t3.Sub(t0), lo, hi)
		}
	}
}

// Without delegation (corral run in a terminal; here, a cgroup systemd did
// not mark delegated) corral says once that it falls back to /proc, and a
// worker above max_memory is still recycled, under load, with no request
// failed and the other slot untouched.
func TestFallbackRecycles(t *testing.T) {
	dir := cgtest.Dir(t, false)
	c := runCorral(t, dir, "-i", "2", "--max-memory", "64M", "--stop-timeout", "5s")
	before := c.settled(2)
	log := c.log.String()
	if n := strings.Count(log, "falling back to per-process accounting from /proc"); n != 1 || !strings.Contains(log, "is not delegated to it") {
		t.Errorf("corral said %d times that it falls back to /proc, want once, with the reason:\n%s", n, log)
	}
	if before.Accounting != "/proc" {
		t.Errorf("accounting %q, want /proc", before.Accounting)
	}
	l := loadtest.Start(c.addr, 4, 4)
	start := time.Now()
	hog := atoi(t, c.get("/grow?mb=128")[0])
	st := c.waitFor("the hog recycled", func(st workers.Status) bool {
		return st.Recycles == 1 && st.Online == 2 && len(st.Workers) == 2
	})
	took := time.Since(start)
	for range 10 {
		c.get("/")
	}
	ok, failed, errs := l.Stop()
	t.Logf("recycle of a worker above max_memory under load: %v; %d requests ok, %d failed", took.Round(time.Millisecond), ok, failed)
	if failed > 0 || ok == 0 {
		t.Fatalf("%d requests ok, %d failed: %q", ok, failed, errs)
	}
	for _, w := range st.Workers {
		was := before.Workers[w.Slot].PID
		switch {
		case was == hog && (w.PID == hog || w.Recycles != 1):
			t.Errorf("slot %d (pid %d went above max_memory): now %+v", w.Slot, hog, w)
		case was != hog && w.PID != was:
			t.Errorf("slot %d: pid %d replaced by %d, but it was under max_memory", w.Slot, was, w.PID)
		}
	}
}

// memory_limit needs the memory controller: where corral's cgroup has none
// it refuses to start, exit status 2, and says why and what to do instead.
func TestMemoryLimitRefused(t *testing.T) {
	corralBin, hog := build(t)
	for _, tc := range []struct {
		name      string
		delegated bool
		want      string
	}{
		{"not delegated", false, "corral has no cgroup of its own here"},
		{"delegated without controllers", true, "does not have"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := cgtest.Dir(t, tc.delegated)
			if b, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers")); strings.Contains(string(b), "memory") {
				t.Skip("this machine's cgroups have the memory controller: memory_limit applies")
			}
			d, err := os.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			cmd := exec.Command(corralBin, "run", "-n", "api", "--control", filepath.Join(t.TempDir(), "c.sock"),
				"--listen", testenv.FreeAddr(t), "--memory-limit", "512M", "--", hog)
			cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=")
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(d.Fd())}
			out, err := cmd.CombinedOutput()
			if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(string(out), "memory_limit 512M: ") || !strings.Contains(string(out), tc.want) ||
				!strings.Contains(string(out), "use max_memory") {
				t.Errorf("corral run --memory-limit 512M: %v\n%s\nwant exit status 2 and a message saying %q and what to do instead", err, out, tc.want)
			}
		})
	}
}
