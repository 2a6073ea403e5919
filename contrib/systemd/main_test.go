package systemd_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/corraldev/corral/internal/testenv"
)

// These tests run the shipped units under a real systemd: a user manager
// (systemd --user) per test, started by the test as root in a private mount
// namespace. TestMain re-runs the test binary under `unshare --mount` so
// that the tmpfs it puts on /run/systemd (where a user manager looks for
// /run/systemd/system, and systemd's inaccessible nodes for sandboxing) and
// on the test's base directory are seen by this package's processes only.
// The base directory is under /var/lib because the units' PrivateTmp=
// hides /tmp and their API file systems hide /run: the corral binary, the
// configs and the manager's runtime directory must stay visible to them.
//
// Each manager runs in a cgroup of its own below this process's cgroup, so
// that it manages only itself and its units: a user manager moves every
// process of its cgroup into init.scope, which at the cgroup root would be
// every process of the machine.

// nsEnv, set in the re-run test binary, is the base directory, which the
// parent created and removes.
const nsEnv = "CORRAL_SYSTEMD_TEST_BASE"

// cgroupPrefix starts the names of the cgroups the managers run in.
const cgroupPrefix = "corral-systemd-test-"

var (
	// skipReason says why the tests that need systemd cannot run here;
	// empty inside the namespace.
	skipReason string
	// base is the directory, on a tmpfs of the namespace, that holds the
	// binaries and one directory per manager.
	base string
	// kmsg is the file bind-mounted over /dev/kmsg in the namespace: every
	// manager logs there (SYSTEMD_LOG_TARGET=kmsg), not to the kernel.
	kmsg string
	// stopKmsg ends the copying to kmsg.
	stopKmsg = func() {}
)

func TestMain(m *testing.M) {
	if b := os.Getenv(nsEnv); b != "" {
		os.Exit(inNamespace(m, b))
	}
	if skipReason = cannotRun(); skipReason != "" {
		os.Exit(m.Run())
	}
	os.Exit(reexec())
}

// cannotRun says why the systemd tests cannot run here, or "".
func cannotRun() string {
	if os.Geteuid() != 0 {
		return "the systemd tests run a user manager in a private mount namespace, which needs root; run them as root (CI does)"
	}
	for _, tool := range []string{"unshare", "systemctl", "systemd-notify", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("the systemd tests need %s: %v", tool, err)
		}
	}
	if systemdBinary() == "" {
		return "the systemd tests need systemd (/lib/systemd/systemd)"
	}
	if out, err := exec.Command("unshare", "--mount", "--propagation", "private", "true").CombinedOutput(); err != nil {
		return fmt.Sprintf("unshare --mount failed (no CAP_SYS_ADMIN?): %v: %s", err, out)
	}
	return ""
}

// systemdBinary returns the path of systemd, or "".
func systemdBinary() string {
	for _, p := range []string{"/lib/systemd/systemd", "/usr/lib/systemd/systemd"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// reexec runs this test binary again in a private mount namespace and
// returns its exit code. It removes what the run leaves behind.
func reexec() int {
	b, err := os.MkdirTemp("/var/lib", "corral-systemd-test-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "systemd tests: %v\n", err)
		return 1
	}
	defer os.Remove(b) // empty: the tmpfs on it lived in the namespace
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "systemd tests: %v\n", err)
		return 1
	}
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "--", self}, os.Args[1:]...)...)
	cmd.Env = append(os.Environ(), nsEnv+"="+b)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	if cmd.Process != nil {
		removeCgroups(cgroupPrefix + strconv.Itoa(cmd.Process.Pid) + "-")
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode()
	case err != nil:
		fmt.Fprintf(os.Stderr, "systemd tests: %v\n", err)
		return 1
	}
	return 0
}

// inNamespace sets the namespace up and runs the tests.
func inNamespace(m *testing.M, b string) int {
	if err := setUpNamespace(b); err != nil {
		fmt.Fprintf(os.Stderr, "systemd tests: set up the mount namespace: %v\n", err)
		return 1
	}
	base = b
	code := m.Run()
	stopKmsg()
	removeCgroups(cgroupPrefix + strconv.Itoa(os.Getpid()) + "-")
	return code
}

// setUpNamespace mounts what a user manager needs and the tests share.
func setUpNamespace(b string) error {
	if err := os.MkdirAll("/run/systemd", 0o755); err != nil {
		return err
	}
	for _, dir := range []string{"/run/systemd", b} {
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
			return fmt.Errorf("mount a tmpfs on %s: %w", dir, err)
		}
	}
	if err := os.Mkdir("/run/systemd/system", 0o755); err != nil {
		return err
	}
	if err := makeInaccessibleNodes("/run/systemd/inaccessible"); err != nil {
		return err
	}
	return logKmsg(filepath.Join(b, "kmsg"))
}

// logKmsg puts a FIFO over /dev/kmsg and copies what is written to it to
// the file path, which kmsg then names. A manager writes its log there with
// SYSTEMD_LOG_TARGET=kmsg, and the units' processes that log before they
// run (a failed namespace setup, say) too. A FIFO, because each writer
// opens /dev/kmsg at offset 0: on a plain file they would overwrite each
// other.
func logKmsg(path string) error {
	fifo := path + ".fifo"
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		return err
	}
	// Opened for reading and writing, the FIFO never blocks an open and
	// never reads end of file; it lives as long as the test binary.
	r, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	go func() {
		io.Copy(w, r) // until stopKmsg closes r
		w.Close()
	}()
	stopKmsg = func() { r.Close() }
	if err := unix.Mount(fifo, "/dev/kmsg", "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s over /dev/kmsg: %w", fifo, err)
	}
	kmsg = path
	return nil
}

// makeInaccessibleNodes creates what systemd (PID 1) creates at boot and a
// sandboxed unit's namespace mounts over the paths it hides, such as
// ProtectHome='s /home.
func makeInaccessibleNodes(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	old := unix.Umask(0o777)
	defer unix.Umask(old)
	for name, mode := range map[string]uint32{
		"reg": unix.S_IFREG, "dir": unix.S_IFDIR, "fifo": unix.S_IFIFO,
		"sock": unix.S_IFSOCK, "chr": unix.S_IFCHR, "blk": unix.S_IFBLK,
	} {
		path := filepath.Join(dir, name)
		var err error
		if mode == unix.S_IFDIR {
			err = unix.Mkdir(path, 0)
		} else {
			err = unix.Mknod(path, mode, 0)
		}
		if err != nil {
			return fmt.Errorf("create %s: %w", path, err)
		}
	}
	return nil
}

// binaries are corral and the example app, built once for all tests.
var binaries struct {
	once          sync.Once
	corral, hello string
	err           error
}

// buildBinaries builds corral and examples/hello into the base directory.
func buildBinaries(t testing.TB) (corral, hello string) {
	t.Helper()
	binaries.once.Do(func() {
		dir := filepath.Join(base, "bin")
		binaries.corral, binaries.hello = filepath.Join(dir, "corral"), filepath.Join(dir, "hello")
		for bin, pkg := range map[string]string{
			binaries.corral: "github.com/corraldev/corral/cmd/corral",
			binaries.hello:  "github.com/corraldev/corral/examples/hello",
		} {
			if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
				binaries.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if binaries.err != nil {
		t.Fatal(binaries.err)
	}
	return binaries.corral, binaries.hello
}

// requireSystemd ends the test with testenv.Missing when it cannot run
// here.
func requireSystemd(t testing.TB) {
	t.Helper()
	if skipReason != "" {
		testenv.Missing(t, "%s", skipReason)
	}
}
