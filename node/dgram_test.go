package node_test

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/loadtest"
	"golang.org/x/sys/unix"
)

// listenUDP returns a UDP socket on network ("udp4", or "udp6" on the
// wildcard address, which takes IPv4 datagrams too, as systemd's
// ListenDatagram=PORT binds it), in blocking mode as corral hands it out.
func listenUDP(t *testing.T, network string) inherited {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "udp6" {
		addr = "[::]:0" // as "udp", not "udp6", for which Go sets IPV6_V6ONLY
	}
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	f, err := c.(*net.UDPConn).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		t.Fatal(err)
	}
	// A receive buffer of 8 MiB, as the README advises, past rmem_max
	// as root: it holds 1.6 s of the reload tests' load, so that a busy
	// machine that keeps node from reading for a moment drops nothing.
	if unix.SetsockoptInt(int(f.Fd()), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) != nil {
		unix.SetsockoptInt(int(f.Fd()), unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<20)
	}
	_, port, _ := net.SplitHostPort(c.LocalAddr().String())
	// The test sends to it over IPv4 in every case.
	return inherited{network: "udp", addr: "127.0.0.1:" + port, file: f}
}

// askUDP sends a datagram to s and returns the answer.
func askUDP(t *testing.T, s inherited, msg string) string {
	t.Helper()
	c, err := net.Dial("udp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer from %s: %v", s.addr, err)
	}
	return string(buf[:n])
}

// dgramPrelude starts the dgram apps of these tests: an echo that answers
// "MSG from pid PID to ADDRESS FAMILY", and report.
const dgramPrelude = `'use strict';
const dgram = require('dgram');
const report = (r) => console.log(JSON.stringify({ pid: process.pid, ...r }));
const echo = (s) => s.on('message', (m, r) =>
  s.send(m + ' from pid ' + process.pid + ' to ' + r.address + ' ' + r.family, r.port, r.address));
`

// TestBindUsesInheritedSocket runs apps that bind dgram sockets the ways
// Node's docs show and checks that they answer on the socket the test
// holds, with the 'listening' event and the callback as Node gives them,
// and IPv4 senders seen as IPv4 on a dual-stack IPv6 socket.
func TestBindUsesInheritedSocket(t *testing.T) {
	tests := []struct {
		name    string
		network string // of the inherited socket
		fdName  string
		port    string // PORT for app.js; the socket's port when empty
		script  string // JS that binds s, which echo answers on, then reports
		sender  string // how the app sees the test's address; "127.0.0.1 IPv4" when empty
	}{
		{name: "bind(port)", network: "udp4", fdName: "dns",
			script: "const s = dgram.createSocket('udp4'); echo(s); s.bind(Number(process.env.PORT)); s.on('listening', () => report({ port: s.address().port, outcome: 'listening' }));"},
		{name: "bind(port string, address, cb)", network: "udp4", fdName: "unknown",
			script: "const s = dgram.createSocket('udp4'); echo(s); s.bind(process.env.PORT, '0.0.0.0', () => report({ port: s.address().port }));"},
		{name: "bind({port}, cb)", network: "udp4", fdName: "unknown",
			script: "const s = dgram.createSocket({ type: 'udp4', reuseAddr: true }); echo(s); s.bind({ port: Number(process.env.PORT), exclusive: true }, () => report({ port: s.address().port }));"},
		{name: "bind(name)", network: "udp4", fdName: "dns", port: "dns",
			script: "const s = dgram.createSocket('udp4'); echo(s); s.bind(process.env.PORT, () => report({ port: s.address().port }));"},
		{name: "udp6 on IPv6", network: "udp6", fdName: "unknown", sender: "::ffff:127.0.0.1 IPv6",
			script: "const s = dgram.createSocket('udp6'); echo(s); s.bind(Number(process.env.PORT), () => report({ port: s.address().port }));"},
		{name: "udp4 on dual-stack IPv6", network: "udp6", fdName: "unknown",
			script: "const s = dgram.createSocket('udp4'); echo(s); s.bind(Number(process.env.PORT), () => report({ port: s.address().port }));"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			sock := listenUDP(t, tt.network)
			port := tt.port
			if port == "" {
				port = strconv.Itoa(sock.port(t))
			}
			p := start(t, ctx, child{
				script:  dgramPrelude + tt.script + "\n",
				files:   []*os.File{sock.file},
				env:     append(listenEnv(tt.fdName), "PORT="+port),
				ownPID:  true,
				preload: true,
			})
			if r := p.report(t); r.Port != sock.port(t) {
				t.Fatalf("s.address().port = %d, want the inherited socket's %d", r.Port, sock.port(t))
			}
			want := fmt.Sprintf("hello from pid %d to %s", p.cmd.Process.Pid, cmp.Or(tt.sender, "127.0.0.1 IPv4"))
			if got := askUDP(t, sock, "hello"); got != want {
				t.Fatalf("answer %q, want %q", got, want)
			}
		})
	}
}

// TestOtherBindsUntouched: a bind to port 0, to a port no inherited socket
// has, and a TCP listen on the UDP socket's port number go to Node; the
// UDP socket is not taken by listen(), nor a TCP one by bind().
func TestOtherBindsUntouched(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	// The app binds sockets of its own on the other protocol's port
	// numbers, which another test's connection may hold on a busy
	// machine: take sockets whose twins are free a moment before the app
	// starts. (The report names the app's error if one was taken since.)
	var udp, tcp inherited
	for try := 0; ; try++ {
		udp, tcp = listenUDP(t, "udp4"), listenTCP(t)
		a, errA := net.Listen("tcp", fmt.Sprintf(":%d", udp.port(t)))
		b, errB := net.ListenPacket("udp4", fmt.Sprintf(":%d", tcp.port(t)))
		if errA == nil && errB == nil {
			a.Close()
			b.Close()
			break
		}
		for _, c := range []interface{ Close() error }{a, b} {
			if c != nil {
				c.Close()
			}
		}
		if try == 10 {
			t.Fatalf("no pair of ports whose twins are free: %v, %v", errA, errB)
		}
	}
	p := start(t, ctx, child{
		script: dgramPrelude + `
const http = require('http');
const a = dgram.createSocket('udp4');
a.bind(0, () => {
  const b = dgram.createSocket('udp4');
  b.bind(Number(process.env.TCP_PORT), () => {
    const web = http.createServer((q, r) => r.end(String(process.pid)));
    web.on('error', (e) => report({ outcome: e.code }));
    web.listen(Number(process.env.UDP_PORT), () => report({ port: a.address().port, other: b.address().port, outcome: 'listening' }));
  });
});
`,
		files:   []*os.File{udp.file, tcp.file},
		env:     append(listenEnv("dns", "web"), "UDP_PORT="+strconv.Itoa(udp.port(t)), "TCP_PORT="+strconv.Itoa(tcp.port(t))),
		ownPID:  true,
		preload: true,
	})
	r := p.report(t)
	switch {
	case r.Outcome != "listening":
		t.Errorf("listen(the UDP socket's port) = %s, want its own TCP socket", r.Outcome)
	case r.Port == 0 || r.Port == udp.port(t):
		t.Errorf("bind(0) bound port %d, want a port of its own", r.Port)
	case r.Other != tcp.port(t):
		t.Errorf("bind(the TCP socket's port) bound port %d, want %d: its own UDP socket", r.Other, tcp.port(t))
	}
}

// Datagram apps as their authors write them, on the port in PORT; each
// sends process.send('ready') once bound.
const (
	// bareDgramApp handles nothing, and answers at once.
	bareDgramApp = `'use strict';
const s = require('dgram').createSocket('udp4');
s.on('message', (m, r) => s.send(m + ' from pid ' + process.pid, r.port, r.address));
s.bind(Number(process.env.PORT), () => process.send('ready'));
`
	// slowDgramApp handles nothing, answers each datagram after a few
	// milliseconds of work, and has a timer that keeps it alive, as a
	// metrics flush would: 'shutdown' does not end it, SIGTERM must, and
	// a bare SIGTERM would kill it with answers still owed.
	slowDgramApp = `'use strict';
const s = require('dgram').createSocket('udp4');
s.on('message', (m, r) => setTimeout(() => s.send(m + ' from pid ' + process.pid, r.port, r.address), 3));
s.bind(Number(process.env.PORT), () => process.send('ready'));
setInterval(() => {}, 1000);
`
	// pm2DgramApp closes its socket on 'shutdown', as PM2's docs would
	// have it, and exits once closed.
	pm2DgramApp = `'use strict';
const s = require('dgram').createSocket('udp4');
s.on('message', (m, r) => s.send(m + ' from pid ' + process.pid, r.port, r.address));
s.bind(Number(process.env.PORT), () => process.send('ready'));
process.on('message', (msg) => { if (msg === 'shutdown') s.close(() => process.exit(0)); });
`
)

// dgramRolls is how many times dgramRollingReload replaces the worker.
const dgramRolls = 3

// TestDgramRollingReload replaces a worker three times the way corral does
// ('ready' from the new one, then 'shutdown' and SIGTERM to the old one)
// while a client sends 5,000 numbered datagrams a second, and allows no
// datagram lost or answered twice.
func TestDgramRollingReload(t *testing.T) {
	for _, tt := range []struct{ name, script string }{
		{name: "app handles nothing", script: bareDgramApp},
		{name: "app handles nothing, answers late, stays alive", script: slowDgramApp},
		{name: "app closes its socket on 'shutdown'", script: pm2DgramApp},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := dgramRollingReload(t, tt.script)
			if r.Lost != 0 || r.Duplicated != 0 || r.Stray != 0 {
				t.Errorf("%d sent, %d lost (the first: %v), %d duplicated, %d stray", r.Sent, r.Lost, r.LostSeqs, r.Duplicated, r.Stray)
			}
		})
	}
}

// TestDgramDrainOffLosesDatagrams shows that the load can see what the
// drain prevents: with CORRAL_NODE_DRAIN=off, SIGTERM kills the app that
// answers late with answers still owed.
func TestDgramDrainOffLosesDatagrams(t *testing.T) {
	r := dgramRollingReload(t, slowDgramApp, "CORRAL_NODE_DRAIN=off")
	if r.Lost == 0 {
		t.Fatal("no datagram lost with the drain off: the load cannot see what the drain prevents")
	}
}

// dgramRollingReload runs dgramRolls replacements of a worker running script
// under a datagram load and returns the load's report.
func dgramRollingReload(t *testing.T, script string, env ...string) loadtest.DatagramReport {
	t.Helper()
	sock := listenUDP(t, "udp4")
	old := startWorker(t, sock, "", script, env...)
	old.await(t, "'ready'", old.ready)
	d, err := loadtest.DatagramOptions{Addr: sock.addr, Rate: 5000}.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop()
	for i := 1; i <= dgramRolls; i++ {
		w := startWorker(t, sock, "", script, env...)
		w.await(t, fmt.Sprintf("'ready' from worker %d", i), w.ready)
		stopLikeCorral(t, old)
		if strings.Contains(script, "setInterval") && old.err == nil {
			t.Errorf("worker %d exited with status 0, want killed by SIGTERM, as without the preload", i)
		}
		old = w
	}
	r, err := d.Stop()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d replacements: %d datagrams sent (%.0f/s), %d answered, %d lost (the kernel dropped %d at the worker's full buffer, %d at the client's), %d duplicated; max wait %v",
		dgramRolls, r.Sent, r.Rate(), r.Answered, r.Lost, r.Dropped, r.ClientDropped, r.Duplicated, r.MaxLatency.Round(time.Microsecond))
	if r.Sent < 1000 {
		t.Fatalf("only %d datagrams sent: the load did not run", r.Sent)
	}
	return r
}
