package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// children returns the PIDs whose parent is pid, read from /proc.
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid(p) == pid {
			out = append(out, p)
		}
	}
	return out
}

// ppid returns the parent of pid, or 0 when pid is gone.
func ppid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// "pid (comm) state ppid ...": comm may hold spaces, so cut at the last ')'.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// tree returns the roots and all their living descendants.
func tree(roots ...int) []int {
	var out []int
	seen := map[int]bool{}
	for len(roots) > 0 {
		p := roots[0]
		roots = roots[1:]
		if p <= 0 || seen[p] || !alive(p) {
			continue
		}
		seen[p] = true
		out = append(out, p)
		roots = append(roots, children(p)...)
	}
	return out
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// rssKB returns the resident set size of pid in KiB (VmRSS), or 0.
func rssKB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// sumRSS returns the total RSS of pids in KiB.
func sumRSS(pids []int) int {
	n := 0
	for _, p := range pids {
		n += rssKB(p)
	}
	return n
}

// killAll sends SIGKILL to every pid still alive, and to the process group
// each leads, then waits up to 5s for them to go.
func killAll(pids []int) error {
	for _, p := range pids {
		if alive(p) {
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range pids {
		for alive(p) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond) // polling /proc: no event to wait on for a non-child
		}
		if alive(p) {
			return fmt.Errorf("kill %d: still alive after SIGKILL", p)
		}
	}
	return nil
}

// waitGone waits until none of pids is alive, or the timeout passes, and
// reports whether they all went.
func waitGone(pids []int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if len(living(pids)) == 0 {
			return true
		}
		time.Sleep(20 * time.Millisecond) // polling /proc: no event for a non-child
	}
	return len(living(pids)) == 0
}

func living(pids []int) []int {
	var out []int
	for _, p := range pids {
		if alive(p) {
			out = append(out, p)
		}
	}
	return out
}

// readPIDFile returns the PID written in path.
func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read pid file %s: %w", filepath.Base(path), err)
	}
	if n <= 0 {
		return 0, errors.New("read pid file: no pid")
	}
	return n, nil
}
