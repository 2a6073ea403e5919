package apps_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/internal/testenv/debian"
)

// The end-to-end tests run corral on a Debian 12 booted with systemd as
// PID 1 (internal/testenv/debian), one machine for every test of the
// package: root drives the system manager, and alice, a user with
// lingering, her own. The machine shares the host's network, so its apps
// serve on 127.0.0.1. Tests leave the machine as they found it: no app.

const user = "alice"

// packages are what the machine has beyond debian.Base: pam_systemd, without
// which logind starts no user manager for a lingering user.
var packages = []string{"libpam-systemd"}

// machine is the booted Debian. A reboot replaces the debian.Machine and
// keeps the root file system.
type machine struct {
	*debian.Machine
	dir string // holds the root file system; removed after the last test
}

var booted struct {
	once sync.Once
	m    *machine
	err  error
}

// boot returns the package's machine, booting it on first use; powerOff,
// from TestMain, stops it.
func boot(t testing.TB) *machine {
	t.Helper()
	debian.Need(t)
	booted.once.Do(func() { booted.m, booted.err = newMachine(t.Logf) })
	if booted.err != nil {
		t.Fatal(booted.err)
	}
	return booted.m
}

// powerOff stops the machine, if one booted, and removes it.
func powerOff() error {
	m := booted.m
	if m == nil {
		return nil
	}
	err := m.PowerOff()
	os.RemoveAll(m.dir)
	return err
}

// newMachine boots the base image with corral, the example app and the
// host's node in it, and sets up alice.
func newMachine(logf func(string, ...any)) (*machine, error) {
	dir, err := os.MkdirTemp(debian.CacheDir, "corral-apps-test-")
	if err != nil {
		return nil, err
	}
	m := &machine{dir: dir}
	m.Machine, err = debian.Start(context.Background(), debian.Options{Packages: packages, Dir: dir, Setup: install, Logf: logf})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	fail := func(err error) (*machine, error) {
		m.PowerOff()
		os.RemoveAll(dir)
		return nil, err
	}
	for _, args := range [][]string{
		{"useradd", "--create-home", "--uid", "1000", user},
		{"corral", "units"},
		{"corral", "units", "--user"}, // into /etc/systemd/user, as root
		{"loginctl", "enable-linger", user},
	} {
		if out, err := m.run("", "/", args...); err != nil {
			return fail(fmt.Errorf("set the machine up: %v\n%s", err, out))
		}
	}
	if err := m.waitUserManager(); err != nil {
		return fail(err)
	}
	return m, nil
}

// install puts corral, examples/hello and the host's node into the root
// file system; node needs only libc and libstdc++, which the image has.
func install(root string) error {
	for bin, pkg := range map[string]string{"usr/bin/corral": "../cmd/corral", "usr/local/bin/hello": "../examples/hello"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(root, bin), pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v: %s", pkg, err, out)
		}
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil // the tests that need node say so
	}
	b, err := os.ReadFile(node)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, "usr/local/bin/node"), b, 0o755)
}

// reboot powers the machine off and boots it again from the same root
// file system, as a reboot does.
func (m *machine) reboot(t *testing.T) {
	t.Helper()
	if err := m.PowerOff(); err != nil {
		t.Fatal(err)
	}
	next, err := debian.Start(t.Context(), debian.Options{Packages: packages, Root: m.Root, Dir: m.dir, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	m.Machine = next
	if err := m.waitUserManager(); err != nil {
		t.Fatal(err)
	}
}

// waitUserManager waits until alice's lingering user manager runs.
func (m *machine) waitUserManager() error {
	// logind starts it a moment after the boot; until then systemctl
	// --user finds no manager, and --wait does not wait for one.
	var out string
	return poll(time.Minute, user+"'s user manager", func() bool {
		out, _ = m.run(user, "/", userctl("is-system-running", "--wait")...)
		s := strings.TrimSpace(out)
		return s == "running" || s == "degraded"
	})
}

// run runs a command in the machine as root (who is "") or as who, in
// dir, with a clean environment (no XDG_RUNTIME_DIR: corral finds the
// user manager at /run/user/UID, as after su), and returns its output.
func (m *machine) run(who, dir string, args ...string) (string, error) {
	var argv []string
	home := "/root"
	if who != "" {
		argv, home = []string{"runuser", "-u", who, "--"}, "/home/"+who
	}
	argv = append(argv, "env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG=C.UTF-8", "HOME="+home,
		"sh", "-c", `cd "$0" && exec "$@"`, dir)
	return m.Run(context.Background(), append(argv, args...)...)
}

// must runs a command in the machine and fails t if it fails.
func (m *machine) must(t testing.TB, who, dir string, args ...string) string {
	t.Helper()
	out, err := m.run(who, dir, args...)
	if err != nil {
		t.Fatalf("as %s: %v\n%s", whoName(who), err, out)
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
	testenv.WriteFile(t, filepath.Join(m.Root, path), text)
	if who != "" {
		m.must(t, "", "/", "chown", who+":", path)
	}
}

// exists reports whether path exists in the machine.
func (m *machine) exists(path string) bool {
	_, err := os.Lstat(filepath.Join(m.Root, path))
	return err == nil
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
