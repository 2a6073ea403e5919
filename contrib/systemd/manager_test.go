package systemd_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corraldev/corral/cgroup"
	"github.com/corraldev/corral/internal/proc"
	"github.com/corraldev/corral/internal/testenv"
)

// commandTimeout bounds each systemctl call; a reload of 4 workers takes
// well under a second.
const commandTimeout = 60 * time.Second

// manager is a systemd user manager that one test runs.
type manager struct {
	dir      string   // this manager's directory, under base
	runtime  string   // $XDG_RUNTIME_DIR
	unitDir  string   // $XDG_CONFIG_HOME/systemd/user
	etc      string   // stands in for /etc/corral
	env      []string // the environment systemctl needs to reach it
	cgroup   string   // its cgroup, a path in the cgroup hierarchies
	logStart int64    // where its log starts in kmsg
	cmd      *exec.Cmd
	done     chan struct{} // closed when cmd has been waited for
}

var managers atomic.Int64

// startManager starts a user manager for t, stopped when t ends; the stop
// fails t if a process of any unit outlives the manager.
func startManager(t testing.TB) *manager {
	t.Helper()
	requireSystemd(t)
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name()) + "-" + strconv.FormatInt(managers.Add(1), 10)
	m := &manager{dir: filepath.Join(base, name)}
	m.runtime = filepath.Join(m.dir, "run")
	m.unitDir = filepath.Join(m.dir, "config", "systemd", "user")
	m.etc = filepath.Join(m.dir, "etc")
	for _, d := range []string{m.runtime, m.unitDir, m.etc, filepath.Join(m.dir, "home")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(m.runtime, 0o700); err != nil {
		t.Fatal(err)
	}
	m.env = append(cleanEnv(),
		"HOME="+filepath.Join(m.dir, "home"),
		"XDG_RUNTIME_DIR="+m.runtime,
		"XDG_CONFIG_HOME="+filepath.Join(m.dir, "config"),
		"SYSTEMD_LOG_TARGET=kmsg", "SYSTEMD_LOG_LEVEL=info")
	if fi, err := os.Stat(kmsg); err == nil {
		m.logStart = fi.Size()
	}
	procs, err := makeCgroup(cgroupPrefix + strconv.Itoa(os.Getpid()) + "-" + name)
	if err != nil {
		t.Fatalf("cgroup for the user manager: %v", err)
	}
	m.cgroup = procs.path
	t.Cleanup(procs.remove)

	// The shell moves itself into the manager's cgroup, and fails rather
	// than start a manager anywhere else; then it becomes the manager.
	m.cmd = exec.Command("/bin/sh", append([]string{"-c", `for f; do echo $$ > "$f" || exit 1; done; exec "$0" --user`, systemdBinary()}, procs.files...)...)
	m.cmd.Env = m.env
	out, err := os.Create(filepath.Join(m.dir, "manager.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	m.cmd.Stdout, m.cmd.Stderr = out, out
	// If this test binary dies, the manager stops its units and exits.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m.done = make(chan struct{})
	go func() { m.cmd.Wait(); close(m.done) }()
	t.Cleanup(func() { m.stop(t) })

	private := filepath.Join(m.runtime, "systemd", "private")
	testenv.WaitFor(t, 30*time.Second, "the user manager's private socket", func() bool {
		select {
		case <-m.done:
			b, _ := os.ReadFile(out.Name())
			t.Fatalf("the user manager exited: %v\n%s", m.cmd.ProcessState, b)
		default:
		}
		_, err := os.Stat(private)
		return err == nil
	})
	if out, err := m.systemctl("is-system-running", "--wait"); err != nil && !strings.Contains(out, "degraded") {
		t.Fatalf("the user manager did not start: %v: %s", err, out)
	}
	return m
}

// cleanEnv returns this process's environment without what would point
// systemctl or the units at another manager.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "XDG_"), strings.HasPrefix(k, "LISTEN_"), strings.HasPrefix(k, "SYSTEMD_"),
			k == "HOME", k == "NOTIFY_SOCKET", k == "DBUS_SESSION_BUS_ADDRESS", k == "INVOCATION_ID",
			k == "RUNTIME_DIRECTORY", k == "CORRAL_UNIT", k == nsEnv:
			continue
		}
		env = append(env, kv)
	}
	return env
}

// stop stops the manager, which stops every unit, and fails t if any
// process is left in its cgroup.
func (m *manager) stop(t testing.TB) {
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(commandTimeout):
		t.Errorf("the user manager did not exit within %v of SIGTERM; killing it", commandTimeout)
		m.cmd.Process.Kill()
		<-m.done
	}
	if left := cgroupProcs(m.cgroup); len(left) > 0 {
		t.Errorf("processes left after the user manager exited: %v", describe(left))
		for _, pid := range left {
			unix.Kill(pid, unix.SIGKILL)
		}
	}
	if t.Failed() {
		m.dumpLogs(t)
	}
}

// dumpLogs logs what the manager and the units wrote.
func (m *manager) dumpLogs(t testing.TB) {
	if b, err := os.ReadFile(kmsg); err == nil && int64(len(b)) >= m.logStart {
		t.Logf("user manager log:\n%s", b[m.logStart:])
	}
	logs, _ := filepath.Glob(filepath.Join(m.dir, "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		t.Logf("%s:\n%s", filepath.Base(l), b)
	}
}

// systemctl runs `systemctl --user args...` against m and returns what it
// printed.
func (m *manager) systemctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "systemctl", append([]string{"--user", "--no-pager"}, args...)...)
	cmd.Env = m.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustSystemctl runs systemctl and fails t if it fails.
func (m *manager) mustSystemctl(t testing.TB, args ...string) string {
	t.Helper()
	out, err := m.systemctl(args...)
	if err != nil {
		t.Fatalf("systemctl --user %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// props returns properties of unit, as `systemctl show` prints them.
func (m *manager) props(unit string, props ...string) (map[string]string, error) {
	args := []string{"show", unit}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	out, err := m.systemctl(args...)
	if err != nil {
		return nil, fmt.Errorf("systemctl --user %s: %w: %s", strings.Join(args, " "), err, out)
	}
	vals := make(map[string]string)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(line, "=")
		vals[k] = v
	}
	return vals, nil
}

// show is props, failing t on an error.
func (m *manager) show(t testing.TB, unit string, props ...string) map[string]string {
	t.Helper()
	vals, err := m.props(unit, props...)
	if err != nil {
		t.Fatal(err)
	}
	return vals
}

// unitProcs returns the PIDs in unit's cgroup.
func (m *manager) unitProcs(t testing.TB, unit string) []int {
	t.Helper()
	cg := m.show(t, unit, "ControlGroup")["ControlGroup"]
	if cg == "" {
		return nil
	}
	return cgroupProcs(cg)
}

// cgroupFiles are the cgroup.procs files of one cgroup in each hierarchy
// that a user manager uses, and the cgroup's path in them.
type cgroupFiles struct {
	path    string
	files   []string
	created []string // the directories made for it, each parent before its children
}

// remove removes the cgroup, what a manager made in it, and the parents
// made for it that nothing else uses.
func (cg cgroupFiles) remove() {
	removeCgroups(filepath.Base(cg.path))
	for i := len(cg.created) - 1; i >= 0; i-- {
		os.Remove(cg.created[i])
	}
}

// hierarchies returns where this process is in the cgroup hierarchies a
// user manager works in: the unified (v2) one, and on a v1 or hybrid
// system the name=systemd and memory ones. The map goes from the
// hierarchy's mount point to the process's path in it.
func hierarchies() (map[string]string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	unified := "/sys/fs/cgroup"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
		unified = "/sys/fs/cgroup/unified"
	}
	h := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), ":", 3)
		if len(fields) != 3 {
			continue
		}
		switch ctl := strings.Split(fields[1], ","); {
		case fields[0] == "0" && fields[1] == "":
			h[unified] = fields[2]
		case slices.Contains(ctl, "name=systemd"):
			h["/sys/fs/cgroup/systemd"] = fields[2]
		case slices.Contains(ctl, "memory"):
			h["/sys/fs/cgroup/memory"] = fields[2]
		}
	}
	return h, sc.Err()
}

// makeCgroup creates the cgroup name below this process's own, at the same
// path in every hierarchy of hierarchies, since systemd assumes one path
// for all. The cgroup is new, so that only the manager will be in it.
func makeCgroup(name string) (cgroupFiles, error) {
	h, parent, err := cgroupParent()
	if err != nil {
		return cgroupFiles{}, err
	}
	// A manager finds its own cgroup in one of these; started elsewhere,
	// it would take over this process's cgroup and everything in it.
	_, v1 := h["/sys/fs/cgroup/systemd"]
	if _, v2 := h[unifiedMount()]; !v1 && !v2 {
		return cgroupFiles{}, errors.New("neither the unified nor the name=systemd cgroup hierarchy is in /proc/self/cgroup")
	}
	cg := cgroupFiles{path: filepath.Join(parent, name)}
	for mnt := range h {
		dir := filepath.Join(mnt, cg.path)
		made, err := mkdirs(dir)
		cg.created = append(cg.created, made...)
		if err != nil {
			cg.remove()
			return cgroupFiles{}, err
		}
		cg.files = append(cg.files, filepath.Join(dir, "cgroup.procs"))
	}
	return cg, nil
}

// mkdirs creates dir, which must not exist, and its missing parents, and
// returns what it created, parents first.
func mkdirs(dir string) ([]string, error) {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
	}
	if len(missing) == 0 || missing[0] != dir {
		return nil, fmt.Errorf("cgroup %s exists already", dir)
	}
	var made []string
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil {
			return made, err
		}
		made = append(made, missing[i])
	}
	return made, nil
}

// cgroupParent returns the hierarchies and the path below which the
// managers' cgroups go: this process's memory cgroup on a v1 or hybrid
// system, so that memory is still accounted where it was, else its v2
// cgroup.
func cgroupParent() (map[string]string, string, error) {
	h, err := hierarchies()
	if err != nil {
		return nil, "", err
	}
	parent, ok := h["/sys/fs/cgroup/memory"]
	if !ok {
		parent = h[unifiedMount()]
	}
	if parent == "" {
		return nil, "", errors.New("no cgroup of this process found in /proc/self/cgroup")
	}
	return h, parent, nil
}

// unifiedMount returns where the unified (v2) hierarchy is mounted, or ""
// on a system without one.
func unifiedMount() string {
	m, _ := cgroup.UnifiedMount()
	return m
}

// cgroupProcs returns the PIDs in the v2 cgroup path and below it.
func cgroupProcs(path string) []int {
	pids, _ := cgroup.Procs(path)
	return pids
}

// removeCgroups removes, deepest first, the cgroups that makeCgroup made
// and whose names start with prefix, and what the managers made in them.
// Cgroups with processes in them stay.
func removeCgroups(prefix string) {
	h, parent, err := cgroupParent()
	if err != nil {
		return
	}
	for mnt := range h {
		tops, _ := filepath.Glob(filepath.Join(mnt, parent, prefix+"*"))
		for _, top := range tops {
			var dirs []string
			filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				os.Remove(dirs[i])
			}
		}
	}
}

// describe names each PID with its command line, for error messages.
func describe(pids []int) string {
	var parts []string
	for _, pid := range pids {
		line, _ := proc.Cmdline(pid)
		parts = append(parts, fmt.Sprintf("%d (%s)", pid, line))
	}
	return strings.Join(parts, ", ")
}
