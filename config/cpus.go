package config

import (
	"bufio"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// AvailableCPUs returns how many CPUs this process may use: the CPUs in its
// affinity mask, lowered to its cgroup CPU quota rounded up (cgroup v2
// cpu.max, or v1 cpu.cfs_quota_us / cpu.cfs_period_us).
func AvailableCPUs() int {
	n := runtime.NumCPU() // the affinity mask
	for _, q := range []int{cgroupQuota(), cgroupV1Quota()} {
		if q > 0 && q < n {
			n = q
		}
	}
	return max(n, 1)
}

// cgroupV1Quota returns the v1 CFS quota of this process's cpu cgroup, in
// whole CPUs rounded up; 0 for none.
func cgroupV1Quota() int {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || !slices.Contains(strings.Split(f[1], ","), "cpu") {
			continue
		}
		for _, mnt := range []string{"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"} {
			dir := filepath.Join(mnt, f[2])
			q, err1 := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
			p, err2 := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
			if err1 == nil && err2 == nil {
				return parseCPUMax(strings.TrimSpace(string(q)) + " " + strings.TrimSpace(string(p)))
			}
		}
	}
	return 0
}

// cgroupQuota returns the tightest cpu.max quota, in whole CPUs rounded up,
// from this process's cgroup up to the root; 0 for none.
func cgroupQuota() int {
	dir, ok := ownCgroup()
	if !ok {
		return 0
	}
	best := 0
	for {
		if q := readCPUMax(filepath.Join("/sys/fs/cgroup", dir, "cpu.max")); q > 0 && (best == 0 || q < best) {
			best = q
		}
		if dir == "/" || dir == "." || dir == "" {
			return best
		}
		dir = filepath.Dir(dir)
	}
}

// ownCgroup returns the cgroup v2 path of this process ("0::/path").
func ownCgroup() (string, bool) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "0::"); ok {
			return p, true
		}
	}
	return "", false
}

// readCPUMax parses "QUOTA PERIOD" or "max PERIOD"; 0 for no limit.
func readCPUMax(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return parseCPUMax(string(b))
}

func parseCPUMax(s string) int {
	f := strings.Fields(s)
	if len(f) != 2 || f[0] == "max" {
		return 0
	}
	quota, err1 := strconv.ParseFloat(f[0], 64)
	period, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil || quota <= 0 || period <= 0 {
		return 0
	}
	return int(math.Ceil(quota / period))
}
