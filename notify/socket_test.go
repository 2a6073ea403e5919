package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corraldev/corral/internal/testenv"
)

// wait bounds every wait for an event in these tests.
const wait = 10 * time.Second

// listen creates a Socket in a fresh temporary directory, closed at cleanup.
func listen(t *testing.T) *Socket {
	t.Helper()
	s, err := Listen(filepath.Join(t.TempDir(), "notify.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// serve runs s.Serve until the test ends, then checks that it returned nil.
func serve(t *testing.T, s *Socket) <-chan Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan Message)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ch) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
	})
	return ch
}

// dial returns a worker's end: a unixgram socket connected to path.
func dial(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c *net.UnixConn, payload string) {
	t.Helper()
	if _, err := c.Write([]byte(payload)); err != nil {
		t.Fatalf("send %q: %v", payload, err)
	}
}

// receive returns the next message delivered on ch.
func receive(t *testing.T, ch <-chan Message) Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(wait):
		t.Fatalf("no message within %v", wait)
		return Message{}
	}
}

func TestSocketDeliversWithCredentials(t *testing.T) {
	s := listen(t)
	ch := serve(t, s)
	c := dial(t, s.Path())
	send(t, c, "READY=1\nSTATUS=up")
	m := receive(t, ch)
	want := Message{PID: os.Getpid(), UID: os.Getuid(), GID: os.Getgid(), Ready: true, Status: "up", HasStatus: true,
		Ancestors: ancestors(os.Getpid())}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got %+v, want %+v", m, want)
	}
	if len(m.Ancestors) == 0 || m.Ancestors[0] != os.Getppid() {
		t.Errorf("ancestors %v do not start with the parent %d", m.Ancestors, os.Getppid())
	}
	send(t, c, "X_FOO=1")
	if m := receive(t, ch); !reflect.DeepEqual(m, Message{PID: os.Getpid(), UID: os.Getuid(), GID: os.Getgid(), Ancestors: ancestors(os.Getpid())}) {
		t.Errorf("unknown key only: got %+v, want credentials only", m)
	}
	if n := s.Dropped(); n != 0 {
		t.Errorf("Dropped = %d, want 0", n)
	}
}

func TestSocketDropsInvalid(t *testing.T) {
	s := listen(t)
	var rec testenv.Buffer
	s.SetLogf(rec.Logf)
	s.log.now = func() time.Time { return time.Unix(1000, 0) } // one instant: one log line
	ch := serve(t, s)
	c := dial(t, s.Path())
	garbage := []string{
		"hello",
		"ready=1",
		"READY=1\x00",
		"STATUS=\xff",
		"STATUS=" + strings.Repeat("x", maxPayload-6), // 4097 bytes
		strings.Repeat("y", 3*maxPayload),
	}
	for _, g := range garbage {
		send(t, c, g)
	}
	full := "STATUS=" + strings.Repeat("x", maxPayload-7) // 4096 bytes: the largest valid
	send(t, c, full)
	send(t, c, "STATUS=sentinel")
	if m := receive(t, ch); m.Status != full[len("STATUS="):] {
		t.Fatalf("first delivered: status of %d bytes, want the 4096-byte datagram", len(m.Status))
	}
	if m := receive(t, ch); m.Status != "sentinel" {
		t.Fatalf("second delivered: %+v, want the sentinel", m)
	}
	if n := s.Dropped(); n != uint64(len(garbage)) {
		t.Errorf("Dropped = %d, want %d", n, len(garbage))
	}
	lines := rec.Lines()
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "notify socket: dropped") || !strings.Contains(lines[0], fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("log = %q, want one notify socket: dropped line naming pid %d", lines, os.Getpid())
	}
}

func TestSocketDropsPassedFDs(t *testing.T) {
	for _, nfds := range []int{1, maxFDs + 4} {
		t.Run(fmt.Sprintf("%d fds", nfds), func(t *testing.T) {
			s := listen(t)
			ch := serve(t, s)
			c := dial(t, s.Path())
			before := openFDs(t)
			sendFDs(t, c, "READY=1", nfds)
			send(t, c, "STATUS=sentinel")
			if m := receive(t, ch); m.Status != "sentinel" {
				t.Fatalf("delivered %+v, want only the sentinel", m)
			}
			if n := s.Dropped(); n != 1 {
				t.Errorf("Dropped = %d, want 1", n)
			}
			if after := openFDs(t); after != before {
				t.Errorf("open fds: %d before, %d after: a passed fd leaked", before, after)
			}
		})
	}
}

// sendFDs sends payload with n copies of a pipe's read end, then closes the
// pipe, so that only the receiver can hold the copies open.
func sendFDs(t *testing.T, c *net.UnixConn, payload string, n int) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	fds := make([]int, n)
	for i := range fds {
		fds[i] = int(r.Fd())
	}
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	err = raw.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), []byte(payload), unix.UnixRights(fds...), nil, 0)
		return serr != unix.EAGAIN
	})
	if err = errors.Join(err, serr); err != nil {
		t.Fatalf("send with %d fds: %v", n, err)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestDropLogRateLimit(t *testing.T) {
	var rec testenv.Buffer
	now := time.Unix(1000, 0)
	l := dropLog{logf: rec.Logf, now: func() time.Time { return now }}
	for _, step := range []time.Duration{0, 100 * time.Millisecond, 800 * time.Millisecond, 200 * time.Millisecond} {
		now = now.Add(step)
		l.report(42, errNUL)
	}
	lines := rec.Lines()
	if len(lines) != 2 {
		t.Fatalf("log = %q, want 2 lines (at 0s and 1.1s)", lines)
	}
	if !strings.Contains(lines[0], "pid 42") || !strings.Contains(lines[0], errNUL.Error()) {
		t.Errorf("line %q does not name the sender and reason", lines[0])
	}
	if !strings.Contains(lines[1], "2 more dropped") {
		t.Errorf("line %q does not count the 2 unlogged drops", lines[1])
	}
}

func TestServeReturnsNilOnClose(t *testing.T) {
	s := listen(t)
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), make(chan Message)) }()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
	case <-time.After(wait):
		t.Fatal("Serve did not return after Close")
	}
}

func TestServeReturnsNilOnCancelWhileSending(t *testing.T) {
	s := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, make(chan Message)) }() // nobody receives
	send(t, dial(t, s.Path()), "READY=1")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil", err)
		}
	case <-time.After(wait):
		t.Fatal("Serve did not return after cancel")
	}
}

func TestServeAgainAfterCancel(t *testing.T) {
	s := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Serve(ctx, make(chan Message)); err != nil {
		t.Fatalf("Serve with a done context = %v, want nil", err)
	}
	ch := serve(t, s)
	send(t, dial(t, s.Path()), "READY=1")
	if m := receive(t, ch); !m.Ready {
		t.Errorf("got %+v, want Ready", m)
	}
}

// systemd-notify follows each message with sd_notify_barrier(3): BARRIER=1
// and the write end of a pipe, which the receiver closes to answer.
func TestBarrierIsAnsweredNotDropped(t *testing.T) {
	s := listen(t)
	ch := serve(t, s)
	c := dial(t, s.Path())
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	raw.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), []byte("BARRIER=1"), unix.UnixRights(int(w.Fd())), nil, 0)
		return serr != unix.EAGAIN
	})
	if serr != nil {
		t.Fatal(serr)
	}
	w.Close()
	r.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("barrier not answered: read %d, %v", n, err)
	}
	send(t, c, "READY=1")
	if m := receive(t, ch); !m.Ready {
		t.Fatalf("got %+v after the barrier", m)
	}
	if d := s.Dropped(); d != 0 {
		t.Errorf("barrier counted as dropped (%d)", d)
	}
}
