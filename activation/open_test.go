package activation

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestOpenTCPAndUnix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	socks, err := Open([]ListenSpec{
		{Name: "http", Network: "tcp", Address: "127.0.0.1:0"},
		{Name: "admin", Network: "unix", Address: path},
		{Network: "tcp", Address: "127.0.0.1:0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer Close(socks)
	for i, want := range []string{"http", "admin", "unknown"} {
		if socks[i].Name != want {
			t.Errorf("socks[%d].Name = %q, want %q", i, socks[i].Name, want)
		}
		_, flags, err := fdFlags(socks[i].File, unix.F_GETFL)
		if err != nil || flags&unix.O_NONBLOCK != 0 {
			t.Errorf("socks[%d] flags %#x, %v; want no O_NONBLOCK", i, flags, err)
		}
		// Nobody accepts, but a listening socket completes the handshake.
		network, address := dialNetwork(socks[i].Addr)
		conn, err := net.Dial(network, address)
		if err != nil {
			t.Fatalf("dial %s: %v", socks[i].Addr, err)
		}
		conn.Close()
	}
	if a := socks[0].Addr; !strings.HasPrefix(a, "127.0.0.1:") || a == "127.0.0.1:0" {
		t.Errorf("tcp Addr = %q, want 127.0.0.1:<chosen port>", a)
	}
	if want := "unix:" + path; socks[1].Addr != want {
		t.Errorf("unix Addr = %q, want %q", socks[1].Addr, want)
	}
	if err := Close(socks); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Close, %s: %v; want it removed", path, err)
	}
}

func TestOpenAddressInUse(t *testing.T) {
	first := mustOpen(t, ListenSpec{Network: "tcp", Address: "127.0.0.1:0"})
	_, port, _ := net.SplitHostPort(first[0].Addr)
	_, err := Open([]ListenSpec{{Network: "tcp", Address: first[0].Addr}})
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("second Open: %v; want EADDRINUSE", err)
	}
	want := "listen " + first[0].Addr + ": address already in use: another process is listening there (find it with: ss -ltnp 'sport = :" + port + "')"
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
}

func TestOpenUnixStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // the file stays and refuses connections, as after a crash
	socks := mustOpen(t, ListenSpec{Network: "unix", Address: path})
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial over replaced stale socket: %v", err)
	}
	conn.Close()
	if socks[0].Addr != "unix:"+path {
		t.Errorf("Addr = %q", socks[0].Addr)
	}
}

func TestOpenUnixLiveSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Open([]ListenSpec{{Network: "unix", Address: path}})
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "ss -lxp 'src "+path+"'") {
		t.Fatalf("Open over a live socket: %v; want EADDRINUSE with an ss hint", err)
	}
	if conn, err := net.Dial("unix", path); err != nil {
		t.Errorf("the live socket no longer answers: %v", err)
	} else {
		conn.Close()
	}
}

func TestOpenUnixNotASocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "file")
	mustWrite(t, path, 0o644)
	_, err := Open([]ListenSpec{{Network: "unix", Address: path}})
	if err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Fatalf("Open over a regular file: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the regular file is gone: %v", err)
	}
}

func TestOpenPartialFailureClosesAll(t *testing.T) {
	// Warm up: the first listen may open descriptors the runtime keeps
	// (the netpoller's epoll and event fds).
	Close(mustOpen(t, ListenSpec{Network: "tcp", Address: "127.0.0.1:0"}))
	busy := mustOpen(t, ListenSpec{Network: "tcp", Address: "127.0.0.1:0"})
	path := filepath.Join(t.TempDir(), "b.sock")
	before := countFds(t)
	_, err := Open([]ListenSpec{
		{Network: "tcp", Address: "127.0.0.1:0"},
		{Network: "unix", Address: path},
		{Network: "tcp", Address: busy[0].Addr},
	})
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Open: %v; want EADDRINUSE", err)
	}
	if after := countFds(t); after != before {
		t.Errorf("%d open descriptors before Open, %d after", before, after)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s left behind: %v", path, err)
	}
}

func TestCloseLeavesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	// A socket Open did not create, as Inherited returns it.
	inherited := filepath.Join(dir, "inherited.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: inherited, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	f, err := ln.File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	// A socket file replaced after Open created it.
	replaced := filepath.Join(dir, "replaced.sock")
	socks, err := Open([]ListenSpec{{Network: "unix", Address: replaced}})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(replaced)
	mustWrite(t, replaced, 0o644)

	if err := Close(append(socks, Socket{Name: "inherited", File: f})); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{inherited, replaced} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("Close removed %s: %v", p, err)
		}
	}
}

func TestListenErrorHints(t *testing.T) {
	bind := func(errno syscall.Errno) error {
		return &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", errno)}
	}
	tests := []struct {
		spec   ListenSpec
		err    error
		wantIs error
		want   string
	}{
		{ListenSpec{Network: "tcp", Address: ":80"}, bind(syscall.EACCES), syscall.EACCES,
			"listen :80: permission denied: ports below 1024 need root or CAP_NET_BIND_SERVICE"},
		{ListenSpec{Network: "tcp", Address: ":8080"}, bind(syscall.EACCES), syscall.EACCES,
			"listen :8080: listen tcp: bind: permission denied"},
		{ListenSpec{Network: "unix", Address: "/run/x/a.sock"}, bind(syscall.EACCES), syscall.EACCES,
			"listen unix:/run/x/a.sock: permission denied: cannot create a socket in /run/x"},
		{ListenSpec{Network: "unix", Address: "/run/x/a.sock"}, bind(syscall.ENOENT), syscall.ENOENT,
			"listen unix:/run/x/a.sock: no such file or directory: create directory /run/x first"},
		{ListenSpec{Network: "tcp", Address: "10.9.9.9:80"}, bind(syscall.EADDRNOTAVAIL), syscall.EADDRNOTAVAIL,
			"listen 10.9.9.9:80: cannot assign requested address: no local interface has that address"},
		{ListenSpec{Network: "tcp", Address: "nosuch:80"}, &net.OpError{Op: "listen", Err: &net.DNSError{Err: "no such host", Name: "nosuch", IsNotFound: true}}, nil,
			"listen nosuch:80: unknown host: lookup nosuch: no such host; check the name or use an IP address"},
	}
	for _, tt := range tests {
		err := listenError(tt.spec, tt.err)
		if !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("listenError(%v, %v) = %q; want prefix %q", tt.spec, tt.err, err, tt.want)
		}
		if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
			t.Errorf("listenError(%v, %v) is not %v", tt.spec, tt.err, tt.wantIs)
		}
	}
}

func mustOpen(t *testing.T, specs ...ListenSpec) []Socket {
	t.Helper()
	socks, err := Open(specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Close(socks) })
	return socks
}

// dialNetwork returns the network and address to dial a Socket.Addr.
func dialNetwork(addr string) (network, address string) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		return "unix", path
	}
	return "tcp", addr
}

func countFds(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
