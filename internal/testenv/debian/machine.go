package debian

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/proc"
	"github.com/corraldev/corral/internal/testenv"
)

// Options describe a machine. The zero value boots Base.
type Options struct {
	// Packages are installed beyond Base; they choose the image (see SSH).
	Packages []string
	// Root is a root file system to boot, unpacked by the caller (see
	// Image.Unpack); "" unpacks the image of Packages into Dir.
	Root string
	// Dir receives the unpacked root and the console log. Boot's default
	// is a directory of the test's; Start's a temporary directory that
	// PowerOff removes.
	Dir string
	// Name is the machine's name and host name (in /etc/hostname), unique
	// on the host while it runs: systemd-nspawn keeps state under it in
	// /run. "" makes one up: corral-PID-N.
	Name string
	// Setup, when set, runs on the root file system before the boot, for
	// what must be in place when systemd starts (a port for sshd, keys).
	Setup func(root string) error
	// BootTimeout bounds the boot; 0 means 3 minutes.
	BootTimeout time.Duration
	// Logf logs the boot's steps; nil discards them.
	Logf func(format string, args ...any)
}

// Machine is a booted Debian: systemd-nspawn on the host, systemd as PID 1
// of the machine's PID namespace, on the host's network.
type Machine struct {
	Name    string
	Root    string // the root file system, shared with the host: a write there is a write in the machine
	Console string // the file that holds nspawn's output, the machine's console
	pid     int    // the host PID of the machine's systemd

	nspawn  *exec.Cmd
	exited  chan struct{} // closed when nspawn has exited
	notify  *net.UnixConn // nspawn's NOTIFY_SOCKET
	cleanup string        // a directory PowerOff removes, or ""
	cgroups []string      // the machine's own cgroups, which PowerOff removes
	off     sync.Once
	offErr  error
}

// names counts the machines this process has named.
var names atomic.Int64

// Boot boots a machine for t, failing it if that fails, and powers it off
// when t ends. It ends t with testenv.Missing where machines cannot boot.
func Boot(t testing.TB, o Options) *Machine {
	t.Helper()
	Need(t)
	if o.Dir == "" {
		o.Dir = t.TempDir() // kept past PowerOff, for the console
	}
	if o.Logf == nil {
		o.Logf = t.Logf
	}
	m, err := Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.PowerOff(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("console of %s, the end:\n%s", m.Name, tail(m.Console, 40))
		}
	})
	return m
}

// Start boots a machine and returns once systemd reports the system
// running or degraded; ctx bounds only the boot. The caller must call
// PowerOff. On an error nothing of the machine is left running.
func Start(ctx context.Context, o Options) (*Machine, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Name == "" {
		o.Name = fmt.Sprintf("corral-%d-%d", os.Getpid(), names.Add(1))
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = 3 * time.Minute
	}
	m := &Machine{Name: o.Name, Root: o.Root, exited: make(chan struct{})}
	if err := m.prepare(ctx, o); err != nil {
		m.removeDir()
		return nil, fmt.Errorf("boot %s: %w", o.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.BootTimeout)
	defer cancel()
	start := time.Now()
	if err := m.boot(ctx); err != nil {
		m.PowerOff()
		return nil, fmt.Errorf("boot %s: %w; the console's end:\n%s", o.Name, err, tail(m.Console, 40))
	}
	state, err := m.Run(ctx, "systemctl", "is-system-running", "--wait")
	state = strings.TrimSpace(state)
	if state != "running" && state != "degraded" {
		m.PowerOff()
		return nil, fmt.Errorf("boot %s: systemctl is-system-running: %q, %v", o.Name, state, err)
	}
	o.Logf("booted %s (systemd is host PID %d) in %v, %s", m.Name, m.pid, time.Since(start).Round(time.Millisecond), state)
	if state == "degraded" {
		out, _ := m.Run(ctx, "systemctl", "--failed", "--no-legend")
		o.Logf("%s booted degraded; failed units:\n%s", m.Name, out)
	}
	return m, nil
}

// prepare unpacks the root file system unless o has one, and runs Setup.
func (m *Machine) prepare(ctx context.Context, o Options) error {
	dir := o.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "corral-debian-"); err != nil {
			return err
		}
		m.cleanup = dir
	}
	m.Console = filepath.Join(dir, m.Name+".console")
	if m.Root == "" {
		im, err := build(ctx, o.Packages, o.Logf)
		if err != nil {
			return err
		}
		start := time.Now()
		if m.Root, err = im.Unpack(dir); err != nil {
			return err
		}
		o.Logf("unpacked %s in %v", im.Path, time.Since(start).Round(time.Millisecond))
	}
	// mmdebstrap copies the host's /etc/hostname, which systemd would set
	// over the name nspawn gives.
	if err := os.WriteFile(filepath.Join(m.Root, "etc/hostname"), []byte(m.Name+"\n"), 0o644); err != nil {
		return err
	}
	if o.Setup != nil {
		if err := o.Setup(m.Root); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
	}
	return nil
}

// boot starts systemd-nspawn and waits until the machine's systemd has
// finished starting up. nspawn tells its NOTIFY_SOCKET the host PID of the
// machine's PID 1 (X_NSPAWN_LEADER_PID) and, with --notify-ready, READY=1
// once that systemd sends it, at the end of start-up.
func (m *Machine) boot(ctx context.Context) error {
	addr := &net.UnixAddr{Name: "@" + m.Name + "-nspawn-notify", Net: "unixgram"} // abstract: nothing on disk
	conn, err := net.ListenUnixgram("unixgram", addr)
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	m.notify = conn
	leader, ready := make(chan int, 1), make(chan struct{})
	go readNotify(conn, leader, ready)

	console, err := os.Create(m.Console)
	if err != nil {
		return err
	}
	defer console.Close() // nspawn has its own copy
	if m.cgroups, err = makeCgroups(m.Name); err != nil {
		return fmt.Errorf("a cgroup for the machine: %w", err)
	}
	argv := joinCgroups([]string{"systemd-nspawn", "-D", m.Root, "--boot", "--register=no", "--keep-unit",
		"--machine=" + m.Name, "--notify-ready=yes"})
	m.nspawn = exec.Command(argv[0], argv[1:]...)
	m.nspawn.Env = append(os.Environ(), "NOTIFY_SOCKET="+addr.Name, cgroupsEnv(m.cgroups))
	m.nspawn.Stdout, m.nspawn.Stderr = console, console
	if err := m.nspawn.Start(); err != nil {
		close(m.exited)
		return fmt.Errorf("systemd-nspawn: %w", err)
	}
	go func() { m.nspawn.Wait(); close(m.exited) }()
	for {
		select {
		case m.pid = <-leader:
		case <-ready:
			if m.pid == 0 {
				return errors.New("systemd-nspawn sent READY=1 but not X_NSPAWN_LEADER_PID")
			}
			return nil
		case <-m.exited:
			return fmt.Errorf("systemd-nspawn exited: %v", m.nspawn.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("systemd did not finish starting up: %w", ctx.Err())
		}
	}
}

// readNotify reads nspawn's datagrams until conn is closed: it sends the
// leader's PID on leader and closes ready at READY=1.
func readNotify(conn *net.UnixConn, leader chan<- int, ready chan<- struct{}) {
	buf := make([]byte, 4096)
	isReady := false
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return
		}
		for line := range strings.SplitSeq(string(buf[:n]), "\n") {
			if v, ok := strings.CutPrefix(line, "X_NSPAWN_LEADER_PID="); ok {
				if pid, err := strconv.Atoi(v); err == nil {
					select {
					case leader <- pid:
					default:
					}
				}
			}
			if line == "READY=1" && !isReady {
				isReady = true
				close(ready)
			}
		}
	}
}

// PID returns the host PID of the machine's systemd.
func (m *Machine) PID() int { return m.pid }

// PowerOff stops the machine: SIGTERM to nspawn, which asks systemd to
// power off, then a wait for nspawn to exit, and SIGKILL after 90 s. It
// returns once nothing runs on the root file system, and removes Start's
// temporary directory. Later calls return the first one's result.
func (m *Machine) PowerOff() error {
	m.off.Do(func() {
		if m.nspawn != nil && m.nspawn.Process != nil {
			m.nspawn.Process.Signal(syscall.SIGTERM)
			timer := time.NewTimer(90 * time.Second)
			select {
			case <-m.exited:
			case <-timer.C:
				m.nspawn.Process.Kill()
				<-m.exited
				m.offErr = fmt.Errorf("power off %s: nspawn still ran 90s after SIGTERM; killed it", m.Name)
			}
			timer.Stop()
		}
		if m.notify != nil {
			m.notify.Close()
		}
		removeCgroups(m.cgroups)
		m.removeDir()
	})
	return m.offErr
}

func (m *Machine) removeDir() {
	if m.cleanup != "" {
		os.RemoveAll(m.cleanup)
	}
}

// Run runs a command in the machine, in every namespace of its systemd,
// and returns its output, stdout and stderr together. ctx ends nsenter
// (not what it started inside).
func (m *Machine) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(m.pid), "-a", "--"}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LANG=C.UTF-8"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("in %s: %s: %w", m.Name, strings.Join(args, " "), err)
	}
	return out.String(), err
}

// MustRun runs a command in the machine and fails t if it fails.
func (m *Machine) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, err := m.Run(t.Context(), args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// CopyIn copies the host's file from to path in the machine, with its
// mode, creating the directories on the way.
func (m *Machine) CopyIn(t testing.TB, from, path string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(from); err == nil {
			to := filepath.Join(m.Root, path)
			if err = os.MkdirAll(filepath.Dir(to), 0o755); err == nil {
				err = os.WriteFile(to, b, fi.Mode().Perm())
			}
		}
	}
	if err != nil {
		t.Fatalf("copy %s into %s:%s: %v", from, m.Name, path, err)
	}
}

// WriteFile writes text to path in the machine, mode 0644.
func (m *Machine) WriteFile(t testing.TB, path, text string) {
	t.Helper()
	testenv.WriteFile(t, filepath.Join(m.Root, path), text)
}

// Show returns properties of a unit in the machine (systemctl show).
func (m *Machine) Show(t testing.TB, unit string, props ...string) map[string]string {
	t.Helper()
	out := m.MustRun(t, "systemctl", "show", unit, "--property="+strings.Join(props, ","))
	p := make(map[string]string)
	for line := range strings.SplitSeq(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			p[k] = v
		}
	}
	return p
}

// Processes returns the command line of every process in the machine's
// PID namespace, systemd's own included, by host PID.
func (m *Machine) Processes(t testing.TB) map[int]string {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", m.pid))
	if err != nil {
		t.Fatal(err)
	}
	pids, err := proc.PIDs()
	if err != nil {
		t.Fatal(err)
	}
	procs := make(map[int]string)
	for _, pid := range pids {
		if other, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err != nil || other != ns {
			continue
		}
		if line, err := proc.Cmdline(pid); err == nil {
			procs[pid] = line
		}
	}
	return procs
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Shared is one machine for the tests of a package: the first test that
// calls Get boots it with Options, the others get the same machine, and
// Close, from TestMain after m.Run, powers it off:
//
//	var machine = debian.Shared{Options: debian.Options{Name: "web"}}
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		machine.Close()
//		os.Exit(code)
//	}
//
// Tests that share a machine must leave it as they found it.
type Shared struct {
	Options Options
	once    sync.Once
	m       *Machine
	err     error
}

// Get returns the shared machine, booting it on the first call, and fails
// t if the boot failed.
func (s *Shared) Get(t testing.TB) *Machine {
	t.Helper()
	Need(t)
	s.once.Do(func() {
		o := s.Options
		if o.Logf == nil {
			o.Logf = t.Logf // the first test's log: it waits for the boot
		}
		s.m, s.err = Start(context.Background(), o)
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.m
}

// Close powers the machine off, if it was booted.
func (s *Shared) Close() error {
	if s.m == nil {
		return nil
	}
	return s.m.PowerOff()
}
