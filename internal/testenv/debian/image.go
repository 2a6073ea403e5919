// Package debian boots Debian 12 systems for corral's end-to-end tests,
// with systemd as PID 1, so that what is systemd's behaviour is tested
// against systemd itself.
//
// An Image is a root file system that mmdebstrap makes from Debian's
// packages: the minbase variant of bookworm with Base and the packages a
// test adds. It is built once per machine and cached in /var/tmp, named by
// a hash of its suite, architecture and sorted package list
// (/var/tmp/corral-bookworm-<hash>.tar); a build writes a temporary file
// and renames it, under an flock on <tar>.lock, so that test processes
// that want the same image at once build it once, and a cached image is
// reused for a week.
//
// Boot (or Start) unpacks an image into a directory of the test's own and
// boots it with `systemd-nspawn --boot --register=no --keep-unit`, under a
// machine name of its own, and returns once systemd reports the system
// running (or degraded). The machine shares the host's network, so a
// socket it listens on at 127.0.0.1 is the host's; several machines can
// run at once, each with its services on ports of their own. Commands run
// inside with `nsenter -t PID -a`. Boot powers the machine off when the
// test ends; Shared boots one machine for many tests of a package and
// powers it off from TestMain.
//
// It needs root, mmdebstrap, systemd-nspawn (Debian package
// systemd-container), nsenter and tar; Need ends a test that lacks them
// with testenv.Missing.
package debian

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"
)

// Suite is the Debian release the images hold.
const Suite = "bookworm"

// Base are the packages every image holds: systemd as init, D-Bus for
// systemctl, curl for a test that asks a service from inside, pam_systemd
// (logind starts no user manager for a lingering user without it), and
// what an Ansible target needs (sshd, python3). Every booted test of the
// repository shares this one image, so a CI machine with an empty cache
// builds one: more packages in it cost a second of unpacking, a second
// image minutes of mmdebstrap.
var Base = []string{"systemd", "systemd-sysv", "dbus", "curl", "libpam-systemd", "openssh-server", "python3"}

// CacheDir is where images are cached.
const CacheDir = "/var/tmp"

// maxAge is how long a cached image is reused: after a week it is built
// again with Debian's updates.
const maxAge = 7 * 24 * time.Hour

// tools are the host programs the package runs.
var tools = []struct{ name, pkg string }{
	{"mmdebstrap", "mmdebstrap"}, {"systemd-nspawn", "systemd-container"},
	{"nsenter", "util-linux"}, {"tar", "tar"},
}

// Need ends the test with testenv.Missing unless it can build and boot a
// Debian machine here: root and the tools.
func Need(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t, "booting a Debian machine with systemd-nspawn")
	for _, tool := range tools {
		testenv.Need(t, tool.name, tool.pkg)
	}
}

// Image is a root file system tarball in the cache.
type Image struct {
	Path     string   // the tarball
	Packages []string // what mmdebstrap included: Base and the extras, sorted
}

// packages returns Base and extra, sorted, without repeats.
func packages(extra []string) []string {
	p := slices.Concat(Base, extra)
	slices.Sort(p)
	return slices.Compact(p)
}

// customize runs in the image once its packages are in: sshd stays off
// unless a machine turns it on, since machines share the host's network and
// would all bind port 22 (an Ansible target's Setup gives it a port of its
// own and enables it).
const customize = `chroot "$1" systemctl disable ssh.service`

// cachePath returns the image's file in dir: its name holds a hash of
// everything that makes the image what it is.
func cachePath(dir string, pkgs []string) string {
	sum := sha256.Sum256([]byte(strings.Join([]string{Suite, runtime.GOARCH, "minbase", customize, strings.Join(pkgs, ",")}, "\n")))
	return filepath.Join(dir, "corral-"+Suite+"-"+hex.EncodeToString(sum[:6])+".tar")
}

// Build returns the image with Base and extra packages, from the cache, or
// built with mmdebstrap and cached. It fails the test if it cannot.
func Build(t testing.TB, extra ...string) *Image {
	t.Helper()
	Need(t)
	im, err := build(t.Context(), extra, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// build is Build without a test.
func build(ctx context.Context, extra []string, logf func(string, ...any)) (*Image, error) {
	pkgs := packages(extra)
	im := &Image{Path: cachePath(CacheDir, pkgs), Packages: pkgs}
	err := cached(ctx, im.Path, logf, func(ctx context.Context, out string) error {
		cmd := exec.CommandContext(ctx, "mmdebstrap", "--variant=minbase", "--include="+strings.Join(pkgs, ","),
			"--customize-hook="+customize, Suite, out)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("mmdebstrap: %w\n%s", err, b)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("debian image with %s: %w", strings.Join(pkgs, ","), err)
	}
	return im, nil
}

// cached makes sure path holds a file that write wrote, at most maxAge
// old. It holds an flock on path+".lock" meanwhile, so that of the
// processes that want path at once one writes it and the others wait for
// it. write writes into a temporary file, renamed to path once complete.
func cached(ctx context.Context, path string, logf func(string, ...any), write func(ctx context.Context, out string) error) error {
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("lock the cache: %w", err)
	}
	defer lock.Close() // and with it the lock
	fd := int(lock.Fd())
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); errors.Is(err, syscall.EWOULDBLOCK) {
		logf("waiting for another process to build %s", path)
		err = syscall.Flock(fd, syscall.LOCK_EX)
	}
	if err != nil {
		return fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	if fi, err := os.Stat(path); err == nil && time.Since(fi.ModTime()) < maxAge {
		return nil
	}
	// Under the lock no one else writes this file: what a killed build
	// left behind can go.
	base := strings.TrimSuffix(path, ".tar")
	if stale, _ := filepath.Glob(base + ".tmp-*.tar"); len(stale) > 0 {
		for _, f := range stale {
			os.Remove(f)
		}
	}
	tmp := fmt.Sprintf("%s.tmp-%d.tar", base, os.Getpid())
	defer os.Remove(tmp)
	start := time.Now()
	if err := write(ctx, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	logf("built %s in %v", path, time.Since(start).Round(time.Second))
	return nil
}

// Unpack unpacks the image into a new directory under dir and returns the
// directory, the machine's root.
func (im *Image) Unpack(dir string) (string, error) {
	root := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		return "", fmt.Errorf("unpack %s: %w", im.Path, err)
	}
	if out, err := exec.Command("tar", "-C", root, "-xf", im.Path).CombinedOutput(); err != nil {
		return "", fmt.Errorf("unpack %s: tar: %w: %s", im.Path, err, out)
	}
	return root, nil
}

// UnpackTemp unpacks the image into a directory of t's, which t's cleanup
// removes, and returns the root.
func (im *Image) UnpackTemp(t testing.TB) string {
	t.Helper()
	root, err := im.Unpack(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return root
}
