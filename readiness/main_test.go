package readiness

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv selects the helper a re-run test binary acts as.
const helperEnv = "CORRAL_READINESS_TEST_HELPER"

// testTimeout bounds each wait for a child in these tests.
const testTimeout = 30 * time.Second

// helpers are the roles a child test binary can play, each with the
// listening socket as file descriptor 3. They run until killed; those that
// never serve print "holding" once they hold the socket.
var helpers = map[string]func() error{
	"serve":       helperServe,
	"accept":      helperAccept,
	"fork":        helperFork,
	"hold":        helperHold,
	"listen-only": helperListenOnly,
	"busy":        helperBusy,
}

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		h, ok := helpers[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
			os.Exit(2)
		}
		if err := h(); err != nil {
			fmt.Printf("error: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// helperServe serves HTTP on the inherited socket, as a Go app would.
func helperServe() error {
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return err
	}
	return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok")
	}))
}

// helperAccept answers every connection from a blocking accept(2) loop.
func helperAccept() error {
	for {
		nfd, _, err := syscall.Accept(3)
		if err != nil {
			return err
		}
		conn := os.NewFile(uintptr(nfd), "connection")
		var req []byte
		buf := make([]byte, 4096)
		for !bytes.Contains(req, []byte("\r\n\r\n")) {
			n, err := conn.Read(buf)
			if err != nil {
				break
			}
			req = append(req, buf[:n]...)
		}
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
		conn.Close()
	}
}

// helperFork holds the socket and has a child serve it, as a shell or a
// master process would.
func helperFork() error {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=serve")
	cmd.ExtraFiles = []*os.File{os.NewFile(3, "listener")}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	runtime.LockOSThread() // Pdeathsig fires when the forking thread exits
	return cmd.Run()
}

// helperHold holds the socket without ever polling it, as an app still
// loading its code does.
func helperHold() error {
	f := os.NewFile(3, "listener")
	fmt.Println("holding")
	io.Copy(io.Discard, os.Stdin) // until the test ends
	return f.Close()
}

// helperListenOnly creates a listener on the socket but never accepts.
func helperListenOnly() error {
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return err
	}
	fmt.Println("holding")
	io.Copy(io.Discard, os.Stdin)
	return ln.Close()
}

// helperBusy holds the socket, about 50 descriptors and 10 threads, the
// worker BenchmarkListening inspects.
func helperBusy() error {
	for i := 0; i < 45; i++ {
		if _, err := os.Open(os.DevNull); err != nil {
			return err
		}
	}
	r, _, err := os.Pipe()
	if err != nil {
		return err
	}
	var block [1]byte
	var locked sync.WaitGroup
	for i := 0; i < 6; i++ {
		locked.Add(1)
		go func() {
			runtime.LockOSThread()
			locked.Done()
			syscall.Read(int(r.Fd()), block[:]) // each blocks a thread
		}()
	}
	locked.Wait()
	fmt.Println("holding")
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// listener returns a new blocking TCP listening socket on 127.0.0.1, as
// corral hands them to workers, and its address.
func listener(t testing.TB) (*os.File, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // the File below keeps the socket open
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		t.Fatal(err)
	}
	return f, ln.Addr().String()
}

// sockets returns the Sockets of f.
func sockets(t testing.TB, f *os.File) Sockets {
	t.Helper()
	s, err := SocketsOf([]*os.File{f})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// child is a started process and its output.
type child struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser // a helper that holds waits on it
	done    chan struct{}  // closed when the process has exited
	changed chan struct{}  // signalled when output arrives
	mu      sync.Mutex
	out     strings.Builder
}

// startHelper starts this test binary as helper with f as descriptor 3.
func startHelper(t testing.TB, f *os.File, helper string) *child {
	t.Helper()
	return start(t, f, []string{helperEnv + "=" + helper}, os.Args[0])
}

// start runs argv with f as descriptor 3 and env added, in a process group
// of its own, which the test kills when it ends.
func start(t testing.TB, f *os.File, env []string, argv ...string) *child {
	t.Helper()
	return startFiles(t, []*os.File{f}, env, argv...)
}

// startFiles is start with files as descriptors 3, 4, ...
func startFiles(t testing.TB, files []*os.File, env []string, argv ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{}), changed: make(chan struct{}, 1)}
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.ExtraFiles = files
	c.cmd.Stdout, c.cmd.Stderr = c, c
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		c.stdin.Close()
		syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
		if t.Failed() {
			t.Logf("output of %s:\n%s", argv[0], c.output())
		}
	})
	return c
}

func (c *child) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out.Write(p)
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (c *child) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// waitLine waits until the child has printed line.
func (c *child) waitLine(t testing.TB, line string) {
	t.Helper()
	deadline := time.After(testTimeout)
	for !slices.Contains(strings.Split(c.output(), "\n"), line) {
		select {
		case <-c.changed:
		case <-c.done:
			t.Fatalf("exited before printing %q", line)
		case <-deadline:
			t.Fatalf("did not print %q within %v", line, testTimeout)
		}
	}
}
