package activation

import (
	"cmp"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpenEveryKind opens a socket of every network --listen takes and
// checks what a worker would get: the name, blocking mode, the socket type,
// the address in --listen's form, and a socket that takes connections or
// datagrams while nobody serves it.
func TestOpenEveryKind(t *testing.T) {
	dir := t.TempDir()
	specs := []ListenSpec{
		{Name: "http", Network: "tcp", Address: "127.0.0.1:0"},
		{Name: "admin", Network: "unix", Address: filepath.Join(dir, "admin.sock")},
		{Network: "tcp", Address: "127.0.0.1:0"},
		{Name: "dns", Network: "udp", Address: "127.0.0.1:0"},
		{Name: "dns6", Network: "udp", Address: "[::1]:0"},
		{Name: "log", Network: "unixgram", Address: filepath.Join(dir, "log.sock")},
		{Name: "seq", Network: "unixpacket", Address: filepath.Join(dir, "seq.sock")},
	}
	if !hasIPv6Loopback() {
		specs = slices.DeleteFunc(specs, func(s ListenSpec) bool { return s.Name == "dns6" })
	}
	socks, err := Open(specs, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer Close(socks)
	for i, spec := range specs {
		s := socks[i]
		if want := cmp.Or(spec.Name, "unknown"); s.Name != want {
			t.Errorf("%s: Name = %q, want %q", spec.display(), s.Name, want)
		}
		_, flags, err := fdFlags(s.File, unix.F_GETFL)
		if err != nil || flags&unix.O_NONBLOCK != 0 {
			t.Errorf("%s: flags %#x, %v; want no O_NONBLOCK", spec.display(), flags, err)
		}
		typ, listening := socketType(t, s.File)
		wantType := map[string]int{"tcp": unix.SOCK_STREAM, "unix": unix.SOCK_STREAM, "udp": unix.SOCK_DGRAM,
			"unixgram": unix.SOCK_DGRAM, "unixpacket": unix.SOCK_SEQPACKET}[spec.Network]
		if typ != wantType || listening == spec.isDatagram() {
			t.Errorf("%s: socket type %d, listening %t; want type %d, listening %t", spec.display(), typ, listening, wantType, !spec.isDatagram())
		}
		want := spec.display()
		if strings.HasSuffix(want, ":0") {
			want = strings.TrimSuffix(want, "0")
		}
		if !strings.HasPrefix(s.Addr, want) || strings.HasSuffix(s.Addr, ":0") {
			t.Errorf("%s: Addr = %q, want %s with the port the kernel chose", spec.display(), s.Addr, want)
		}
		// Nobody accepts or reads, but a stream socket completes the
		// handshake and a datagram socket takes a datagram.
		network, address := dialNetwork(s.Addr)
		conn, err := net.Dial(network, address)
		if err == nil && spec.isDatagram() {
			_, err = conn.Write([]byte("hello"))
		}
		if err != nil {
			t.Fatalf("%s: %v", s.Addr, err)
		}
		conn.Close()
	}
	if err := Close(socks); err != nil {
		t.Fatal(err)
	}
	for _, spec := range specs {
		if !spec.isUnix() {
			continue
		}
		if _, err := os.Lstat(spec.Address); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after Close, %s: %v; want it removed", spec.Address, err)
		}
	}
}

// socketType returns f's SO_TYPE and whether it is listening.
func socketType(t *testing.T, f *os.File) (typ int, listening bool) {
	t.Helper()
	var err error
	var acc int
	if cerr := withFd(f, func(fd int) {
		if typ, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err == nil {
			acc, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		}
	}); cerr != nil || err != nil {
		t.Fatalf("socket type: %v %v", cerr, err)
	}
	return typ, acc == 1
}

// hasIPv6Loopback reports whether ::1 can be bound here.
func hasIPv6Loopback() bool {
	c, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func TestOpenAddressInUse(t *testing.T) {
	first := mustOpen(t, ListenSpec{Network: "tcp", Address: "127.0.0.1:0"})
	_, port, _ := net.SplitHostPort(first[0].Addr)
	_, err := Open([]ListenSpec{{Network: "tcp", Address: first[0].Addr}}, OpenOptions{})
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
	_, err = Open([]ListenSpec{{Network: "unix", Address: path}}, OpenOptions{})
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
	_, err := Open([]ListenSpec{{Network: "unix", Address: path}}, OpenOptions{})
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
	}, OpenOptions{})
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
	socks, err := Open([]ListenSpec{{Network: "unix", Address: replaced}}, OpenOptions{})
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
	return mustOpenWith(t, OpenOptions{}, specs...)
}

// dialNetwork returns the network and address to dial a Socket.Addr.
func dialNetwork(addr string) (network, address string) {
	network, address = splitNetwork(addr)
	return network, address
}

func countFds(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func TestOpenUDPInUse(t *testing.T) {
	first := mustOpen(t, ListenSpec{Network: "udp", Address: "127.0.0.1:0"})
	addr := strings.TrimPrefix(first[0].Addr, "udp:")
	_, port, _ := net.SplitHostPort(addr)
	_, err := Open([]ListenSpec{{Network: "udp", Address: addr}}, OpenOptions{})
	want := "listen udp:" + addr + ": address already in use: another process is bound there (find it with: ss -lunp 'sport = :" + port + "')"
	if !errors.Is(err, syscall.EADDRINUSE) || err.Error() != want {
		t.Fatalf("second Open: %v\nwant %s", err, want)
	}
}

// TestOpenUnixgramStaleAndLive: a unix datagram socket file that nobody has
// bound is replaced; one that a process has bound, as a datagram or a
// stream socket, is not.
func TestOpenUnixgramStaleAndLive(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: stale, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close() // a UnixConn leaves its file behind, as a crashed process does
	socks := mustOpen(t, ListenSpec{Network: "unixgram", Address: stale})
	if socks[0].Addr != "unixgram:"+stale {
		t.Errorf("Addr = %q", socks[0].Addr)
	}

	for _, network := range []string{"unixgram", "unix"} {
		live := filepath.Join(dir, network+"-live.sock")
		var closer io.Closer
		if network == "unix" {
			closer, err = net.Listen(network, live)
		} else {
			closer, err = net.ListenUnixgram(network, &net.UnixAddr{Name: live, Net: network})
		}
		if err != nil {
			t.Fatal(err)
		}
		defer closer.Close()
		_, err = Open([]ListenSpec{{Network: "unixgram", Address: live}}, OpenOptions{})
		if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "ss -lxp 'src "+live+"'") {
			t.Errorf("Open over a live %s socket: %v; want EADDRINUSE with an ss hint", network, err)
		}
		if _, err := os.Lstat(live); err != nil {
			t.Errorf("the live %s socket's file is gone: %v", network, err)
		}
	}
}

// TestOpenReceiveBuffer: receive_buffer sets the UDP sockets' SO_RCVBUF,
// past net.core.rmem_max when corral runs as root (SO_RCVBUFFORCE), and
// leaves the other sockets alone.
func TestOpenReceiveBuffer(t *testing.T) {
	const want = 4 << 20
	socks := mustOpenWith(t, OpenOptions{ReceiveBuffer: want},
		ListenSpec{Network: "udp", Address: "127.0.0.1:0"},
		ListenSpec{Network: "tcp", Address: "127.0.0.1:0"},
	)
	defaults := mustOpen(t, ListenSpec{Network: "udp", Address: "127.0.0.1:0"}, ListenSpec{Network: "tcp", Address: "127.0.0.1:0"})
	got := make([]int, 4)
	for i, s := range append(slices.Clone(socks), defaults...) {
		n, err := s.ReceiveBuffer()
		if err != nil {
			t.Fatal(err)
		}
		got[i] = n
	}
	rmemMax := readSysctl(t, "net/core/rmem_max")
	switch {
	case os.Geteuid() == 0 && got[0] != 2*want:
		t.Errorf("UDP receive buffer %d as root, want %d (twice %d, as the kernel reports it)", got[0], 2*want, want)
	case os.Geteuid() != 0 && got[0] != 2*min(want, rmemMax):
		t.Errorf("UDP receive buffer %d, want %d (twice min(%d, rmem_max %d))", got[0], 2*min(want, rmemMax), want, rmemMax)
	}
	if got[1] != got[3] {
		t.Errorf("TCP receive buffer %d with receive_buffer set, %d without: want it left alone", got[1], got[3])
	}
	if got[2] == got[0] {
		t.Errorf("UDP receive buffer %d without receive_buffer, the same as with it", got[2])
	}
	t.Logf("SO_RCVBUF: %d with ReceiveBuffer %d, %d by default (rmem_max %d)", got[0], want, got[2], rmemMax)
}

func mustOpenWith(t *testing.T, opts OpenOptions, specs ...ListenSpec) []Socket {
	t.Helper()
	socks, err := Open(specs, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Close(socks) })
	return socks
}

// readSysctl returns the number in /proc/sys/NAME.
func readSysctl(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
