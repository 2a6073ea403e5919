package httpworker_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/corraldev/corral/httpworker"
)

// The test binary doubles as the worker: TestMain runs the helper named by
// helperEnv instead of the tests.
const (
	helperEnv  = "HTTPWORKER_TEST_HELPER"
	graceEnv   = "HTTPWORKER_TEST_GRACE"      // Options.Grace for the "serve" helper
	releaseEnv = "HTTPWORKER_TEST_RELEASE_FD" // fd that /block reads one byte from
	deadline   = 10 * time.Second             // for any one event a test waits on
)

var helpers = map[string]func() error{
	"serve": serveHelper,
	"naive": naiveHelper,
}

func TestMain(m *testing.M) {
	name := os.Getenv(helperEnv)
	if name == "" {
		os.Exit(m.Run())
	}
	helper, ok := helpers[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
		os.Exit(2)
	}
	// corral's trampoline sets LISTEN_PID to the worker's own pid between
	// fork and exec; os/exec cannot, so the helper does it itself.
	os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	log.SetFlags(log.Lmicroseconds)
	if err := helper(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// serveHelper is a worker built on httpworker.Serve.
func serveHelper() error {
	grace, _ := time.ParseDuration(os.Getenv(graceEnv)) // zero: the default
	srv := &http.Server{Handler: testHandler()}
	return httpworker.Serve(context.Background(), srv, httpworker.Options{Grace: grace, Logf: log.Printf})
}

// naiveHelper is a worker that drains the usual, lossy way: SIGTERM, then
// Shutdown at once. It sends STOPPING=1 from an OnShutdown hook, which runs
// after Shutdown has marked the server as shutting down, so a request the
// test sends after STOPPING=1 always meets the naive drain.
func naiveHelper() error {
	lns, err := activation.Listeners()
	if err != nil || len(lns) != 1 || lns[0] == nil {
		return fmt.Errorf("want one inherited listener, got %v, %v", lns, err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	srv := &http.Server{Handler: testHandler()}
	stopping := make(chan struct{}) // closed once STOPPING=1 is sent
	srv.RegisterOnShutdown(func() {
		daemon.SdNotify(false, daemon.SdNotifyStopping)
		close(stopping)
	})
	go srv.Serve(lns[0]) // returns http.ErrServerClosed once Shutdown starts
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		return err
	}
	<-sigs
	err = srv.Shutdown(context.Background())
	<-stopping
	return err
}

// testHandler answers / with the worker's pid, after reading the request
// body. /block sends its headers, then waits for a byte on the fd named by
// releaseEnv before it sends "released".
func testHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, os.Getpid())
	})
	mux.HandleFunc("/block", func(w http.ResponseWriter, r *http.Request) {
		fd, err := strconv.Atoi(os.Getenv(releaseEnv))
		if err != nil {
			http.Error(w, "no "+releaseEnv, http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		release := os.NewFile(uintptr(fd), "release")
		defer release.Close()
		if _, err := release.Read(make([]byte, 1)); err != nil {
			log.Printf("block: %v", err)
			return
		}
		io.WriteString(w, "released")
	})
	return mux
}

// notifySocket is the test's stand-in for corral's notify socket: a real
// unixgram socket. Its reader goroutine closes ready on READY=1, stopping on
// STOPPING=1 and flushed on the test's own flushMsg, and exits when the
// test's cleanup closes the socket.
type notifySocket struct {
	path      string
	ready     chan struct{}
	stopping  chan struct{}
	flushed   chan struct{}
	flushOnce sync.Once
}

const flushMsg = "TEST_FLUSH=1"

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	ns := &notifySocket{
		path:     filepath.Join(t.TempDir(), "notify"),
		ready:    make(chan struct{}),
		stopping: make(chan struct{}),
		flushed:  make(chan struct{}),
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: ns.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			switch string(buf[:n]) {
			case "READY=1":
				closeOnce(ns.ready)
			case "STOPPING=1":
				closeOnce(ns.stopping)
			case flushMsg:
				closeOnce(ns.flushed)
			}
		}
	}()
	return ns
}

// flush returns once the reader goroutine has handled every datagram sent
// so far: datagrams arrive in order, so it sends one of its own and waits
// for it. After a worker has exited, that is every message it sent.
func (ns *notifySocket) flush(t *testing.T) {
	t.Helper()
	ns.flushOnce.Do(func() {
		c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: ns.path, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(flushMsg)); err != nil {
			t.Fatal(err)
		}
	})
	await(t, "the flush of the notify socket", ns.flushed, nil)
}

// closeOnce closes c unless it is closed. Only the reader goroutine calls it.
func closeOnce(c chan struct{}) {
	select {
	case <-c:
	default:
		close(c)
	}
}

// worker is a helper process started by startWorker.
type worker struct {
	*notifySocket
	cmd    *exec.Cmd
	stderr bytes.Buffer
	exited chan struct{} // closed once the process has exited; err then holds cmd.Wait's result
	err    error
}

// startWorker starts the helper as a socket-activated worker: files[0] is
// the listening socket (fd 3, LISTEN_FDS=1), further files follow it.
func startWorker(t *testing.T, helper string, files []*os.File, env ...string) *worker {
	t.Helper()
	w := &worker{notifySocket: newNotifySocket(t), exited: make(chan struct{})}
	w.cmd = exec.Command(os.Args[0], "-test.run=^$")
	w.cmd.Env = append(os.Environ(), helperEnv+"="+helper, "LISTEN_FDS=1", "LISTEN_FDNAMES=http",
		"NOTIFY_SOCKET="+w.path)
	// Under -race a process sleeps 1s before it exits, unless told not to.
	w.cmd.Env = append(w.cmd.Env, "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	w.cmd.Env = append(w.cmd.Env, env...)
	w.cmd.ExtraFiles = files
	w.cmd.Stderr = &w.stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		<-w.exited
		if t.Failed() {
			t.Logf("%s worker %d: %v; stderr:\n%s", helper, w.cmd.Process.Pid, w.err, &w.stderr)
		}
	})
	return w
}

// await waits for c to be closed, failing the test if w (when not nil)
// exits without closing it, or after the deadline.
func await(t *testing.T, what string, c <-chan struct{}, w *worker) {
	t.Helper()
	var exited <-chan struct{}
	if w != nil {
		exited = w.exited
	}
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	select {
	case <-c:
	case <-exited:
		w.flush(t) // c may wait on a message the worker sent before it exited
		select {
		case <-c:
		default:
			t.Fatalf("worker exited (%v) before %s; stderr:\n%s", w.err, what, &w.stderr)
		}
	case <-timer.C:
		t.Fatalf("no %s after %v", what, deadline)
	}
}

// listen opens the shared listening socket on a free loopback port and
// returns its address and a file to pass to workers, as corral's activation
// package does: the file comes from (*net.TCPListener).File, so os/exec's
// call to its Fd clears O_NONBLOCK on the shared socket each time a worker
// starts, under the feet of the workers already running.
func listen(t *testing.T) (string, *os.File) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // f keeps the socket open; the test itself never accepts
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return ln.Addr().String(), f
}
