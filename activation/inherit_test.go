package activation

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/corraldev/corral/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestInheritedNotActivated(t *testing.T) {
	t.Setenv("LISTEN_FDS", "1")
	t.Setenv("LISTEN_FDNAMES", "web")
	t.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()+1)) // meant for another process
	socks, err := Inherited()
	if socks != nil || err != nil {
		t.Fatalf("Inherited() = %v, %v; want nil, nil", socks, err)
	}
	os.Unsetenv("LISTEN_FDS")
	if socks, err := Inherited(); socks != nil || err != nil {
		t.Fatalf("Inherited() without LISTEN_FDS = %v, %v; want nil, nil", socks, err)
	}
}

// TestInherited plays systemd: the trampoline sets LISTEN_PID for the child,
// which calls Inherited. It gets one socket of every kind a socket unit with
// Accept=no passes: ListenStream= (TCP, unix), ListenDatagram= (UDP, unix
// datagram) and ListenSequentialPacket=.
func TestInherited(t *testing.T) {
	dir := t.TempDir()
	socks := mustOpen(t,
		ListenSpec{Name: "web", Network: "tcp", Address: "127.0.0.1:0"},
		ListenSpec{Network: "unix", Address: filepath.Join(dir, "admin.sock")},
		ListenSpec{Name: "dns", Network: "udp", Address: "127.0.0.1:0"},
		ListenSpec{Name: "log", Network: "unixgram", Address: filepath.Join(dir, "log.sock")},
		ListenSpec{Name: "seq", Network: "unixpacket", Address: filepath.Join(dir, "seq.sock")},
	)
	c := startChild(t, trampolineHelper(t, "inherited", socks))
	if c.err != "" {
		t.Fatalf("child: %s; stderr:\n%s", c.err, &c.stderr)
	}
	var want []string // no "env" lines: Inherited unsets LISTEN_*
	for _, s := range socks {
		want = append(want, "socket "+s.Name+" "+s.Addr+" cloexec=true")
	}
	if !slices.Equal(c.report, want) {
		t.Errorf("child reported %q, want %q", c.report, want)
	}
	for _, s := range socks {
		if pid := dialPID(t, s.Addr); pid != c.pid {
			t.Errorf("%s answered from PID %d, want %d", s.Name, pid, c.pid)
		}
	}
	c.mustSucceed(t)
}

// TestInheritedRefusesKinds passes Inherited each kind of descriptor a
// socket unit can pass that corral refuses, and checks that the error names
// the unit's setting and the fix.
func TestInheritedRefusesKinds(t *testing.T) {
	pipeR, pipeW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pipeR.Close()
	defer pipeW.Close()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	regular, err := os.Create(filepath.Join(t.TempDir(), "file"))
	if err != nil {
		t.Fatal(err)
	}
	defer regular.Close()

	tests := []struct {
		name    string
		file    *os.File
		setting string
		want    string
	}{
		{"connection", connectedSocket(t), "Accept=yes", "inherited fd 3 (connection) is a connection, not a listening socket (Accept=yes in the socket unit): with Accept=yes systemd accepts each connection and starts a service for it; corral's workers accept the connections themselves: set Accept=no (the default)"},
		{"seqpacket-connection", connectedSeqpacket(t), "Accept=yes", "is a connection, not a listening socket (Accept=yes in the socket unit)"},
		{"fifo", pipeR, "ListenFIFO=", "inherited fd 3 (fifo) is a FIFO (ListenFIFO= in the socket unit): corral hands its workers sockets to serve on: use ListenStream=, ListenDatagram= or ListenSequentialPacket= instead"},
		{"device", devNull, "ListenSpecial=", "is a special file, not a socket (ListenSpecial= in the socket unit)"},
		{"file", regular, "ListenSpecial=", "is a special file, not a socket (ListenSpecial= in the socket unit)"},
		{"netlink", netlinkSocket(t), "ListenNetlink=", "is a netlink socket (ListenNetlink= in the socket unit)"},
		{"mqueue", messageQueue(t), "ListenMessageQueue=", "is a POSIX message queue (ListenMessageQueue= in the socket unit)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := mustOpen(t, ListenSpec{Network: "udp", Address: "127.0.0.1:0"})
			c := startChild(t, trampolineHelper(t, "inherited", []Socket{good[0], {Name: tt.name, File: tt.file}}))
			want := strings.Replace(tt.want, "fd 3", "fd 4", 1)
			if !strings.Contains(c.err, want) || !strings.Contains(c.err, tt.setting) {
				t.Errorf("child error %q, want %q", c.err, want)
			}
			if err := c.wait(); err == nil || err.Error() != "exited with status 1" {
				t.Errorf("child exit: %v, want status 1", err)
			}
		})
	}
}

// TestKindCheck covers what no test can create: a USB FunctionFS endpoint.
func TestKindCheck(t *testing.T) {
	for _, tt := range []struct {
		f       fdFacts
		setting string // "" for accepted
	}{
		{fdFacts{mode: unix.S_IFREG, fsType: functionfsMagic}, "ListenUSBFunction="},
		{fdFacts{mode: unix.S_IFREG, fsType: mqueueMagic}, "ListenMessageQueue="},
		{fdFacts{mode: unix.S_IFCHR}, "ListenSpecial="},
		{fdFacts{mode: unix.S_IFIFO}, "ListenFIFO="},
		{fdFacts{mode: unix.S_IFSOCK, domain: unix.AF_NETLINK, sockType: unix.SOCK_DGRAM}, "ListenNetlink="},
		{fdFacts{mode: unix.S_IFSOCK, domain: unix.AF_INET, sockType: unix.SOCK_STREAM}, "Accept=yes"},
		{fdFacts{mode: unix.S_IFSOCK, domain: unix.AF_INET, sockType: unix.SOCK_STREAM, listening: true}, ""},
		{fdFacts{mode: unix.S_IFSOCK, domain: unix.AF_INET6, sockType: unix.SOCK_DGRAM}, ""},
		{fdFacts{mode: unix.S_IFSOCK, domain: unix.AF_UNIX, sockType: unix.SOCK_DGRAM}, ""},
		{fdFacts{mode: unix.S_IFSOCK, domain: unix.AF_UNIX, sockType: unix.SOCK_SEQPACKET, listening: true}, ""},
		{fdFacts{mode: unix.S_IFSOCK, domain: unix.AF_VSOCK, sockType: unix.SOCK_STREAM, listening: true}, ""},
	} {
		err := tt.f.check()
		var k *KindError
		switch {
		case tt.setting == "" && err != nil:
			t.Errorf("%+v: %v, want it accepted", tt.f, err)
		case tt.setting != "" && (!errors.As(err, &k) || k.Setting != tt.setting):
			t.Errorf("%+v: %v, want a KindError for %s", tt.f, err, tt.setting)
		}
	}
	raw := fdFacts{mode: unix.S_IFSOCK, domain: unix.AF_INET, sockType: unix.SOCK_RAW}
	if err := raw.check(); err == nil || errors.As(err, new(*KindError)) {
		t.Errorf("a raw socket: %v, want an error that is no KindError", err)
	}
}

// connectedSeqpacket returns one end of a connected unix SOCK_SEQPACKET
// pair, as Accept=yes with ListenSequentialPacket= passes it.
func connectedSeqpacket(t *testing.T) *os.File {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, b := os.NewFile(uintptr(fds[0]), "seqpacket"), os.NewFile(uintptr(fds[1]), "peer")
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}

// netlinkSocket returns a netlink socket, as ListenNetlink= passes one.
func netlinkSocket(t *testing.T) *os.File {
	t.Helper()
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "netlink")
	t.Cleanup(func() { f.Close() })
	return f
}

// messageQueue returns a new POSIX message queue, as ListenMessageQueue=
// passes one, and removes its name.
func messageQueue(t *testing.T) *os.File {
	t.Helper()
	name, err := unix.BytePtrFromString(fmt.Sprintf("corral-test-%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	fd, _, errno := unix.Syscall6(unix.SYS_MQ_OPEN, uintptr(unsafe.Pointer(name)),
		unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600, 0, 0, 0)
	if errno != 0 {
		t.Fatalf("mq_open: %v", errno)
	}
	unix.Syscall(unix.SYS_MQ_UNLINK, uintptr(unsafe.Pointer(name)), 0, 0)
	f := os.NewFile(fd, "mqueue")
	t.Cleanup(func() { f.Close() })
	return f
}

// connectedSocket returns the accepted end of a TCP connection.
func connectedSocket(t *testing.T) *os.File {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	f, err := server.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestSystemdSocketActivate runs this test binary under the real
// systemd-socket-activate, which binds the socket, waits for a first
// connection and then execs the binary with LISTEN_* set.
func TestSystemdSocketActivate(t *testing.T) {
	tool := testenv.Need(t, "systemd-socket-activate", "systemd")
	path := filepath.Join(t.TempDir(), "web.sock")
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, "-l", path, "--fdname=web", "-E", helperEnv+"=inherited", testBinary(t))
	c := newChild(t, cmd)
	conn := dialRetry(ctx, t, path) // the first connection triggers the exec
	defer conn.Close()
	c.readReport(t)
	if c.err != "" {
		t.Fatalf("child: %s; stderr:\n%s", c.err, &c.stderr)
	}
	if want := []string{"socket web unix:" + path + " cloexec=true"}; !slices.Equal(c.report, want) {
		t.Errorf("child reported %q, want %q", c.report, want)
	}
	if pid := readPID(t, conn); pid != cmd.Process.Pid {
		t.Errorf("answered from PID %d, want %d", pid, cmd.Process.Pid)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("systemd-socket-activate: %v; stderr:\n%s", err, &c.stderr)
	}
}

// dialRetry dials the unix socket at path until it exists and accepts
// connections, or ctx ends.
func dialRetry(ctx context.Context, t *testing.T, path string) net.Conn {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return conn
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("dial %s: %v", path, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("dial %s: %v (gave up: %v)", path, err, ctx.Err())
		case <-tick.C:
		}
	}
}

func TestSockaddrString(t *testing.T) {
	tests := []struct {
		sa   unix.Sockaddr
		want string
	}{
		{&unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: 8080}, "127.0.0.1:8080"},
		{&unix.SockaddrInet4{Port: 80}, "0.0.0.0:80"},
		{&unix.SockaddrInet6{Addr: [16]byte{15: 1}, Port: 8080}, "[::1]:8080"},
		{&unix.SockaddrInet6{Port: 443}, "[::]:443"},
		{&unix.SockaddrInet6{Addr: [16]byte{0: 0xfe, 1: 0x80, 15: 1}, Port: 1, ZoneId: 1}, "[fe80::1%lo]:1"},
		{&unix.SockaddrUnix{Name: "/run/x.sock"}, "unix:/run/x.sock"},
		{&unix.SockaddrUnix{Name: "@abstract"}, "unix:@abstract"},
		{&unix.SockaddrUnix{}, "unix:(unnamed)"},
		{&unix.SockaddrVM{CID: 3, Port: 1024}, "vsock:3:1024"},
	}
	for _, tt := range tests {
		if got := sockaddrString(tt.sa); got != tt.want {
			t.Errorf("sockaddrString(%+v) = %q, want %q", tt.sa, got, tt.want)
		}
	}
}
