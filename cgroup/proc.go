package cgroup

import (
	"bytes"
	"os"
	"strconv"

	"github.com/corraldev/corral/internal/proc"
)

// ProcessTree measures pid and its descendants from /proc: their resident
// memory and CPU time summed, with the CPU time of the children they have
// reaped. A descendant whose parent exited (a daemon that left its
// session) is no longer below pid and is not counted; a cgroup counts it.
func ProcessTree(pid int) (Usage, error) {
	var buf []byte
	if _, err := readStat(pid, &buf); err != nil {
		return Usage{}, err
	}
	pids := descendants(pid, &buf)
	u := Usage{Procs: len(pids), Memory: residentSum(pids, &buf)}
	for _, p := range pids {
		if s, err := readStat(p, &buf); err == nil {
			u.CPU += s.CPU() + s.ReapedCPU()
		}
	}
	return u, nil
}

// readStat reads /proc/PID/stat into *buf and parses it.
func readStat(pid int, buf *[]byte) (proc.Stat, error) {
	b, err := readRaw("/proc/"+strconv.Itoa(pid)+"/stat", *buf)
	if err != nil {
		return proc.Stat{}, err
	}
	*buf = b
	return proc.ParseStat(b)
}

// descendants returns pid and every process below it, parents first: the
// children of each of their threads (/proc/PID/task/TID/children).
func descendants(pid int, buf *[]byte) []int {
	out := []int{pid}
	for i := 0; i < len(out) && len(out) < 100000; i++ {
		dir := "/proc/" + strconv.Itoa(out[i]) + "/task/"
		tids, _ := listRaw(dir)
		for _, tid := range tids {
			kids, err := readPIDs(dir+tid+"/children", *buf)
			if err != nil {
				continue // the thread has exited; its children moved to another
			}
			out = append(out, kids...)
		}
	}
	return out
}

// pageSize is the unit of /proc/PID/statm.
var pageSize = int64(os.Getpagesize())

// residentSum returns the resident memory of pids summed, in bytes: the
// resident pages of /proc/PID/statm, which is VmRSS. A process that has
// gone counts nothing.
func residentSum(pids []int, buf *[]byte) int64 {
	var sum int64
	for _, pid := range pids {
		b, err := readRaw("/proc/"+strconv.Itoa(pid)+"/statm", *buf)
		if err != nil {
			continue
		}
		*buf = b
		f := bytes.Fields(b)
		if len(f) < 2 {
			continue
		}
		if pages, err := strconv.ParseInt(string(f[1]), 10, 64); err == nil {
			sum += pages * pageSize
		}
	}
	return sum
}
