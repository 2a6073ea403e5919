package readiness

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func init() {
	helpers["spin-accept"] = helperSpinAccept
	helpers["busy-connected"] = helperBusyConnected
}

// helperBusyConnected is helperBusy with a connected socket besides the
// listener, so that a check also asks sock_diag for accepted connections.
func helperBusyConnected() error {
	if _, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0); err != nil {
		return err
	}
	return helperBusy()
}

// helperSpinAccept takes connections the way a server busy with requests
// does: never blocked in accept or poll on the socket, never registered
// with epoll; it tries a non-blocking accept every millisecond and holds
// what it accepts.
func helperSpinAccept() error {
	if err := syscall.SetNonblock(3, true); err != nil {
		return err
	}
	fmt.Println("holding")
	var held []int
	for {
		nfd, _, err := syscall.Accept(3)
		if err == nil {
			held = append(held, nfd)
		}
		time.Sleep(time.Millisecond)
	}
}

// listenOn returns a new blocking listening socket on network and address
// (a path for unix), as corral hands them to workers, and its address.
func listenOn(t testing.TB, network, address string) (*os.File, net.Addr) {
	t.Helper()
	ln, err := net.Listen(network, address)
	if err != nil {
		if network == "tcp6" {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	defer ln.Close() // the File below keeps the socket open
	if u, ok := ln.(*net.UnixListener); ok {
		u.SetUnlinkOnClose(false)
	}
	f, err := ln.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		t.Fatal(err)
	}
	return f, ln.Addr()
}

// TestAcceptedConnection checks that a worker that holds a connection it
// accepted from the socket is listening, though nothing else shows it,
// for TCP, TCP over IPv6, unix sockets and abstract unix sockets; and
// that one that has accepted nothing yet is not.
func TestAcceptedConnection(t *testing.T) {
	tests := []struct{ name, network, address string }{
		{name: "tcp", network: "tcp", address: "127.0.0.1:0"},
		{name: "tcp on the wildcard address", network: "tcp", address: ":0"},
		{name: "tcp6", network: "tcp6", address: "[::1]:0"},
		{name: "unix", network: "unix"}, // in a new directory
		{name: "abstract unix", network: "unix", address: "@corral-readiness-test-" + fmt.Sprint(os.Getpid())},
	}
	for _, method := range []struct {
		name string
		copy bool
	}{{"pidfd_getfd", true}, {"sock_diag", false}} {
		t.Run(method.name, func(t *testing.T) {
			copyFDs = method.copy
			t.Cleanup(func() { copyFDs = true })
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) { acceptedCase(t, tt.network, tt.address) })
			}
		})
	}
}

// acceptedCase runs one case of TestAcceptedConnection.
func acceptedCase(t *testing.T, network, address string) {
	if network == "unix" && address == "" {
		address = filepath.Join(t.TempDir(), "app.sock")
	}
	f, addr := listenOn(t, network, address)
	s := sockets(t, f)
	c := startHelper(t, f, "spin-accept")
	c.waitLine(t, "holding")
	neverListening(t, c, s, 300*time.Millisecond)
	dialAddr := addr.String()
	if a, ok := addr.(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		dialAddr = net.JoinHostPort("127.0.0.1", fmt.Sprint(a.Port))
	}
	conn, err := net.Dial(addr.Network(), dialAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if reason := waitListening(t, c, s); !strings.Contains(reason, "accepted") {
		t.Errorf("reason %q does not say it accepted a connection", reason)
	}
}

// TestOtherConnectionsDoNotCount checks that a connection a worker holds
// that was not accepted from the sockets, but from another listener on
// another port, does not make it listening.
func TestOtherConnectionsDoNotCount(t *testing.T) {
	f, _ := listenOn(t, "tcp", "127.0.0.1:0")
	other, otherAddr := listenOn(t, "tcp", "127.0.0.1:0")
	s := sockets(t, f)
	c := start(t, other, []string{helperEnv + "=spin-accept"}, os.Args[0])
	c.waitLine(t, "holding")
	conn, err := net.Dial("tcp", otherAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The helper holds a connection accepted from other, and its own
	// copy of f is not there: only f's sockets are looked for.
	neverListening(t, c, s, 300*time.Millisecond)
}
