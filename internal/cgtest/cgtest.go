// Package cgtest gives a test a cgroup of its own in the machine's unified
// (v2) hierarchy, for tests of what corral does with the cgroup systemd
// delegates to it: the real kernel's cgroup files, CLONE_INTO_CGROUP,
// cgroup.kill and cgroup.events, without a systemd.
package cgtest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"
	"golang.org/x/sys/unix"
)

// Dir creates a new cgroup, /sys/fs/cgroup/corral-test-N (or under
// /sys/fs/cgroup/unified on a hybrid system), and returns its directory.
// With delegated, it is marked as systemd marks the cgroup of a unit with
// Delegate=yes (user.delegate=1). When the test ends every process in it
// is killed and it is removed, with everything below it. It needs root and
// a writable cgroup2 hierarchy: without them the test is skipped, or fails
// in CI.
func Dir(t testing.TB, delegated bool) string {
	t.Helper()
	testenv.NeedRoot(t, "a test cgroup")
	mount := ""
	for _, m := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(m, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			mount = m
			break
		}
	}
	if mount == "" {
		testenv.Missing(t, "no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified")
	}
	dir, err := os.MkdirTemp(mount, "corral-test-")
	if err != nil {
		testenv.Missing(t, "create a test cgroup: %v", err)
	}
	t.Cleanup(func() { remove(t, dir) })
	if delegated {
		if err := unix.Setxattr(dir, "user.delegate", []byte("1"), 0); err != nil {
			t.Fatalf("mark %s delegated: %v", dir, err)
		}
	}
	return dir
}

// Path returns dir's cgroup path, as /proc/PID/cgroup shows it.
func Path(dir string) string {
	for _, m := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if p, ok := strings.CutPrefix(dir, m+"/"); ok {
			return "/" + p
		}
	}
	return dir
}

// remove kills what runs in dir and below, then removes the cgroups,
// deepest first, once the killed processes have been reaped.
func remove(t testing.TB, dir string) {
	var dirs []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	for i := len(dirs) - 1; i >= 0; i-- {
		testenv.WaitFor(t, 10*time.Second, "test cgroup "+dirs[i]+" removed", func() bool {
			err := os.Remove(dirs[i])
			return err == nil || errors.Is(err, os.ErrNotExist)
		})
	}
}
