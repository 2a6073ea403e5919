package workers

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/activation"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/notify"
)

// harness runs a Pool of test workers on a real TCP listener, with a fake
// systemd (a real unixgram socket) as NOTIFY_SOCKET.
type harness struct {
	t    testing.TB
	pool *Pool
	addr string
	sys  *fakeSystemd
	log  *testenv.Buffer
	done chan struct{} // closed when Run has returned runErr
	err  error
	stop context.CancelFunc
}

type harnessOpt func(*Options)

// testSpec runs the test binary as the helper worker kind.
func testSpec(t testing.TB, kind string, n int, env ...string) Spec {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Spec{
		Path:          exe,
		Env:           append(append(os.Environ(), "CORRAL_TEST_WORKER="+kind), env...),
		Instances:     n,
		Ready:         ReadyNotify,
		ReadyTimeout:  20 * time.Second,
		StopTimeout:   10 * time.Second,
		StopSignal:    syscall.SIGTERM,
		MaxSurge:      1,
		ReloadFailure: KeepOld,
	}
}

func startPool(t testing.TB, spec Spec, opts ...harnessOpt) *harness {
	t.Helper()
	sys := newFakeSystemd(t)
	dir := t.TempDir()
	ls, err := activation.ParseListen("web=127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	socks, err := activation.Open([]activation.ListenSpec{ls}, activation.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { activation.Close(socks) })
	ns, err := notify.Listen(filepath.Join(dir, "notify.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	log := &testenv.Buffer{}
	o := Options{Spec: spec, Sockets: socks, Notify: ns, Up: notify.NewUpstream(),
		Logf: log.Logf, Warnf: log.Logf}
	for _, f := range opts {
		f(&o)
	}
	pool, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, pool: pool, addr: strings.TrimPrefix(socks[0].Addr, "tcp:"), sys: sys,
		log: log, done: make(chan struct{}), stop: cancel}
	go func() {
		h.err = pool.Run(ctx)
		close(h.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(30 * time.Second):
			t.Errorf("pool did not stop within 30s; log:\n%s", log)
		}
		if t.Failed() {
			t.Logf("corral log:\n%s", log)
		}
	})
	return h
}

// shutdown stops the pool and returns Run's error.
func (h *harness) shutdown() error {
	h.stop()
	return h.wait()
}

// wait waits for Run to return and returns its error.
func (h *harness) wait() error {
	select {
	case <-h.done:
		return h.err
	case <-time.After(30 * time.Second):
		h.t.Fatalf("pool did not stop within 30s")
		return nil
	}
}

// waitFor polls the pool's status until ok accepts it, failing the test at
// the deadline. Polling the owner goroutine is waiting on its state, with a
// bound; nothing sleeps.
func (h *harness) waitFor(what string, ok func(Status) bool) Status {
	h.t.Helper()
	var st Status
	done := false
	defer func() {
		if !done {
			h.t.Logf("last status %+v", st)
		}
	}()
	testenv.WaitFor(h.t, 30*time.Second, what, func() bool {
		var err error
		st, err = h.pool.Status(context.Background())
		return err == nil && ok(st)
	})
	done = true
	return st
}

func (h *harness) waitOnline(n int) Status {
	h.t.Helper()
	return h.waitFor(fmt.Sprintf("%d workers online", n), func(st Status) bool {
		return st.Online == n && st.State == "running"
	})
}

// get fetches / on a new connection and returns the body.
func (h *harness) get() (string, error) {
	c := http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + h.addr + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// settle waits until exactly n workers run, all online: no candidate left
// and no old worker still draining.
func (h *harness) settle(n int) Status {
	h.t.Helper()
	return h.waitFor(fmt.Sprintf("exactly %d workers, all online", n), func(st Status) bool {
		return st.Online == n && len(st.Workers) == n && st.State == "running"
	})
}

func pids(st Status) map[int]bool {
	m := map[int]bool{}
	for _, w := range st.Workers {
		m[w.PID] = true
	}
	return m
}

// fakeSystemd is a unixgram socket standing in for systemd's notify socket.
type fakeSystemd struct {
	conn *net.UnixConn
	mu   sync.Mutex
	msgs []string
	cond chan struct{} // closed and replaced at each message
}

func newFakeSystemd(t testing.TB) *fakeSystemd {
	path := filepath.Join(t.TempDir(), "systemd-notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "")
	f := &fakeSystemd{conn: conn, cond: make(chan struct{})}
	go f.read()
	t.Cleanup(func() { conn.Close() })
	return f
}

func (f *fakeSystemd) read() {
	buf := make([]byte, 8192)
	for {
		n, err := f.conn.Read(buf)
		if err != nil {
			return
		}
		f.mu.Lock()
		f.msgs = append(f.msgs, string(buf[:n]))
		close(f.cond)
		f.cond = make(chan struct{})
		f.mu.Unlock()
	}
}

// all returns every datagram so far.
func (f *fakeSystemd) all() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.msgs...)
}

// waitFor waits until some datagram after the first skip contains substr,
// and returns its index.
func (f *fakeSystemd) waitFor(t testing.TB, skip int, substr string) int {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		f.mu.Lock()
		for i := skip; i < len(f.msgs); i++ {
			if strings.Contains(f.msgs[i], substr) {
				f.mu.Unlock()
				return i
			}
		}
		c := f.cond
		f.mu.Unlock()
		select {
		case <-c:
		case <-timeout:
			t.Fatalf("fake systemd: no %q within 30s; got %q", substr, f.all())
		}
	}
}
