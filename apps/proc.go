package apps

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/corraldev/corral/cgroup"
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

// cgroupPIDs returns the processes in the cgroup path (a unit's
// ControlGroup) and below it; none if it is gone.
func cgroupPIDs(path string) []int {
	if path == "" {
		return nil
	}
	pids, _ := cgroup.Procs(path)
	return pids
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
