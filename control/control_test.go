package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/corraldev/corral/workers"
	"golang.org/x/sys/unix"
)

// fakePool answers like a pool would; the control protocol is what is
// under test here (the pool is tested with real workers in package workers).
type fakePool struct{ reloads int }

func (f *fakePool) Reload(context.Context) workers.ReloadResult {
	f.reloads++
	return workers.ReloadResult{OK: true, Generation: 2, Message: "reload done"}
}

func (f *fakePool) Status(context.Context) (workers.Status, error) {
	return workers.Status{State: "running", Generation: 2, Workers: []workers.WorkerStatus{{Slot: 0, PID: 42}}}, nil
}

func serve(t *testing.T) (string, *fakePool) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "control.sock")
	s, err := Listen(path, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	pool := &fakePool{}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), pool) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path, pool
}

func TestReloadAndStatus(t *testing.T) {
	path, pool := serve(t)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	r, err := Reload(context.Background(), path)
	if err != nil || !r.OK || r.Generation != 2 || pool.reloads != 1 {
		t.Fatalf("Reload = %+v, %v", r, err)
	}
	st, err := Status(context.Background(), path)
	if err != nil || st.State != "running" || st.Workers[0].PID != 42 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
}

func TestBadRequests(t *testing.T) {
	path, pool := serve(t)
	for req, want := range map[string]string{
		"restart\n":                     `unknown request "restart"`,
		strings.Repeat("x", 300) + "\n": "at most 256 bytes",
	} {
		r, err := call(context.Background(), path, strings.TrimSuffix(req, "\n"), 0)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("request %.20q: %+v, %v; want %q", req, r, err, want)
		}
	}
	if pool.reloads != 0 {
		t.Errorf("a bad request reloaded")
	}
}

func TestSecondServerRefused(t *testing.T) {
	path, _ := serve(t)
	if _, err := Listen(path, t.Logf); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Listen = %v, want ErrRunning", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // leaves the file, as a corral that was SIGKILLed does
	s, err := Listen(path, t.Logf)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	s.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("Close left the socket file: %v", err)
	}
}

// A socket whose listener is alive but does not accept (its queue is full)
// is another corral's: Listen must neither remove nor replace it.
func TestBusySocketNotTakenOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	before, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Fill the listener's queue: with a backlog of 0 it holds one
	// connection, and a non-blocking connect then fails with EAGAIN.
	full := false
	for i := 0; i < 10 && !full; i++ {
		c, err := net.Dial("unix", path)
		if err == nil {
			defer c.Close()
			continue
		}
		if !errors.Is(err, syscall.EAGAIN) {
			t.Fatalf("dial %d: %v, want EAGAIN once the queue is full", i, err)
		}
		full = true
	}
	if !full {
		t.Fatal("the listener's queue never filled")
	}
	s, err := Listen(path, t.Logf)
	if err == nil {
		s.Close()
		t.Fatal("Listen took over a live socket whose queue was full")
	}
	if !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), "queue full") {
		t.Errorf("Listen over a busy socket = %v, want ErrRunning saying its queue is full", err)
	}
	if after, err := os.Lstat(path); err != nil || !os.SameFile(before, after) {
		t.Errorf("the busy socket's file was replaced or removed: %v", err)
	}
}

// A file that is not a socket is the user's: Listen refuses to replace it.
func TestNotASocketLeftAlone(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{name: "regular file", make: func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("keep me\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "empty directory", make: func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "symlink to a file", make: func(t *testing.T, path string) {
			target := path + ".target"
			if err := os.WriteFile(target, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "control.sock")
			tt.make(t, path)
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := Listen(path, t.Logf)
			if err == nil {
				s.Close()
				t.Fatalf("Listen replaced the %s", tt.name)
			}
			if !strings.Contains(err.Error(), "control socket "+path+": exists and is not a socket") {
				t.Errorf("Listen = %v, want it to say %s is not a socket", err, path)
			}
			if after, err := os.Lstat(path); err != nil || !os.SameFile(before, after) {
				t.Errorf("the %s was removed or replaced: %v", tt.name, err)
			}
		})
	}
}

func TestNoServer(t *testing.T) {
	_, err := Reload(context.Background(), filepath.Join(t.TempDir(), "none.sock"))
	if err == nil || !strings.Contains(err.Error(), "no corral is running") {
		t.Fatalf("Reload with no server = %v", err)
	}
}

// TestAnswerBeforeRequest: corral refuses another user's connection by
// answering and hanging up at once, which the client may only see after
// its request failed to send (broken pipe). The client reports corral's
// reason, not the broken pipe.
func TestAnswerBeforeRequest(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	server := os.NewFile(uintptr(fds[0]), "server")
	client, err := net.FileConn(os.NewFile(uintptr(fds[1]), "client"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := server.WriteString(`{"error":"uid 65534 may not use the control socket of uid 0"}` + "\n"); err != nil {
		t.Fatal(err)
	}
	server.Close()
	_, err = exchange(context.Background(), client, "/run/corral/api/control.sock", "reload")
	if err == nil || !strings.Contains(err.Error(), "uid 65534 may not use the control socket of uid 0") {
		t.Fatalf("exchange after corral answered and hung up: %v; want corral's reason", err)
	}
}

// TestReloadServedBy: with a PID, the reload is asked only of a socket that
// process listens on; another's gets no request at all.
func TestReloadServedBy(t *testing.T) {
	path, pool := serve(t)
	r, err := ReloadServedBy(context.Background(), path, os.Getpid())
	if err != nil || !r.OK || pool.reloads != 1 {
		t.Fatalf("ReloadServedBy(our own PID) = %+v, %v; %d reloads", r, err, pool.reloads)
	}
	other := os.Getppid()
	_, err = ReloadServedBy(context.Background(), path, other)
	want := fmt.Sprintf("served by PID %d (uid %d), not by the service's main process, PID %d ($MAINPID)", os.Getpid(), os.Getuid(), other)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
		t.Fatalf("ReloadServedBy(PID %d) = %v; want an error naming %s and %q", other, err, path, want)
	}
	// The server answers the next request; had the refused one been sent,
	// the pool would have counted it.
	if st, err := Status(context.Background(), path); err != nil || st.State != "running" || pool.reloads != 1 {
		t.Fatalf("after the refusal: status %+v, %v; %d reloads, want 1", st, err, pool.reloads)
	}
}
