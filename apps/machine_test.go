package apps_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"
)

// The end-to-end tests run corral on a Debian 12 booted with systemd as
// PID 1 in systemd-nspawn, one machine for every test of the package: root
// drives the system manager, and alice, a user with lingering, her own.
// The machine shares the host's network, so its apps serve on 127.0.0.1.
//
// This is the package's own copy of the recipe in packaging/machine_test.go,
// until internal/testenv shares one booted machine between packages.

// packages are what the machine has beyond minbase: systemd as init, and
// logind for alice's lingering user manager.
var packages = []string{"systemd", "systemd-sysv", "dbus", "libpam-systemd", "curl"}

const user = "alice"

// machine is the booted Debian.
type machine struct {
	root    string
	nspawn  *exec.Cmd
	exited  chan struct{}
	systemd int // the host PID of its PID 1
	console string
}

var booted struct {
	once sync.Once
	m    *machine
	err  error
	dir  string
}

// boot returns the package's machine, booting it on first use; it powers
// off after the last test (see TestMain).
func boot(t testing.TB) *machine {
	t.Helper()
	if os.Geteuid() != 0 {
		if testenv.CI() {
			t.Fatal("the apps tests boot a Debian with systemd-nspawn, which needs root")
		}
		t.Skip("the apps tests boot a Debian with systemd-nspawn, which needs root")
	}
	for tool, pkg := range map[string]string{"mmdebstrap": "mmdebstrap", "systemd-nspawn": "systemd-container", "nsenter": "util-linux", "tar": "tar"} {
		testenv.Need(t, tool, pkg)
	}
	booted.once.Do(func() { booted.m, booted.err = newMachine() })
	if booted.err != nil {
		t.Fatal(booted.err)
	}
	return booted.m
}

// powerOff stops the machine, if one booted, and removes it.
func powerOff() {
	if m := booted.m; m != nil {
		m.stop()
	}
	if booted.dir != "" {
		os.RemoveAll(booted.dir)
	}
}

// newMachine unpacks the cached root file system, puts corral, the
// example app and node in it, and boots it.
func newMachine() (*machine, error) {
	tarball, err := rootfsTarball()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("/var/tmp", "corral-apps-test-")
	if err != nil {
		return nil, err
	}
	booted.dir = dir
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, err
	}
	if out, err := exec.Command("tar", "-C", root, "-xf", tarball).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("unpack %s: %v: %s", tarball, err, out)
	}
	for bin, pkg := range map[string]string{"usr/bin/corral": "../cmd/corral", "usr/local/bin/hello": "../examples/hello"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(root, bin), pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v: %s", pkg, err, out)
		}
	}
	// The host's node, for Node apps and ecosystem.config.js: it needs
	// only libc and libstdc++, which the machine has.
	if node, err := exec.LookPath("node"); err == nil {
		if err := copyFile(node, filepath.Join(root, "usr/local/bin/node"), 0o755); err != nil {
			return nil, err
		}
	}
	m := &machine{root: root, console: filepath.Join(dir, "console")}
	if err := m.start(); err != nil {
		return nil, err
	}
	setup := [][]string{
		{"useradd", "--create-home", "--uid", "1000", user},
		{"corral", "units"},
		{"corral", "units", "--user"}, // /etc/systemd/user, as root
		{"loginctl", "enable-linger", user},
	}
	for _, args := range setup {
		if out, err := m.run("", "/", args...); err != nil {
			m.stop()
			return nil, fmt.Errorf("set the machine up: %v\n%s", err, out)
		}
	}
	if err := m.waitUserManager(); err != nil {
		m.stop()
		return nil, err
	}
	return m, nil
}

// rootfsTarball returns the cached mmdebstrap tarball of the packages,
// making it the first time: under /var/tmp, named by its recipe, written
// to a temporary file and renamed, under a lock, so that concurrent test
// runs share it.
func rootfsTarball() (string, error) {
	sum := sha256.Sum256([]byte("bookworm minbase " + strings.Join(packages, ",")))
	path := "/var/tmp/corral-apps-bookworm-" + hex.EncodeToString(sum[:6]) + ".tar"
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	tmp := strings.TrimSuffix(path, ".tar") + ".tmp" + strconv.Itoa(os.Getpid()) + ".tar"
	defer os.Remove(tmp)
	out, err := exec.Command("mmdebstrap", "--variant=minbase", "--include="+strings.Join(packages, ","), "bookworm", tmp).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("mmdebstrap: %v\n%s", err, out)
	}
	return path, os.Rename(tmp, path)
}

// start boots the root file system and waits until systemd is running.
func (m *machine) start() error {
	console, err := os.OpenFile(m.console, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer console.Close()
	m.nspawn = exec.Command("systemd-nspawn", "-D", m.root, "--boot", "--register=no", "--keep-unit")
	m.nspawn.Stdout, m.nspawn.Stderr = console, console
	m.nspawn.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := m.nspawn.Start(); err != nil {
		return fmt.Errorf("systemd-nspawn: %w", err)
	}
	m.exited = make(chan struct{})
	go func() { m.nspawn.Wait(); close(m.exited) }()
	if err := poll(time.Minute, "systemd-nspawn to start systemd", func() bool {
		m.systemd = childOf(m.nspawn.Process.Pid, "systemd")
		return m.systemd != 0
	}); err != nil {
		return err
	}
	return poll(2*time.Minute, "the machine to boot", func() bool {
		out, _ := m.run("", "/", "systemctl", "is-system-running")
		s := strings.TrimSpace(out)
		return s == "running" || s == "degraded"
	})
}

// stop powers the machine off and waits for nspawn to exit.
func (m *machine) stop() {
	m.nspawn.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
		return
	case <-time.After(90 * time.Second):
	}
	m.nspawn.Process.Kill()
	<-m.exited
}

// reboot powers the machine off and boots it again from the same root
// file system, as a reboot does.
func (m *machine) reboot(t *testing.T) {
	t.Helper()
	m.stop()
	if err := m.start(); err != nil {
		t.Fatal(err)
	}
	if err := m.waitUserManager(); err != nil {
		t.Fatal(err)
	}
}

// waitUserManager waits until alice's lingering user manager runs.
func (m *machine) waitUserManager() error {
	return poll(time.Minute, user+"'s user manager", func() bool {
		out, _ := m.run(user, "/", userctl("is-system-running")...)
		s := strings.TrimSpace(out)
		return s == "running" || s == "degraded"
	})
}

// run runs a command in the machine as root (who is "") or as who, in
// dir, with a clean environment (no XDG_RUNTIME_DIR: corral finds the
// user manager at /run/user/UID, as after su), and returns its output.
func (m *machine) run(who, dir string, args ...string) (string, error) {
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG=C.UTF-8", "HOME=/root"}
	var prefix []string
	if who != "" {
		env[2] = "HOME=/home/" + who
		prefix = []string{"runuser", "-u", who, "--"}
	}
	argv := append([]string{"-t", strconv.Itoa(m.systemd), "-a", "--"}, prefix...)
	argv = append(argv, "env", "-i")
	argv = append(argv, env...)
	argv = append(argv, "sh", "-c", `cd "$0" && exec "$@"`, dir)
	cmd := exec.Command("nsenter", append(argv, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return out.String(), err
}

// must runs a command in the machine and fails t if it fails.
func (m *machine) must(t testing.TB, who, dir string, args ...string) string {
	t.Helper()
	out, err := m.run(who, dir, args...)
	if err != nil {
		t.Fatalf("in the machine, as %s: %v\n%s", whoName(who), err, out)
	}
	return out
}

// userctl returns the command line of systemctl --user for alice, whose
// environment (see run) has no XDG_RUNTIME_DIR.
func userctl(args ...string) []string {
	return append([]string{"env", "XDG_RUNTIME_DIR=/run/user/1000", "systemctl", "--user"}, args...)
}

func whoName(who string) string {
	if who == "" {
		return "root"
	}
	return who
}

// write writes a file into the machine, owned by who.
func (m *machine) write(t testing.TB, who, path, text string) {
	t.Helper()
	testenv.WriteFile(t, filepath.Join(m.root, path), text)
	if who != "" {
		m.must(t, "", "/", "chown", who+":", path)
	}
}

// exists reports whether path exists in the machine.
func (m *machine) exists(path string) bool {
	_, err := os.Lstat(filepath.Join(m.root, path))
	return err == nil
}

func childOf(parent int, comm string) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", parent))
	for _, task := range tasks {
		b, _ := os.ReadFile(task)
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if strings.TrimSpace(string(c)) == comm {
				return pid
			}
		}
	}
	return 0
}

// poll checks cond every 50 ms until it holds, or fails after timeout.
func poll(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
	return nil
}

func copyFile(from, to string, mode os.FileMode) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, b, mode)
}
