package activation

import (
	"context"
	"errors"
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
// which calls Inherited.
func TestInherited(t *testing.T) {
	socks := mustOpen(t,
		ListenSpec{Name: "web", Network: "tcp", Address: "127.0.0.1:0"},
		ListenSpec{Network: "unix", Address: filepath.Join(t.TempDir(), "admin.sock")},
	)
	c := startChild(t, trampolineHelper(t, "inherited", socks))
	if c.err != "" {
		t.Fatalf("child: %s; stderr:\n%s", c.err, &c.stderr)
	}
	want := []string{ // no "env" lines: Inherited unsets LISTEN_*
		"socket web " + socks[0].Addr + " cloexec=true",
		"socket unknown " + socks[1].Addr + " cloexec=true",
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

func TestInheritedRejectsNonListening(t *testing.T) {
	dir := t.TempDir()
	dgram, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "d.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer dgram.Close()
	dgramFile, err := dgram.File()
	if err != nil {
		t.Fatal(err)
	}
	defer dgramFile.Close()
	connFile := connectedSocket(t)
	pipeR, pipeW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pipeR.Close()
	defer pipeW.Close()

	tests := []struct {
		name string
		file *os.File
		want string
	}{
		{"datagram", dgramFile, "inherited socket fd 3 (datagram): a datagram socket: corral hands out listening stream sockets only (use ListenStream="},
		{"connection", connFile, "inherited socket fd 3 (connection): a connected socket, not a listening one: set Accept=no"},
		{"fifo", pipeR, "inherited socket fd 3 (fifo): not a socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startChild(t, trampolineHelper(t, "inherited", []Socket{{Name: tt.name, File: tt.file}}))
			if !strings.HasPrefix(c.err, tt.want) {
				t.Errorf("child error %q, want prefix %q", c.err, tt.want)
			}
			if err := c.wait(); err == nil || err.Error() != "exited with status 1" {
				t.Errorf("child exit: %v, want status 1", err)
			}
		})
	}
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
