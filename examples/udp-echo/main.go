// Command udp-echo is a corral worker for datagram sockets: it answers
// every datagram on the UDP (or unix datagram) sockets corral hands it
// with the datagram and who answered it, and stops without losing one
// when it is replaced.
//
// Under corral, two workers on one UDP port:
//
//	corral run -i 2 --listen udp:127.0.0.1:5353 -- bin/udp-echo
//	echo hi | nc -u -q1 127.0.0.1 5353   # hi from worker 0 (pid 4242, generation 1)
//
// On its own, for development:
//
//	go run ./examples/udp-echo -addr 127.0.0.1:5353
//
// Every worker reads from the same socket, and the kernel hands each
// datagram to one reader. So the drain is, on SIGTERM: stop reading (a
// datagram not read yet stays queued in the socket for the other
// workers), answer the datagrams already read, exit. That is the rule for
// any datagram server under corral; see the README's "UDP" section.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

func main() {
	fail := flag.Bool("fail", false, "exit 1 at start, like a broken release")
	addr := flag.String("addr", "", "UDP address to listen on when not started by corral or systemd")
	flag.Parse()
	if *fail {
		log.Fatal("udp-echo: -fail given: exiting as a broken release would")
	}
	conns, err := sockets(*addr)
	if err != nil {
		log.Fatalf("udp-echo: %v", err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)

	id := fmt.Sprintf("worker %s (pid %d, generation %s)", os.Getenv("CORRAL_WORKER_INDEX"), os.Getpid(), os.Getenv("CORRAL_GENERATION"))
	var readers sync.WaitGroup
	for _, c := range conns {
		readers.Go(func() { serve(c, id) })
	}
	daemon.SdNotify(false, daemon.SdNotifyReady)

	<-stop
	// Stop reading: a ReadFrom waiting for a datagram returns at once,
	// having taken none; one that has read a datagram returns it, and its
	// answer goes out before serve returns.
	for _, c := range conns {
		c.SetReadDeadline(time.Now())
	}
	readers.Wait()
}

// serve answers every datagram on c until c's read deadline passes.
func serve(c net.PacketConn, id string) {
	buf := make([]byte, 64<<10)
	var out []byte
	for {
		n, from, err := c.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		if err != nil {
			log.Printf("udp-echo: read: %v", err)
			return
		}
		out = fmt.Appendf(out[:0], "%s from %s", strings.TrimRight(string(buf[:n]), "\r\n"), id)
		if _, err := c.WriteTo(out, from); err != nil {
			log.Printf("udp-echo: answer %v: %v", from, err)
		}
	}
}

// sockets returns the datagram sockets systemd or corral passed (fds 3..
// with LISTEN_FDS, LISTEN_PID), or else one it binds at addr.
func sockets(addr string) ([]net.PacketConn, error) {
	var conns []net.PacketConn
	for _, f := range activation.Files(true) {
		if !isDatagram(f) {
			f.Close() // a stream socket: this server has no use for it
			continue
		}
		c, err := net.FilePacketConn(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
	}
	switch {
	case len(conns) > 0:
		return conns, nil
	case addr == "":
		return nil, errors.New("no datagram socket: run it under corral (corral run --listen udp:127.0.0.1:5353 -- udp-echo) or give -addr")
	}
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	return []net.PacketConn{c}, nil
}

// isDatagram reports whether f is a datagram socket. It reads the type
// through SyscallConn, which, unlike Fd, leaves the blocking mode that
// every worker shares alone.
func isDatagram(f *os.File) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	typ := -1
	rc.Control(func(fd uintptr) { typ, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE) })
	return typ == syscall.SOCK_DGRAM
}
