package workers

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/cgroup"
	"github.com/corraldev/corral/internal/testenv"
	"golang.org/x/sys/unix"
)

// memoryTree returns a cgroup tree on plain files, laid out as a pure
// cgroup v2 system with the memory controller delegated shows them: the
// machines that run the tests have no such controller, so the kernel's
// side of max_memory's notification (memory.high, memory.events) is
// played by the test writing the files, which inotify reports as the
// kernel's writes are.
func memoryTree(t *testing.T) *cgroup.Tree {
	t.Helper()
	mount := t.TempDir()
	dir := filepath.Join(mount, "corral@api.service")
	files := map[string]string{"cgroup.controllers": "cpu io memory pids\n", "cgroup.procs": "", "cgroup.kill": "", "cgroup.subtree_control": ""}
	os.Mkdir(dir, 0o755)
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Setxattr(dir, "user.delegate", []byte("1"), 0); err != nil {
		t.Skipf("the test's file system takes no user xattrs: %v", err)
	}
	tree, err := cgroup.OpenAt(mount, "/corral@api.service", os.Getpid())
	if err != nil || !tree.Memory() {
		t.Fatalf("OpenAt = %v, %v; want a tree with the memory controller", tree, err)
	}
	return tree
}

// memoryWorker is an online worker whose cgroup's files say it uses
// current bytes, inactive of them page cache the kernel may drop.
func memoryWorker(t *testing.T, p *Pool, tree *cgroup.Tree, index int, current, inactive int64) *worker {
	t.Helper()
	g, err := tree.NewGroup(cgroup.GroupName("api", index, 1), cgroup.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{slot: index, gen: 1, pid: 100 + index, state: online, started: time.Now(), group: g,
		spec: &Spec{MaxMemory: 64 << 20}}
	p.workers[w.pid] = w
	p.slots[index] = &slot{index: index, cur: w, spec: w.spec, gen: 1}
	writeUsage(t, g, current, inactive, 0)
	return w
}

func writeUsage(t *testing.T, g *cgroup.Group, current, inactive int64, high int) {
	t.Helper()
	for name, text := range map[string]string{
		"cpu.stat":       "usage_usec 1000\nuser_usec 800\nsystem_usec 200\n",
		"cgroup.procs":   "",
		"memory.current": itoa(current) + "\n",
		"memory.stat":    "anon " + itoa(current-inactive) + "\ninactive_file " + itoa(inactive) + "\n",
		"memory.events":  "low 0\nhigh " + itoa(int64(high)) + "\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
	} {
		if err := os.WriteFile(filepath.Join(g.Path(), name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// nextEvents waits for the watcher's next modified files.
func nextEvents(t *testing.T, p *Pool) []int {
	t.Helper()
	got := make(chan []int, 1)
	go func() { wds, _ := p.watcher.Read(); got <- wds }()
	select {
	case wds := <-got:
		return wds
	case <-time.After(10 * time.Second):
		t.Fatal("no inotify event within 10s of writing memory.events")
		return nil
	}
}

// With the memory controller, max_memory is the kernel's to notice: an
// online worker's cgroup gets memory.high at max_memory and its
// memory.events is watched, with no timer. At the kernel's "high" event a
// worker whose working set is above max_memory is marked for its recycle;
// one above it only by page cache is sampled from then on. Either way
// memory.high is lifted, so that the kernel does not throttle it.
func TestMaxMemoryNotified(t *testing.T) {
	tree := memoryTree(t)
	logs := &testenv.Buffer{}
	p := &Pool{opts: Options{Cgroups: tree, Logf: logs.Logf, Warnf: logs.Logf, SampleInterval: time.Hour},
		workers: map[int]*worker{}, slots: map[int]*slot{}, watches: map[int]watch{}}
	w, err := cgroup.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	p.watcher = w
	defer w.Close()
	defer p.stopSampling()

	leaky := memoryWorker(t, p, tree, 0, 10<<20, 0)
	cached := memoryWorker(t, p, tree, 1, 10<<20, 0)
	p.armMemory()
	for _, w := range []*worker{leaky, cached} {
		if got := readFile(t, filepath.Join(w.group.Path(), "memory.high")); got != "67108864\n" {
			t.Errorf("%s: memory.high %q, want max_memory, 67108864", w, got)
		}
		if w.memWatch == 0 || w.memPoll || w.over != 0 {
			t.Errorf("%s: watch %d, sampled %v, over %d; want memory.events watched", w, w.memWatch, w.memPoll, w.over)
		}
	}
	if p.sampleTick != nil {
		t.Error("a sample ticker runs although the kernel notifies")
	}

	writeUsage(t, leaky.group, 100<<20, 1<<20, 1)
	p.cgroupEvents(nextEvents(t, p))
	if leaky.over != 99<<20 || leaky.memWatch != 0 {
		t.Errorf("after the high event: over %d, watch %d; want 99 MiB over, the watch gone", leaky.over, leaky.memWatch)
	}
	if got := readFile(t, filepath.Join(leaky.group.Path(), "memory.high")); got != "max\n" {
		t.Errorf("after the high event: memory.high %q, want it lifted (max)", got)
	}
	if !strings.Contains(logs.String(), "memory 99.0 MiB is above max_memory 64.0 MiB: recycling it") {
		t.Errorf("the recycle is not logged:\n%s", logs)
	}

	writeUsage(t, cached.group, 100<<20, 90<<20, 1)
	p.cgroupEvents(nextEvents(t, p))
	if cached.over != 0 || !cached.memPoll {
		t.Errorf("a worker above memory.high by page cache alone: over %d, sampled %v; want no recycle, sampling", cached.over, cached.memPoll)
	}
	if got := readFile(t, filepath.Join(cached.group.Path(), "memory.high")); got != "max\n" {
		t.Errorf("page cache's high event: memory.high %q, want it lifted (max)", got)
	}
	p.armMemory()
	if p.sampleTick == nil {
		t.Error("no sample ticker for the worker that is now sampled")
	}
}

// A worker the OOM killer killed at its memory_limit says so, from its
// cgroup's memory.events; one that simply exited does not.
func TestOOMKillReported(t *testing.T) {
	tree := memoryTree(t)
	p := &Pool{workers: map[int]*worker{}, slots: map[int]*slot{}}
	w := memoryWorker(t, p, tree, 0, 10<<20, 0)
	w.spec.MemoryLimit = 512 << 20
	how := "was killed by signal 9 (SIGKILL)"
	if got := p.oomText(w, how); got != how {
		t.Errorf("no OOM kill counted, yet oomText = %q", got)
	}
	events := "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 1\n"
	if err := os.WriteFile(filepath.Join(w.group.Path(), "memory.events"), []byte(events), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := p.oomText(w, how), "was killed by the OOM killer at memory_limit 512.0 MiB (was killed by signal 9 (SIGKILL))"; got != want {
		t.Errorf("oomText = %q, want %q", got, want)
	}
}
