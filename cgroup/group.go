package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Group is the cgroup of one worker, beside corral's own. Its methods may
// be called from any goroutine; Remove ends it.
type Group struct {
	name   string
	path   string // its directory
	memory bool   // it has the memory controller
}

// Limits are what NewGroup writes to a new cgroup before any process runs
// in it. Zero values leave the kernel's defaults.
type Limits struct {
	// MemoryMax is memory.max, in bytes: above it the kernel reclaims, then
	// its OOM killer kills the whole group (memory.oom.group is set).
	MemoryMax int64
}

// ErrNoMemoryController means a memory setting was asked of a group whose
// tree has no memory controller.
var ErrNoMemoryController = errors.New("the memory controller is not delegated to corral's cgroup")

// controllerNames are the prefixes of the kernel's interface files, which
// a cgroup's name must not take (systemd's CGROUP_DELEGATION.md).
var controllerNames = []string{"cgroup", "cpu", "cpuset", "cpuacct", "io", "memory", "pids", "rdma", "hugetlb", "misc", "perf_event", "freezer", "devices", "net_cls", "net_prio", "blkio"}

// GroupName returns the cgroup name of a worker: the app's name, its slot
// and its generation, as "api.worker0.gen1", with every character a cgroup
// name should not hold replaced by "_".
func GroupName(app string, slot, gen int) string {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '@', r == ':', r == '+':
			return r
		}
		return '_'
	}, app)
	if len(clean) > 200 {
		clean = clean[:200]
	}
	for _, c := range controllerNames {
		if clean == c {
			clean = "_" + clean
		}
	}
	if clean == "" || clean == SelfName {
		clean = "_" + clean
	}
	return fmt.Sprintf("%s.worker%d.gen%d", clean, slot, gen)
}

// NewGroup creates the cgroup name beside corral's and writes lim to it,
// for a worker to move into. A cgroup of that name left empty by a
// worker that exited is replaced; one still holding processes is kept, and
// the new one is named "name.2" (then .3, ...).
func (t *Tree) NewGroup(name string, lim Limits) (*Group, error) {
	if lim.MemoryMax > 0 && !t.memory {
		return nil, fmt.Errorf("memory.max for %s: %w", name, ErrNoMemoryController)
	}
	g := &Group{memory: t.memory}
	for n := 1; ; n++ {
		g.name = name
		if n > 1 {
			g.name = name + "." + strconv.Itoa(n)
		}
		g.path = filepath.Join(t.dir(), g.name)
		err := os.Mkdir(g.path, 0o755)
		if errors.Is(err, os.ErrExist) && os.Remove(g.path) == nil {
			err = os.Mkdir(g.path, 0o755)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || n == 100 {
			return nil, fmt.Errorf("create cgroup %s: %w", g.path, err)
		}
	}
	if err := g.limit(lim); err != nil {
		os.Remove(g.path)
		return nil, err
	}
	return g, nil
}

func (g *Group) limit(lim Limits) error {
	if lim.MemoryMax <= 0 {
		return nil
	}
	if err := g.write("memory.max", strconv.FormatInt(lim.MemoryMax, 10)); err != nil {
		return err
	}
	// The OOM killer takes the worker whole, not one of its processes.
	return g.write("memory.oom.group", "1")
}

// Name returns the cgroup's name, such as "api.worker0.gen1".
func (g *Group) Name() string { return g.name }

// Path returns the cgroup's directory.
func (g *Group) Path() string { return g.path }

func (g *Group) file(name string) string { return filepath.Join(g.path, name) }

func (g *Group) write(name, value string) error {
	if err := writeFile(g.file(name), value); err != nil {
		return fmt.Errorf("write %s to %s: %w", value, g.file(name), err)
	}
	return nil
}

// Kill kills every process in the cgroup, and any that joins it while it
// does (cgroup.kill).
func (g *Group) Kill() error { return g.write("cgroup.kill", "1") }

// Populated reports whether a process, live or not yet reaped, is in the
// cgroup (cgroup.events).
func (g *Group) Populated() (bool, error) {
	ev, err := readKeyed(g.file("cgroup.events"))
	if err != nil {
		return false, err
	}
	return ev["populated"] != 0, nil
}

// EventsFile returns the path of cgroup.events, which the kernel marks
// modified when the cgroup becomes empty (for a Watcher).
func (g *Group) EventsFile() string { return g.file("cgroup.events") }

// MemoryEventsFile returns the path of memory.events, which the kernel
// marks modified when a memory event is counted (for a Watcher).
func (g *Group) MemoryEventsFile() string { return g.file("memory.events") }

// Remove removes the cgroup, which must be empty. The error of a cgroup
// that still holds processes matches unix.EBUSY.
func (g *Group) Remove() error {
	if err := os.Remove(g.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove cgroup %s: %w", g.path, err)
	}
	return nil
}

// SetMemoryHigh writes memory.high, in bytes; 0 or less writes "max"
// (none). Above it the kernel reclaims the group's memory and counts a
// "high" event in memory.events.
func (g *Group) SetMemoryHigh(bytes int64) error {
	if !g.memory {
		return fmt.Errorf("memory.high for %s: %w", g.name, ErrNoMemoryController)
	}
	v := "max"
	if bytes > 0 {
		v = strconv.FormatInt(bytes, 10)
	}
	return g.write("memory.high", v)
}

// MemoryEvents returns the counters of memory.events.
func (g *Group) MemoryEvents() (MemoryEvents, error) {
	if !g.memory {
		return MemoryEvents{}, fmt.Errorf("memory.events of %s: %w", g.name, ErrNoMemoryController)
	}
	m, err := readKeyed(g.file("memory.events"))
	if err != nil {
		return MemoryEvents{}, err
	}
	return MemoryEvents{High: m["high"], Max: m["max"], OOM: m["oom"], OOMKill: m["oom_kill"], OOMGroupKill: m["oom_group_kill"]}, nil
}

// MemoryEvents are the counters of a cgroup's memory.events.
type MemoryEvents struct {
	High         uint64 // throttled for being above memory.high
	Max          uint64 // reached memory.max
	OOM          uint64 // allocations that failed at memory.max
	OOMKill      uint64 // processes the OOM killer killed
	OOMGroupKill uint64 // times it killed the whole group (memory.oom.group)
}

// OOMKilled reports whether the OOM killer killed anything in the group.
func (e MemoryEvents) OOMKilled() bool { return e.OOMKill > 0 || e.OOMGroupKill > 0 }

// Usage is how much a worker uses, its children included.
type Usage struct {
	// Memory is in bytes. From a cgroup with the memory controller, it is
	// memory.current less inactive_file (page cache that the kernel drops
	// first and at once), what docker stats and Kubernetes call the working
	// set; otherwise the processes' resident memory (VmRSS) summed.
	Memory int64
	// CPU is the CPU time used, user and system: cpu.stat's usage_usec,
	// which counts processes that have exited too, or summed from /proc.
	CPU time.Duration
	// Procs is the number of processes counted.
	Procs int
}

// Usage reads what the cgroup's processes use.
func (g *Group) Usage() (Usage, error) {
	var u Usage
	cpu, err := readKeyed(g.file("cpu.stat"))
	if err != nil {
		return u, err
	}
	u.CPU = time.Duration(cpu["usage_usec"]) * time.Microsecond
	var buf []byte
	pids, err := readPIDs(g.file("cgroup.procs"), buf)
	if err != nil {
		return u, err
	}
	u.Procs = len(pids)
	if !g.memory {
		u.Memory = residentSum(pids, &buf)
		return u, nil
	}
	cur, err := readInt(g.file("memory.current"))
	if err != nil {
		return u, err
	}
	stat, err := readKeyed(g.file("memory.stat"))
	if err != nil {
		return u, err
	}
	u.Memory = max(cur-int64(stat["inactive_file"]), 0)
	return u, nil
}

// readKeyed parses a flat keyed file ("key value" lines: cpu.stat,
// memory.events, memory.stat, cgroup.events).
func readKeyed(path string) (map[string]uint64, error) {
	b, err := readRaw(path, nil)
	if err != nil {
		return nil, err
	}
	m := make(map[string]uint64)
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); ok && err == nil {
			m[k] = n
		}
	}
	return m, nil
}

// readInt parses a file that holds one number (memory.current); "max"
// reads as -1.
func readInt(path string) (int64, error) {
	b, err := readRaw(path, nil)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return n, nil
}
