package debian

import (
	"context"
	"errors"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"
)

// shared is the machine the tests of this package share.
var shared = Shared{}

func TestMain(m *testing.M) {
	code := m.Run()
	if err := shared.Close(); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		code = 1
	}
	os.Exit(code)
}

func TestCachePath(t *testing.T) {
	a := cachePath("/c", packages([]string{"jq", "ansible-core"}))
	if b := cachePath("/c", packages([]string{"ansible-core", "jq", "systemd", "jq"})); a != b {
		t.Errorf("the same packages in another order give %s and %s", a, b)
	}
	if b := cachePath("/c", packages(nil)); a == b {
		t.Errorf("different packages give the same image %s", a)
	}
	if dir, name := filepath.Split(a); dir != "/c/" || !strings.HasPrefix(name, "corral-bookworm-") || !strings.HasSuffix(name, ".tar") {
		t.Errorf("cache path %s, want /c/corral-bookworm-<hash>.tar", a)
	}
}

// TestCacheBuildsOnce: of callers that want the image at once, one builds
// it and the others wait for it (flock is per open file, so goroutines
// contend for it as processes do); later callers reuse it, until it is too
// old; a failed build leaves nothing.
func TestCacheBuildsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "corral-bookworm-test.tar")
	var builds atomic.Int32
	write := func(ctx context.Context, out string) error {
		builds.Add(1)
		return os.WriteFile(out, []byte("image"), 0o644)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := cached(t.Context(), path, t.Logf, write); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := builds.Load(); n != 1 {
		t.Errorf("%d builds by 4 callers at once, want 1", n)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "image" {
		t.Errorf("cached file: %q, %v", b, err)
	}

	old := time.Now().Add(-maxAge - time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if err := cached(t.Context(), path, t.Logf, write); err != nil || builds.Load() != 2 {
		t.Errorf("an image older than %v: %v, %d builds in all; want it built again", maxAge, err, builds.Load())
	}

	broken := filepath.Join(t.TempDir(), "corral-bookworm-broken.tar")
	fail := errors.New("mmdebstrap failed")
	err := cached(t.Context(), broken, t.Logf, func(ctx context.Context, out string) error {
		os.WriteFile(out, []byte("half"), 0o644)
		return fail
	})
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(broken), "*.tar"))
	if !errors.Is(err, fail) || len(left) != 0 {
		t.Errorf("failed build: %v, left %v; want the error and no tarball", err, left)
	}
}

// TestShared: tests that ask for the shared machine get the same one.
func TestShared(t *testing.T) {
	var first *Machine
	for i := range 2 {
		t.Run("test "+strconv.Itoa(i), func(t *testing.T) {
			m := shared.Get(t)
			if first == nil {
				first = m
			}
			if m != first || m.PID() != first.PID() {
				t.Errorf("got machine %s (PID %d), want the first test's %s (PID %d)", m.Name, m.PID(), first.Name, first.PID())
			}
			if got := strings.TrimSpace(m.MustRun(t, "systemctl", "is-system-running")); got != "running" && got != "degraded" {
				t.Errorf("is-system-running: %q", got)
			}
		})
	}
}

func TestMachine(t *testing.T) {
	m := shared.Get(t)
	if got := strings.TrimSpace(m.MustRun(t, "hostname")); got != m.Name {
		t.Errorf("hostname %q, want the machine's name %q", got, m.Name)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	m.CopyIn(t, self, "/root/copied/test-binary")
	if out := m.MustRun(t, "stat", "-c", "%s %a", "/root/copied/test-binary"); !strings.HasPrefix(out, fileSize(t, self)+" 7") {
		t.Errorf("copied file in the machine: %q, want %s bytes, executable", out, fileSize(t, self))
	}
	procs := m.Processes(t)
	if !strings.Contains(procs[m.PID()], "init") && !strings.Contains(procs[m.PID()], "systemd") {
		t.Errorf("processes: PID %d is %q, want systemd", m.PID(), procs[m.PID()])
	}
	if !slices.ContainsFunc(slices.Collect(maps.Values(procs)), func(c string) bool { return strings.Contains(c, "systemd-journald") }) {
		t.Errorf("no systemd-journald among the machine's processes: %v", procs)
	}
	if p := m.Show(t, "dbus.service", "ActiveState"); p["ActiveState"] != "active" {
		t.Errorf("dbus.service: %v", p)
	}
}

// TestSeveralMachines boots a second machine while the shared one runs and
// serves its host name on a loopback port of each: both share the host's
// network, with a port each.
func TestSeveralMachines(t *testing.T) {
	a := shared.Get(t)
	b := Boot(t, Options{})
	if a.Name == b.Name || a.PID() == b.PID() {
		t.Fatalf("two machines with name %s/%s, PID %d/%d", a.Name, b.Name, a.PID(), b.PID())
	}
	for _, m := range []*Machine{a, b} {
		addr := testenv.FreeAddr(t)
		unit := "hostname-" + strconv.Itoa(os.Getpid())
		m.MustRun(t, "systemd-run", "--unit="+unit, "systemd-socket-activate", "--listen="+addr, "--accept", "--inetd", "/bin/hostname")
		t.Cleanup(func() { m.Run(context.Background(), "systemctl", "stop", unit) })
		var got string
		testenv.WaitFor(t, 30*time.Second, m.Name+" to answer on "+addr, func() bool {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return false
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			out, _ := io.ReadAll(c)
			got = strings.TrimSpace(string(out))
			return got != ""
		})
		if got != m.Name {
			t.Errorf("%s answered %q on %s", m.Name, got, addr)
		}
	}
}

func fileSize(t *testing.T, path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return strconv.FormatInt(fi.Size(), 10)
}
