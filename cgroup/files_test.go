package cgroup

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeTree returns a Tree on a directory that holds what a delegated
// cgroup of a pure cgroup v2 system holds (testdata/purev2: the memory and
// cpu controllers), marked delegated as systemd marks it, with corral
// moved into its leaf. The kernel's files are plain files here: what the
// code writes stays written, and the test reads it back.
func fakeTree(t *testing.T) *Tree {
	t.Helper()
	mount := t.TempDir()
	dir := filepath.Join(mount, "system.slice", "corral@api.service")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFiles(t, "testdata/purev2", dir, "cgroup.controllers", "cgroup.procs")
	for _, f := range []string{"cgroup.kill", "cgroup.subtree_control"} {
		os.WriteFile(filepath.Join(dir, f), nil, 0o644)
	}
	if err := unix.Setxattr(dir, "user.delegate", []byte("1"), 0); err != nil {
		t.Skipf("the test's file system takes no user xattrs: %v", err)
	}
	tree, err := OpenAt(mount, "/system.slice/corral@api.service", 4242)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func copyFiles(t *testing.T, from, to string, names ...string) {
	t.Helper()
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(from, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readBack(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// On a pure v2 system Open moves corral into its leaf and turns on the
// memory and cpu controllers for the workers' cgroups, and NewGroup writes
// memory.max (with memory.oom.group, so that the OOM killer takes the
// worker whole) before anything runs in the cgroup.
func TestOpenPureV2(t *testing.T) {
	tree := fakeTree(t)
	dir := tree.Dir()
	if got := readBack(t, filepath.Join(dir, SelfName, "cgroup.procs")); got != "4242\n" {
		t.Errorf("corral/cgroup.procs = %q, want corral's PID", got)
	}
	if got := readBack(t, filepath.Join(dir, "cgroup.subtree_control")); got != "+memory +cpu\n" {
		t.Errorf("cgroup.subtree_control = %q, want +memory +cpu", got)
	}
	if !tree.Memory() || !strings.Contains(tree.String(), "controllers: memory, cpu") {
		t.Errorf("tree %q: want the memory and cpu controllers", tree)
	}

	g, err := tree.NewGroup(GroupName("api", 0, 1), Limits{MemoryMax: 512 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if g.Path() != filepath.Join(dir, "api.worker0.gen1") {
		t.Errorf("group at %s", g.Path())
	}
	if got := readBack(t, filepath.Join(g.Path(), "memory.max")); got != "536870912\n" {
		t.Errorf("memory.max = %q, want 536870912", got)
	}
	if got := readBack(t, filepath.Join(g.Path(), "memory.oom.group")); got != "1\n" {
		t.Errorf("memory.oom.group = %q, want 1", got)
	}
	for _, tc := range []struct {
		bytes int64
		want  string
	}{{300 << 20, "314572800\n"}, {0, "max\n"}} {
		if err := g.SetMemoryHigh(tc.bytes); err != nil {
			t.Fatal(err)
		}
		if got := readBack(t, filepath.Join(g.Path(), "memory.high")); got != tc.want {
			t.Errorf("SetMemoryHigh(%d): memory.high = %q, want %q", tc.bytes, got, tc.want)
		}
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	if got := readBack(t, filepath.Join(g.Path(), "cgroup.kill")); got != "1\n" {
		t.Errorf("cgroup.kill = %q after Kill", got)
	}
}

// The figures come from the cgroup's own files: memory.current less
// inactive_file, cpu.stat's usage_usec, the processes in cgroup.procs; and
// memory.events' counters, by name.
func TestUsagePureV2(t *testing.T) {
	tree := fakeTree(t)
	g, err := tree.NewGroup("api.worker1.gen2", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	copyFiles(t, "testdata/purev2", g.Path(), "memory.current", "memory.stat", "memory.events", "cpu.stat", "cgroup.procs", "cgroup.events")
	u, err := g.Usage()
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{Memory: 52559872 - 8257536, CPU: 1830527 * time.Microsecond, Procs: 2}
	if u != want {
		t.Errorf("Usage = %+v, want %+v", u, want)
	}
	ev, err := g.MemoryEvents()
	if err != nil {
		t.Fatal(err)
	}
	if want := (MemoryEvents{High: 17, Max: 3, OOM: 1, OOMKill: 2, OOMGroupKill: 1}); ev != want || !ev.OOMKilled() {
		t.Errorf("MemoryEvents = %+v, want %+v", ev, want)
	}
	if p, err := g.Populated(); err != nil || !p {
		t.Errorf("Populated = %v, %v; want true", p, err)
	}
}

// Without the memory controller (a hybrid system's unified tree) memory
// settings are refused, not ignored.
func TestNoMemoryController(t *testing.T) {
	tree := &Tree{mount: t.TempDir(), path: "/x"}
	os.MkdirAll(tree.Dir(), 0o755)
	if _, err := tree.NewGroup("api.worker0.gen1", Limits{MemoryMax: 1 << 30}); err == nil || !strings.Contains(err.Error(), "memory controller is not delegated") {
		t.Errorf("NewGroup with MemoryMax and no controller = %v", err)
	}
	g, err := tree.NewGroup("api.worker0.gen1", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SetMemoryHigh(1); err == nil {
		t.Error("SetMemoryHigh without the controller succeeded")
	}
	if _, err := g.MemoryEvents(); err == nil {
		t.Error("MemoryEvents without the controller succeeded")
	}
}

// Open refuses, and says why, wherever corral has no cgroup of its own.
func TestOpenRefuses(t *testing.T) {
	mount := t.TempDir()
	plain := filepath.Join(mount, "user.slice", "session-1.scope")
	os.MkdirAll(plain, 0o755)
	for _, tc := range []struct {
		path, want string
	}{
		{"/", "root cgroup"},
		{"/user.slice/session-1.scope", "not delegated to it (run corral under a unit with Delegate=yes"},
		{"/system.slice/corral@api.service/corral", "already runs in a cgroup named corral"},
	} {
		if _, err := OpenAt(mount, tc.path, 1); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("open(%s) = %v, want an error saying %q", tc.path, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(plain, SelfName)); err == nil {
		t.Error("a refused open created corral's leaf")
	}
}

func TestUnifiedPath(t *testing.T) {
	hybrid := "12:memory:/system.slice/x.service\n1:name=systemd:/system.slice/x.service\n0::/system.slice/x.service\n"
	if p, ok := unifiedPath(hybrid); !ok || p != "/system.slice/x.service" {
		t.Errorf("unifiedPath(hybrid) = %q, %v", p, ok)
	}
	if _, ok := unifiedPath("4:memory:/x\n"); ok {
		t.Error("unifiedPath of a v1-only file found a path")
	}
}

func TestGroupName(t *testing.T) {
	for _, tc := range []struct {
		app       string
		slot, gen int
		want      string
	}{
		{"api", 0, 1, "api.worker0.gen1"},
		{"my app/v2", 3, 12, "my_app_v2.worker3.gen12"},
		{"memory", 0, 1, "_memory.worker0.gen1"},
		{"corral", 1, 1, "_corral.worker1.gen1"},
		{"", 0, 1, "_.worker0.gen1"},
	} {
		if got := GroupName(tc.app, tc.slot, tc.gen); got != tc.want {
			t.Errorf("GroupName(%q, %d, %d) = %q, want %q", tc.app, tc.slot, tc.gen, got, tc.want)
		}
	}
}

func TestParseEvents(t *testing.T) {
	ev := func(wd int32, mask uint32, name string) []byte {
		n := (len(name) + 16) &^ 15
		b := make([]byte, unix.SizeofInotifyEvent+n)
		binary.NativeEndian.PutUint32(b[0:], uint32(wd))
		binary.NativeEndian.PutUint32(b[4:], mask)
		binary.NativeEndian.PutUint32(b[12:], uint32(n))
		copy(b[16:], name)
		return b
	}
	var b []byte
	b = append(b, ev(3, unix.IN_MODIFY, "")...)
	b = append(b, ev(5, unix.IN_IGNORED, "")...)
	b = append(b, ev(3, unix.IN_MODIFY, "")...)
	b = append(b, ev(7, unix.IN_MODIFY, "x")...)
	got := parseEvents(b)
	if len(got) != 2 || got[0] != 3 || got[1] != 7 {
		t.Errorf("parseEvents = %v, want [3 7]", got)
	}
}
