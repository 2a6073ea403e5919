package apps

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	cproc "github.com/corraldev/corral/internal/proc"
)

// The functions here read /proc (through internal/proc) and /sys/fs/cgroup
// for what systemd cannot say: the memory and CPU time of an app where its cgroup has no memory or
// CPU accounting (v1 controllers, read-only in a container), and the
// processes of a worker.

// proc is one process's parent, CPU time and resident memory.
type proc struct {
	ppid  int
	cpuNs uint64 // user + system
	rss   uint64 // bytes
}

// procTable is every process of the machine, by PID.
type procTable map[int]proc

// readProcs reads every process in /proc; those that exit meanwhile are
// left out.
func readProcs() procTable {
	t := make(procTable)
	pids, _ := cproc.PIDs()
	for _, pid := range pids {
		st, err := cproc.ReadStat(pid)
		if err != nil {
			continue
		}
		rss, _ := cproc.RSS(pid)
		t[pid] = proc{ppid: st.PPID, cpuNs: uint64(st.CPU()), rss: uint64(max(rss, 0))}
	}
	return t
}

// tree returns root and its descendants in t.
func (t procTable) tree(root int) []int {
	children := make(map[int][]int)
	for pid, p := range t {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// sum returns the CPU time and resident memory of pids, those in t.
func (t procTable) sum(pids []int) (cpuNs, rss uint64) {
	for _, pid := range pids {
		if p, ok := t[pid]; ok {
			cpuNs += p.cpuNs
			rss += p.rss
		}
	}
	return cpuNs, rss
}

// unifiedRoot returns where the cgroup v2 hierarchy is mounted: the
// whole of /sys/fs/cgroup, or its unified/ part on a hybrid system.
func unifiedRoot() string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return "/sys/fs/cgroup"
	}
	return "/sys/fs/cgroup/unified"
}

// cgroupPIDs returns the processes in the cgroup path (a unit's
// ControlGroup) and below it.
func cgroupPIDs(path string) []int {
	if path == "" {
		return nil
	}
	var pids []int
	filepath.WalkDir(filepath.Join(unifiedRoot(), path), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// cgroupCPU returns the CPU time of a cgroup from its cpu.stat, which
// cgroup v2 keeps whether or not the cpu controller is on.
func cgroupCPU(path string) (uint64, bool) {
	if path == "" {
		return 0, false
	}
	f, err := os.Open(filepath.Join(unifiedRoot(), path, "cpu.stat"))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "usage_usec "); ok {
			us, err := strconv.ParseUint(v, 10, 64)
			return us * 1000, err == nil
		}
	}
	return 0, false
}

// listenerProcess returns a process that holds a TCP socket listening on
// port, and its command name, or 0 when none is found (or visible).
func listenerProcess(port int) (int, string) {
	inodes := make(map[string]bool)
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: TCP_LISTEN
				continue
			}
			if i := strings.LastIndexByte(f[1], ':'); i >= 0 {
				if p, err := strconv.ParseInt(f[1][i+1:], 16, 32); err == nil && int(p) == port {
					inodes["socket:["+f[9]+"]"] = true
				}
			}
		}
	}
	if len(inodes) == 0 {
		return 0, ""
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && inodes[l] {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				return pid, strings.TrimSpace(string(comm))
			}
		}
	}
	return 0, ""
}

// sumProcs returns the CPU time and resident memory of pids, those that
// still run.
func sumProcs(pids []int) (cpuNs, rss uint64) {
	for _, pid := range pids {
		st, err := cproc.ReadStat(pid)
		if err != nil {
			continue
		}
		cpuNs += uint64(st.CPU())
		if r, err := cproc.RSS(pid); err == nil && r > 0 {
			rss += uint64(r)
		}
	}
	return cpuNs, rss
}
