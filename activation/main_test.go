package activation

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	sdactivation "github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// helperEnv selects the helper a re-run test binary acts as.
const helperEnv = "CORRAL_ACTIVATION_TEST_HELPER"

// testTimeout bounds each child process and each dial in these tests.
const testTimeout = 20 * time.Second

// helpers are the roles a child test binary can play. Each writes a report
// to w, a line "ready", and then serves; an error ends the child with status 1
// after a line "error: ...".
var helpers = map[string]func(w io.Writer) error{
	"listeners": helperListeners,
	"inherited": helperInherited,
	"env":       helperEnvReport,
	"fds":       helperFds,
	"hold":      helperHold,
	"pdeathsig": helperDeathSignal,
}

// init keeps a helper's main goroutine on its main thread: the one that
// holds the parent-death signal, which Linux keeps per thread.
func init() {
	if os.Getenv(helperEnv) != "" {
		runtime.LockOSThread()
	}
}

func TestMain(m *testing.M) {
	MaybeRunTrampoline()
	if name := os.Getenv(helperEnv); name != "" {
		runHelper(name)
	}
	os.Exit(m.Run())
}

func runHelper(name string) {
	h, ok := helpers[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
		os.Exit(2)
	}
	if err := h(os.Stdout); err != nil {
		fmt.Printf("error: %v\n", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// helperListeners takes the sockets with go-systemd, which insists that
// LISTEN_PID is this process, and reports "listener NAME ADDR" per socket.
func helperListeners(w io.Writer) error {
	env := os.Getenv("LISTEN_PID") + "/" + os.Getenv("LISTEN_FDS")
	byName, err := sdactivation.ListenersWithNames()
	if err != nil {
		return err
	}
	if len(byName) == 0 {
		return fmt.Errorf("no listeners (LISTEN_PID/LISTEN_FDS %s, pid %d)", env, os.Getpid())
	}
	var lns []net.Listener
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		for _, ln := range byName[name] {
			addr := ln.Addr().String()
			if ln.Addr().Network() == "unix" {
				addr = "unix:" + addr
			}
			fmt.Fprintf(w, "listener %s %s\n", name, addr)
			lns = append(lns, ln)
		}
	}
	fmt.Fprintln(w, "ready")
	return servePID(lns)
}

// helperInherited takes the sockets with Inherited and reports
// "socket NAME ADDR cloexec=BOOL" per socket, and any LISTEN_*
// variable left in the environment.
func helperInherited(w io.Writer) error {
	socks, err := Inherited()
	if err != nil {
		return err
	}
	if socks == nil {
		return errors.New("not socket-activated")
	}
	for _, k := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		if v, ok := os.LookupEnv(k); ok {
			fmt.Fprintf(w, "env %s=%s\n", k, v)
		}
	}
	serve := make([]func() error, len(socks))
	for i, s := range socks {
		fd, flags, err := fdFlags(s.File, unix.F_GETFD)
		if err != nil {
			return err
		}
		_ = fd // a duplicate (see stableFile), so its number says nothing
		fmt.Fprintf(w, "socket %s %s cloexec=%t\n", s.Name, s.Addr, flags&unix.FD_CLOEXEC != 0)
		if serve[i], err = pidServer(s.File); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "ready")
	return runAll(serve)
}

// pidServer returns a function that answers one connection or datagram on
// the socket f with this process' PID.
func pidServer(f *os.File) (func() error, error) {
	var typ int
	var err error
	if cerr := withFd(f, func(fd int) { typ, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE) }); cerr != nil || err != nil {
		return nil, errors.Join(cerr, err)
	}
	if typ != unix.SOCK_DGRAM {
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, err
		}
		return func() error {
			conn, err := ln.Accept()
			if err == nil {
				_, err = fmt.Fprintf(conn, "%d\n", os.Getpid())
				err = errors.Join(err, conn.Close())
			}
			return err
		}, nil
	}
	c, err := net.FilePacketConn(f)
	if err != nil {
		return nil, err
	}
	return func() error {
		buf := make([]byte, 64)
		_, from, err := c.ReadFrom(buf)
		if err == nil {
			_, err = c.WriteTo(fmt.Appendf(nil, "%d\n", os.Getpid()), from)
		}
		return err
	}, nil
}

// runAll runs every function at once and returns their errors.
func runAll(fns []func() error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(fns))
	for i, fn := range fns {
		wg.Go(func() { errs[i] = fn() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// fdFlags returns f's descriptor and the result of fcntl(fd, cmd), without
// changing the blocking mode as f.Fd would.
func fdFlags(f *os.File, cmd int) (fd, flags int, err error) {
	var fcntlErr error
	err = withFd(f, func(n int) {
		fd = n
		flags, fcntlErr = unix.FcntlInt(uintptr(n), cmd, 0)
	})
	return fd, flags, errors.Join(err, fcntlErr)
}

// helperEnvReport reports its arguments and LISTEN_PID.
func helperEnvReport(w io.Writer) error {
	pid, ok := os.LookupEnv("LISTEN_PID")
	fmt.Fprintf(w, "args %q\nLISTEN_PID %q %t\nready\n", os.Args[1:], pid, ok)
	return nil
}

// servePID accepts one connection on each listener and writes this
// process' PID to it.
func servePID(lns []net.Listener) error {
	var wg sync.WaitGroup
	errs := make([]error, len(lns))
	for i, ln := range lns {
		wg.Go(func() {
			conn, err := ln.Accept()
			if err == nil {
				_, err = fmt.Fprintf(conn, "%d\n", os.Getpid())
				err = errors.Join(err, conn.Close())
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// testBinary returns the absolute path of this test binary.
func testBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// childEnv returns this process' environment without LISTEN_* variables,
// plus extra.
func childEnv(extra ...string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "LISTEN_") })
	return append(env, extra...)
}

// trampolineHelper starts this test binary as helper through a Launcher,
// with socks as fds 3.., and returns it with its stdout piped to the test.
func trampolineHelper(t *testing.T, helper string, socks []Socket, args ...string) *child {
	t.Helper()
	return launchChild(t, &Worker{
		Path: testBinary(t), Args: args, Sockets: socks,
		Env: childEnv(helperEnv + "=" + helper),
	})
}

// launchChild starts w with a new Launcher, its stdout and stderr piped to
// the returned child, and kills it if the test ends first.
func launchChild(t *testing.T, w *Worker) *child {
	t.Helper()
	l, err := NewLauncher()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW := pipe(t)
	errR, errW := pipe(t)
	w.Stdout, w.Stderr = outW, errW
	p, err := l.Start(w)
	outW.Close()
	errW.Close()
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	c := &child{pid: p.Pid, stdout: bufio.NewScanner(outR), errDone: make(chan struct{})}
	go func() { io.Copy(&c.stderr, errR); close(c.errDone) }()
	exited := make(chan struct{})
	c.wait = func() error {
		e, err := p.Wait()
		close(exited)
		<-c.errDone
		if err == nil && e.Status != 0 {
			err = errors.New(e.String())
		}
		return err
	}
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			p.Signal(unix.SIGKILL)
		}
		l.Close()
	})
	return c
}

// pipe returns both ends of a pipe, closed when the test ends.
func pipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

// child is a started helper process and its report.
type child struct {
	pid     int
	wait    func() error // waits for the process and its stderr
	stdout  *bufio.Scanner
	stderr  syncBuilder
	errDone chan struct{}
	report  []string // lines before "ready"
	err     string   // the "error: " line, if the helper failed
}

// syncBuilder is a strings.Builder that a copying goroutine may write while
// the test reads it.
type syncBuilder struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuilder) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuilder) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startChild reads the report of a child started by trampolineHelper.
func startChild(t *testing.T, c *child) *child {
	t.Helper()
	c.readReport(t)
	return c
}

// newChild starts cmd with its stdout piped to the returned child.
func newChild(t *testing.T, cmd *exec.Cmd) *child {
	t.Helper()
	c := &child{}
	cmd.Stderr = &c.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.pid, c.wait = cmd.Process.Pid, cmd.Wait
	c.stdout = bufio.NewScanner(out)
	return c
}

// readReport reads the child's report up to "ready", an error line or the
// end of its output, which fails t.
func (c *child) readReport(t *testing.T) {
	t.Helper()
	for c.stdout.Scan() {
		line := c.stdout.Text()
		if line == "ready" {
			return
		}
		if msg, ok := strings.CutPrefix(line, "error: "); ok {
			c.err = msg
			return
		}
		c.report = append(c.report, line)
	}
	err := c.wait()
	t.Fatalf("child ended before reporting (%v); stdout %q; stderr:\n%s", err, c.report, &c.stderr)
}

// mustSucceed fails t unless the child reported without error and exits 0.
func (c *child) mustSucceed(t *testing.T) {
	t.Helper()
	if c.err != "" {
		t.Fatalf("child failed: %s; stderr:\n%s", c.err, &c.stderr)
	}
	if err := c.wait(); err != nil {
		t.Fatalf("child: %v; stderr:\n%s", err, &c.stderr)
	}
}

// dialPID connects to a socket given as Socket.Addr and returns the PID
// the peer writes; to a datagram socket, it sends a datagram from a socket
// of its own and reads the answer.
func dialPID(t *testing.T, addr string) int {
	t.Helper()
	network, address := dialNetwork(addr)
	var conn net.Conn
	var err error
	if network == "unixgram" { // bound, so that the answer can come back
		local := &net.UnixAddr{Name: filepath.Join(t.TempDir(), "client.sock"), Net: "unixgram"}
		conn, err = net.DialUnix(network, local, &net.UnixAddr{Name: address, Net: network})
	} else {
		conn, err = net.DialTimeout(network, address, testTimeout)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if network == "udp" || network == "unixgram" {
		if _, err := conn.Write([]byte("pid?")); err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(testTimeout))
		buf := make([]byte, 64)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
		if err != nil {
			t.Fatalf("read PID: %v", err)
		}
		return pid
	}
	return readPID(t, conn)
}

// readPID reads a PID line from conn.
func readPID(t *testing.T, conn net.Conn) int {
	t.Helper()
	if err := conn.SetDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("read PID: %v", err)
	}
	return pid
}

// helperFds reports "fd N TARGET" for every descriptor it was started
// with, read before it opens anything of its own, then "env K=V" for each
// variable named in CORRAL_TEST_SHOW (comma-separated) that is set.
func helperFds(w io.Writer) error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own descriptor, closed by now
		}
		fmt.Fprintf(w, "fd %s %s\n", e.Name(), target)
	}
	for _, k := range strings.Split(os.Getenv("CORRAL_TEST_SHOW"), ",") {
		if v, ok := os.LookupEnv(k); ok {
			fmt.Fprintf(w, "env %s=%s\n", k, v)
		}
	}
	fmt.Fprintln(w, "ready")
	return nil
}

// helperHold reports "ready" and waits for SIGTERM.
func helperHold(w io.Writer) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM)
	fmt.Fprintln(w, "ready")
	<-sigs
	return nil
}

// helperDeathSignal reports "pdeathsig N", its parent-death signal, as its
// main thread has it (see init).
func helperDeathSignal(w io.Writer) error {
	var sig int
	if err := unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&sig)), 0, 0, 0); err != nil {
		return err
	}
	fmt.Fprintf(w, "pdeathsig %d\nready\n", sig)
	return nil
}
