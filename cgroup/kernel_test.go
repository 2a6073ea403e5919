package cgroup

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/cgtest"
)

// startIn starts sh -c script in the cgroup at dir ("": the test's own)
// and returns it once it has printed its first line.
func startIn(t *testing.T, dir string, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	if dir != "" {
		d, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(d.Fd())}
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if !bufio.NewScanner(out).Scan() {
		t.Fatalf("sh -c %q printed nothing", script)
	}
	return cmd
}

func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	p, _ := unifiedPath(string(b))
	return p
}

// On the machine's own kernel: Open moves corral (a stand-in process here)
// into its leaf; a worker started in its Group stays there with whatever it
// starts, a daemon in a session of its own included; Usage counts them;
// Kill ends them all, the Watcher says when the cgroup is empty, and
// Remove removes it.
func TestGroupOnKernel(t *testing.T) {
	dir := cgtest.Dir(t, true)
	corral := startIn(t, dir, "echo up; exec sleep 600")
	mount := strings.TrimSuffix(dir, cgtest.Path(dir))
	tree, err := OpenAt(mount, cgtest.Path(dir), corral.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cgroupOf(t, corral.Process.Pid), cgtest.Path(dir)+"/"+SelfName; got != want {
		t.Errorf("corral is in %s, want %s", got, want)
	}

	g, err := tree.NewGroup(GroupName("api", 0, 1), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	worker := startIn(t, g.Path(), "setsid sleep 600 & echo up; exec sleep 600")
	if got, want := cgroupOf(t, worker.Process.Pid), cgtest.Path(dir)+"/api.worker0.gen1"; got != want {
		t.Errorf("the worker is in %s, want %s", got, want)
	}
	u, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if u.Procs != 2 || u.Memory <= 0 {
		t.Errorf("Usage = %+v, want 2 processes and their memory", u)
	}
	if pop, err := g.Populated(); err != nil || !pop {
		t.Errorf("Populated = %v, %v; want true", pop, err)
	}
	if err := g.Remove(); err == nil {
		t.Fatal("Remove of a populated cgroup succeeded")
	}

	w, err := NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	wd, err := w.Add(g.EventsFile())
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	worker.Wait()
	read := make(chan []int, 1)
	go func() { wds, _ := w.Read(); read <- wds }()
	for {
		pop, err := g.Populated()
		if err != nil {
			t.Fatal(err)
		}
		if !pop {
			break
		}
		select {
		case wds := <-read:
			if len(wds) != 1 || wds[0] != wd {
				t.Errorf("Watcher read %v, want [%d]", wds, wd)
			}
			go func() { wds, _ := w.Read(); read <- wds }()
		case <-time.After(10 * time.Second):
			t.Fatal("the cgroup still holds processes 10s after cgroup.kill, and no event came")
		}
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(g.Path()); !os.IsNotExist(err) {
		t.Errorf("after Remove: %v", err)
	}
	// A new group of the same name replaces an empty one and steps aside
	// for a populated one.
	g1, err := tree.NewGroup("api.worker1.gen1", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	startIn(t, g1.Path(), "echo up; exec sleep 600")
	g2, err := tree.NewGroup("api.worker1.gen1", Limits{})
	if err != nil || filepath.Base(g2.Path()) != "api.worker1.gen1.2" {
		t.Errorf("NewGroup beside a populated namesake = %v, %v; want api.worker1.gen1.2", g2, err)
	}
}

// ProcessTree counts a process and everything below it.
func TestProcessTree(t *testing.T) {
	sh := startIn(t, "", "sleep 600 & sleep 600 & echo up; wait")
	u, err := ProcessTree(sh.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if u.Procs != 3 || u.Memory <= 0 {
		t.Errorf("ProcessTree = %+v, want 3 processes and their memory", u)
	}
	if _, err := ProcessTree(1 << 30); err == nil {
		t.Error("ProcessTree of no process succeeded")
	}
}

// TestProcs: a unit's processes are those in its cgroup and in every
// cgroup below it, and none beside it.
func TestProcs(t *testing.T) {
	dir := cgtest.Dir(t, false)
	deep := filepath.Join(dir, "corral", "api.worker0.gen1")
	beside := dir + "-beside"
	for _, d := range []string{deep, beside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { os.Remove(beside) })
	top, below := startIn(t, dir, "echo; exec sleep 600"), startIn(t, deep, "echo; exec sleep 600")
	other := startIn(t, beside, "echo; exec sleep 600") // killed and reaped before beside is removed
	got, err := Procs(cgtest.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []int{top.Process.Pid, below.Process.Pid}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Procs(%s) = %v, want %v (and not %d, in the cgroup beside it)", cgtest.Path(dir), got, want, other.Process.Pid)
	}
	if _, err := Procs(cgtest.Path(dir) + "-gone"); err == nil {
		t.Error("Procs of a cgroup that does not exist: no error")
	}
}
