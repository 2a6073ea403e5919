package readiness

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/corraldev/corral/internal/testenv"
	"golang.org/x/sys/unix"
)

// A datagram server waits for datagrams rather than connections: its
// socket in an epoll set, or a thread blocked in recvfrom, recvmsg,
// recvmmsg or read on it, or in poll or select with it in the read set.
// These helpers serve the datagram socket at fd 3, answering each datagram
// with "ok".
func init() {
	helpers["recvfrom"] = func() error { return answerEach(recvfrom) }
	helpers["recvmsg"] = func() error { return answerEach(recvmsg) }
	helpers["recvmmsg"] = func() error { return answerEach(recvmmsg) }
	helpers["read"] = helperRead
	helpers["poll-recv"] = func() error { return answerEach(pollThenRecv) }
	helpers["go-packetconn"] = helperPacketConn
	helpers["hold-all"] = helperHoldAll
}

// answerEach answers every datagram that recv returns, from a blocking
// socket.
func answerEach(recv func(buf []byte) (unix.Sockaddr, error)) error {
	buf := make([]byte, 2048)
	for {
		from, err := recv(buf)
		if err != nil {
			return err
		}
		if err := unix.Sendto(3, []byte("ok"), 0, from); err != nil {
			return err
		}
	}
}

func recvfrom(buf []byte) (unix.Sockaddr, error) {
	_, from, err := unix.Recvfrom(3, buf, 0)
	return from, err
}

func recvmsg(buf []byte) (unix.Sockaddr, error) {
	_, _, _, from, err := unix.Recvmsg(3, buf, nil, 0)
	return from, err
}

// recvmmsg reads one datagram with recvmmsg(2), which x/sys/unix has no
// wrapper for, and returns its sender.
func recvmmsg(buf []byte) (unix.Sockaddr, error) {
	var from unix.RawSockaddrAny
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	var msg struct {
		hdr unix.Msghdr
		len uint32
		_   uint32
	}
	msg.hdr.Name = (*byte)(unsafe.Pointer(&from))
	msg.hdr.Namelen = unix.SizeofSockaddrAny
	msg.hdr.Iov = &iov
	msg.hdr.SetIovlen(1)
	if _, _, e := unix.Syscall6(unix.SYS_RECVMMSG, 3, uintptr(unsafe.Pointer(&msg)), 1, 0, 0, 0); e != 0 {
		return nil, e
	}
	return anyToSockaddr(&from)
}

// anyToSockaddr converts an IPv4 sender's address.
func anyToSockaddr(rsa *unix.RawSockaddrAny) (unix.Sockaddr, error) {
	if rsa.Addr.Family != unix.AF_INET {
		return nil, fmt.Errorf("recvmmsg: sender of family %d", rsa.Addr.Family)
	}
	a := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
	return &unix.SockaddrInet4{Port: int(ntohs(a.Port)), Addr: a.Addr}, nil
}

// pollThenRecv waits in poll(2) (ppoll on arm64) for the socket, then
// reads.
func pollThenRecv(buf []byte) (unix.Sockaddr, error) {
	fds := []unix.PollFd{{Fd: 3, Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != unix.EINTR {
			break
		}
	}
	return recvfrom(buf)
}

// helperRead reads datagrams with read(2), which tells nothing of the
// sender, so it answers none.
func helperRead() error {
	buf := make([]byte, 2048)
	for {
		if _, err := unix.Read(3, buf); err != nil {
			return err
		}
	}
}

// helperPacketConn serves with Go's net package, which waits in epoll.
func helperPacketConn() error {
	c, err := net.FilePacketConn(os.NewFile(3, "datagram socket"))
	if err != nil {
		return err
	}
	buf := make([]byte, 2048)
	for {
		_, from, err := c.ReadFrom(buf)
		if err != nil {
			return err
		}
		c.WriteTo([]byte("ok"), from)
	}
}

// helperHoldAll holds the descriptors it was given and never reads.
func helperHoldAll() error {
	fmt.Println("holding")
	select {}
}

// datagramSocket returns a new blocking datagram socket of network, as
// corral hands them out, and its address.
func datagramSocket(t testing.TB, network string) (*os.File, net.Addr) {
	t.Helper()
	address := "127.0.0.1:0"
	if network == "unixgram" {
		address = filepath.Join(t.TempDir(), "server.sock")
	}
	c, err := net.ListenPacket(network, address)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close() // the File below keeps the socket open
	f, err := c.(interface{ File() (*os.File, error) }).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		t.Fatal(err)
	}
	return f, c.LocalAddr()
}

// answered checks that a datagram to addr gets the answer "ok".
func answered(t *testing.T, addr net.Addr) {
	t.Helper()
	var c net.Conn
	var err error
	if addr.Network() == "unixgram" {
		local := &net.UnixAddr{Name: filepath.Join(t.TempDir(), "client.sock"), Net: "unixgram"}
		c, err = net.DialUnix("unixgram", local, addr.(*net.UnixAddr))
	} else {
		c, err = net.Dial(addr.Network(), addr.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 16)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "ok" {
		t.Fatalf("listening but not answering: %q, %v", buf[:n], err)
	}
}

func TestDatagram(t *testing.T) {
	tests := []struct {
		name, helper, network string
		reason                string // a part of the reason given
	}{
		{name: "blocked in recvfrom", helper: "recvfrom", network: "udp", reason: "waits in recvfrom on fd 3"},
		{name: "blocked in recvmsg", helper: "recvmsg", network: "udp", reason: "waits in recvmsg on fd 3"},
		{name: "blocked in recvmmsg", helper: "recvmmsg", network: "udp", reason: "waits in recvmmsg on fd 3"},
		{name: "blocked in poll", helper: "poll-recv", network: "udp", reason: "poll on fd 3"},
		{name: "Go's net package", helper: "go-packetconn", network: "udp", reason: "through epoll fd"},
		{name: "unix datagram socket, recvfrom", helper: "recvfrom", network: "unixgram", reason: "waits in recvfrom on fd 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, addr := datagramSocket(t, tt.network)
			s := sockets(t, f)
			c := startHelper(t, f, tt.helper)
			if reason := waitListening(t, c, s); !strings.Contains(reason, tt.reason) {
				t.Errorf("reason %q does not mention %q", reason, tt.reason)
			}
			answered(t, addr)
		})
	}
	t.Run("blocked in read", func(t *testing.T) {
		f, _ := datagramSocket(t, "udp")
		s := sockets(t, f)
		c := startHelper(t, f, "read")
		if reason := waitListening(t, c, s); !strings.Contains(reason, "waits in read on fd 3") {
			t.Errorf("reason %q does not mention read", reason)
		}
	})
	t.Run("holds the socket, never reads", func(t *testing.T) {
		f, _ := datagramSocket(t, "udp")
		c := startHelper(t, f, "hold")
		c.waitLine(t, "holding")
		neverListening(t, c, sockets(t, f), 300*time.Millisecond)
	})
}

// TestDatagramPortIsNotAConnection: a worker that holds the UDP socket of
// port P, a TCP listener, and a TCP connection whose local port is also P
// (TCP's ports are another space) holds no connection accepted from the
// sockets.
func TestDatagramPortIsNotAConnection(t *testing.T) {
	f, addr := datagramSocket(t, "udp")
	listener, _ := listener(t)
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Skipf("TCP port %s is taken: %v", addr, err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	conn, err := server.(*net.TCPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	s, err := SocketsOf([]*os.File{f, listener})
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []struct {
		name string
		copy bool
	}{{"pidfd_getfd", true}, {"sock_diag", false}} {
		t.Run(method.name, func(t *testing.T) {
			copyFDs = method.copy
			t.Cleanup(func() { copyFDs = true })
			c := startFiles(t, []*os.File{f, listener, conn}, []string{helperEnv + "=hold-all"}, os.Args[0])
			c.waitLine(t, "holding")
			neverListening(t, c, s, 300*time.Millisecond)
		})
	}
}

const pythonRecvfrom = `
import socket
sock = socket.socket(fileno=3)
while True:
    data, peer = sock.recvfrom(2048)
    sock.sendto(b"ok", peer)
`

const pythonAsyncioDatagram = `
import asyncio, socket
class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport
    def datagram_received(self, data, peer):
        self.transport.sendto(b"ok", peer)
async def main():
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(Echo, sock=socket.socket(fileno=3))
    await asyncio.Event().wait()
asyncio.run(main())
`

const nodeDgram = `
const s = require("dgram").createSocket("udp4");
s.on("message", (m, r) => s.send("ok", r.port, r.address));
s.bind({fd: 3});
`

// TestDatagramRuntimes runs real datagram servers of other runtimes.
func TestDatagramRuntimes(t *testing.T) {
	tests := []struct {
		name, tool, pkg string
		args            []string
		reason          string
	}{
		{name: "Python recvfrom", tool: "python3", pkg: "python3", args: []string{"-c", pythonRecvfrom}, reason: "waits in recvfrom"},
		{name: "Python asyncio", tool: "python3", pkg: "python3", args: []string{"-c", pythonAsyncioDatagram}, reason: "through epoll"},
		{name: "Node dgram", tool: "node", pkg: "nodejs", args: []string{"-e", nodeDgram}, reason: "through epoll"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tool := testenv.Need(t, tt.tool, tt.pkg)
			f, addr := datagramSocket(t, "udp")
			s := sockets(t, f)
			c := start(t, f, nil, append([]string{tool}, tt.args...)...)
			if reason := waitListening(t, c, s); !strings.Contains(reason, tt.reason) {
				t.Errorf("reason %q does not mention %q", reason, tt.reason)
			}
			answered(t, addr)
		})
	}
}
