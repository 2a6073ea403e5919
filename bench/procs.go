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

	"github.com/corraldev/corral/internal/proc"
)

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
		kids, _ := proc.Children(p)
		roots = append(roots, kids...)
	}
	return out
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	st, err := proc.ReadStat(pid)
	return err == nil && !st.Zombie()
}

// rssKB returns the resident set size of pid in KiB (VmRSS), or 0.
func rssKB(pid int) int {
	rss, _ := proc.RSS(pid)
	return int(rss / 1024)
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
