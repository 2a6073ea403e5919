package debian

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroupMounts are the hierarchies systemd-nspawn places a machine in: the
// unified one (pure v2, or a hybrid system's) and, on hybrid and legacy
// systems, systemd's own v1 hierarchy.
var cgroupMounts = []struct {
	path  string
	magic int64
}{
	{"/sys/fs/cgroup", unix.CGROUP2_SUPER_MAGIC},
	{"/sys/fs/cgroup/unified", unix.CGROUP2_SUPER_MAGIC},
	{"/sys/fs/cgroup/systemd", unix.CGROUP_SUPER_MAGIC},
}

// makeCgroups creates a cgroup named name in each hierarchy nspawn uses
// and returns their directories. With --keep-unit, nspawn puts itself in
// supervisor/ and the machine in payload/ below the cgroup it was started
// in: two machines started from one cgroup would share payload/, and each
// one's systemd would manage the other's services. So each machine starts
// in a cgroup of its own.
func makeCgroups(name string) ([]string, error) {
	var dirs []string
	for _, m := range cgroupMounts {
		var st unix.Statfs_t
		if unix.Statfs(m.path, &st) != nil || int64(st.Type) != m.magic {
			continue
		}
		dir := filepath.Join(m.path, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			removeCgroups(dirs)
			return nil, err
		}
		dirs = append(dirs, dir)
	}
	return dirs, nil
}

// joinCgroups wraps argv in a shell that moves itself into the cgroups
// that cgroupsEnv names, then execs argv, so that nothing of argv runs
// elsewhere.
func joinCgroups(argv []string) []string {
	script := `for d in $CORRAL_MACHINE_CGROUPS; do echo $$ > "$d/cgroup.procs" || exit 1; done; exec "$@"`
	return append([]string{"sh", "-c", script, "sh"}, argv...)
}

// cgroupsEnv is the variable joinCgroups's shell reads.
func cgroupsEnv(dirs []string) string {
	return "CORRAL_MACHINE_CGROUPS=" + strings.Join(dirs, " ")
}

// removeCgroups removes dirs and what the machine left below them, the
// deepest first, once nothing runs there.
func removeCgroups(dirs []string) {
	for _, dir := range dirs {
		var all []string
		filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				all = append(all, path)
			}
			return nil
		})
		for i := len(all) - 1; i >= 0; i-- {
			os.Remove(all[i])
		}
	}
}
