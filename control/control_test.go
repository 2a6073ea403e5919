package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corraldev/corral/workers"
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
		r, err := call(context.Background(), path, strings.TrimSuffix(req, "\n"))
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

func TestNoServer(t *testing.T) {
	_, err := Reload(context.Background(), filepath.Join(t.TempDir(), "none.sock"))
	if err == nil || !strings.Contains(err.Error(), "no corral is running") {
		t.Fatalf("Reload with no server = %v", err)
	}
}
