package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Tree is the cgroup that systemd delegated to corral, with corral moved
// into a leaf of its own. Its methods may be called from any goroutine.
type Tree struct {
	mount  string // where the unified hierarchy is mounted
	path   string // the delegated cgroup, relative to mount: "/system.slice/.../corral@api.service"
	memory bool   // the memory controller is enabled for the workers' cgroups
	cpu    bool   // so is the cpu controller
}

// SelfName is the leaf that corral moves itself into.
const SelfName = "corral"

// Candidate mount points of the unified hierarchy: pure v2, then hybrid.
var mounts = []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}

// Open finds the cgroup that systemd delegated to this process, moves the
// process into a leaf of its own (SelfName) and enables the memory and cpu
// controllers for the cgroups beside it, where the delegated cgroup has
// them. It returns an error that says why when there is no such cgroup:
// no cgroup v2 hierarchy, the root cgroup, a cgroup systemd did not mark
// delegated (user.delegate or trusted.delegate), one that is read-only
// here (ProtectControlGroups= without ReadWritePaths=), or a kernel
// without cgroup.kill (before Linux 5.14). Nothing is changed then.
func Open() (*Tree, error) {
	mount, err := UnifiedMount()
	if err != nil {
		return nil, err
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("read /proc/self/cgroup: %w", err)
	}
	path, ok := unifiedPath(string(own))
	if !ok {
		return nil, errors.New("/proc/self/cgroup names no cgroup in the unified hierarchy")
	}
	return OpenAt(mount, path, os.Getpid())
}

// UnifiedMount returns where the cgroup v2 hierarchy is mounted: all of
// /sys/fs/cgroup, or its unified/ part on a hybrid system.
func UnifiedMount() (string, error) {
	for _, m := range mounts {
		var st unix.Statfs_t
		if unix.Statfs(m, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return m, nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy: neither /sys/fs/cgroup nor /sys/fs/cgroup/unified is a cgroup2 file system (cgroup v1 only)")
}

// unifiedPath returns the path of the "0::PATH" line of a /proc/PID/cgroup.
func unifiedPath(procCgroup string) (string, bool) {
	for line := range strings.SplitSeq(procCgroup, "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok && strings.HasPrefix(p, "/") {
			return p, true
		}
	}
	return "", false
}

// OpenAt is Open for the cgroup path of the hierarchy mounted at mount,
// moving pid into its leaf. Tests use it on a directory that holds a
// cgroup's files as the kernel writes them.
func OpenAt(mount, path string, pid int) (*Tree, error) {
	t := &Tree{mount: mount, path: path}
	dir := t.dir()
	switch {
	case path == "/":
		return nil, fmt.Errorf("corral runs in the root cgroup of %s, which is systemd's, not delegated to corral", mount)
	case filepath.Base(path) == SelfName:
		return nil, fmt.Errorf("corral already runs in a cgroup named %s (%s): is another corral managing this tree?", SelfName, dir)
	case !delegated(dir):
		return nil, fmt.Errorf("corral's cgroup %s is not delegated to it (run corral under a unit with Delegate=yes, as corral@.service does)", path)
	}
	if err := unix.Access(filepath.Join(dir, "cgroup.procs"), unix.W_OK); err != nil {
		return nil, fmt.Errorf("corral's cgroup %s is delegated but not writable here (%v): with ProtectControlGroups=, add ReadWritePaths=-%s to the unit", path, err, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err != nil {
		return nil, fmt.Errorf("this kernel has no cgroup.kill (Linux 5.14 and later have it): %w", err)
	}
	self := filepath.Join(dir, SelfName)
	if err := os.Mkdir(self, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create corral's own cgroup: %w", err)
	}
	if err := writeFile(filepath.Join(self, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
		os.Remove(self)
		return nil, fmt.Errorf("move corral into %s: %w", self, err)
	}
	t.enable()
	return t, nil
}

// delegated reports whether systemd marked the cgroup at dir as delegated:
// it sets trusted.delegate (root only may read it) and user.delegate to
// "1" on the cgroup of a unit with Delegate=yes.
func delegated(dir string) bool {
	buf := make([]byte, 8)
	for _, name := range []string{"user.delegate", "trusted.delegate"} {
		if n, err := unix.Getxattr(dir, name, buf); err == nil && string(buf[:n]) == "1" {
			return true
		}
	}
	return false
}

// enable turns on the memory and cpu controllers for the cgroups under the
// delegated one, those of them it has. It is not an error to have neither:
// a hybrid system's unified tree never has controllers.
func (t *Tree) enable() {
	b, err := os.ReadFile(filepath.Join(t.dir(), "cgroup.controllers"))
	if err != nil {
		return
	}
	have := strings.Fields(string(b))
	var want []string
	for _, c := range []string{"memory", "cpu"} {
		if slices.Contains(have, c) {
			want = append(want, "+"+c)
		}
	}
	if len(want) == 0 || writeFile(filepath.Join(t.dir(), "cgroup.subtree_control"), strings.Join(want, " ")) != nil {
		return
	}
	b, _ = os.ReadFile(filepath.Join(t.dir(), "cgroup.subtree_control"))
	on := strings.Fields(strings.ReplaceAll(string(b), "+", ""))
	t.memory, t.cpu = slices.Contains(on, "memory"), slices.Contains(on, "cpu")
}

// dir returns the delegated cgroup's directory.
func (t *Tree) dir() string { return filepath.Join(t.mount, t.path) }

// Dir returns the directory of the delegated cgroup, such as
// /sys/fs/cgroup/system.slice/system-corral.slice/corral@api.service.
func (t *Tree) Dir() string { return t.dir() }

// Memory reports whether the workers' cgroups have the memory controller:
// memory.current, memory.max and memory.high.
func (t *Tree) Memory() bool { return t.memory }

// String describes the tree for corral's log at start.
func (t *Tree) String() string {
	var have []string
	if t.memory {
		have = append(have, "memory")
	}
	if t.cpu {
		have = append(have, "cpu")
	}
	s := fmt.Sprintf("corral runs in %s, each worker in a cgroup of its own beside it", filepath.Join(t.dir(), SelfName))
	if len(have) == 0 {
		return s + "; no controllers are delegated (a hybrid system's unified tree has none): memory figures come from /proc, CPU from cpu.stat"
	}
	return s + "; controllers: " + strings.Join(have, ", ")
}

// writeFile writes s to a cgroup file, as `echo s > path` does.
func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Procs returns the processes in the v2 cgroup at path, relative to the
// unified mount as systemd's ControlGroup property gives it, and in every
// cgroup below it: a unit's processes, whoever made its sub-cgroups.
func Procs(path string) ([]int, error) {
	mount, err := UnifiedMount()
	if err != nil {
		return nil, err
	}
	var pids []int
	var buf []byte
	root := filepath.Join(mount, path)
	err = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if p != root && errors.Is(err, os.ErrNotExist) {
				return nil // removed while we walked
			}
			return err
		}
		if d.Name() == "cgroup.procs" {
			found, err := readPIDs(p, buf)
			if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) {
				return nil // removed while we walked
			}
			if err != nil {
				return err
			}
			pids = append(pids, found...)
		}
		return nil
	})
	return pids, err
}
