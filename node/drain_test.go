package node_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corraldev/corral/internal/testenv"
)

// These tests stop node workers the way corral does: the message
// 'shutdown' on Node's IPC channel, then the stop signal, and check that
// the preload's drain loses no request of a client that keeps its
// connection alive. Each one that can fail without the drain says so, and
// TestDrainOffLosesRequests shows that they do.

// Apps as their authors write them, on the port in PORT. Each sends
// process.send('ready') once it listens, as PM2's docs teach, and prints
// a line for the test at each step of its own shutdown.
const (
	// pm2DocsApp handles 'shutdown' as PM2's docs have it: close the
	// server, exit once it has closed.
	pm2DocsApp = `'use strict';
const http = require('http');
const server = http.createServer((req, res) => {
  if (req.url === '/slow') {
    console.log('slow');
    return setTimeout(() => res.end(String(process.pid)), 300);
  }
  res.end(String(process.pid));
});
server.listen(process.env.PORT, () => process.send('ready'));
process.on('message', (msg) => {
  if (msg !== 'shutdown') return;
  console.log('shutdown');
  server.close(() => { console.log('closed'); process.exit(0); });
});
`
	// sigtermApp knows nothing of corral: it closes its server on SIGTERM.
	sigtermApp = `'use strict';
const http = require('http');
const server = http.createServer((req, res) => res.end(String(process.pid)));
server.listen(process.env.PORT, () => process.send('ready'));
process.on('SIGTERM', () => {
  console.log('SIGTERM');
  server.close(() => { console.log('closed'); process.exit(0); });
});
`
	// bareApp handles nothing: without the preload SIGTERM kills it.
	bareApp = `'use strict';
require('http').createServer((req, res) => res.end(String(process.pid)))
  .listen(process.env.PORT, () => process.send('ready'));
`
)

// worker is a node process started as corral starts Node workers: the
// socket as fd 3 and an IPC channel as fd 4.
type worker struct {
	cmd    *exec.Cmd
	ipc    *os.File      // the test's end of the channel
	ready  chan struct{} // closed at process.send('ready')
	lines  chan string   // what the app prints, closed at its end
	exited chan struct{} // closed once the process has been waited for
	err    error         // Wait's, after exited
}

// startWorker runs script with the preload on sock, with env added.
func startWorker(t *testing.T, sock inherited, dir, script string, env ...string) *worker {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "ipc"), os.NewFile(uintptr(fds[1]), "ipc-child")
	defer theirs.Close()
	c := child{
		script:  script,
		dir:     dir,
		files:   []*os.File{sock.file, theirs},
		env:     append(append(listenEnv("unknown"), "PORT="+strconv.Itoa(sock.port(t)), "NODE_CHANNEL_FD=4", "NODE_CHANNEL_SERIALIZATION_MODE=json"), env...),
		ownPID:  true,
		preload: true,
	}
	w := &worker{cmd: c.command(t, context.Background()), ipc: ours, ready: make(chan struct{}), lines: make(chan string, 16), exited: make(chan struct{})}
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	w.cmd.Stderr = &stderr
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go w.readIPC()
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
		w.err = w.cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		<-w.exited
		ours.Close()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("stderr of node %d:\n%s", w.cmd.Process.Pid, stderr.String())
		}
	})
	return w
}

// readIPC closes w.ready when the app sends 'ready'.
func (w *worker) readIPC() {
	sc := bufio.NewScanner(w.ipc)
	for sc.Scan() {
		if sc.Text() == `"ready"` {
			close(w.ready)
			return
		}
	}
}

// shutdown sends the message 'shutdown', as corral does first.
func (w *worker) shutdown(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(w.ipc, "\"shutdown\"\n"); err != nil {
		t.Fatalf("send 'shutdown': %v", err)
	}
}

// signal sends sig.
func (w *worker) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := w.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("send %v: %v", sig, err)
	}
}

// await waits for ch, failing the test if the worker exits first (unless
// ch is w.exited) or after testTimeout.
func (w *worker) await(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-w.exited:
		if ch != w.exited {
			t.Fatalf("node exited (%v) before %s", w.err, what)
		}
	case <-time.After(testTimeout):
		t.Fatalf("no %s within %v", what, testTimeout)
	}
}

// line waits for the app to print want.
func (w *worker) line(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		select {
		case got, ok := <-w.lines:
			if !ok {
				<-w.exited
				t.Fatalf("node exited (%v) before printing %q", w.err, want)
			}
			if got == want {
				return
			}
		case <-deadline:
			t.Fatalf("node did not print %q within %v", want, testTimeout)
		}
	}
}

// stoppedAccepting waits until the worker has closed its copy of the
// listening socket, fd 3: the drain has begun.
func (w *worker) stoppedAccepting(t *testing.T) {
	t.Helper()
	fd := fmt.Sprintf("/proc/%d/fd/3", w.cmd.Process.Pid)
	testenv.WaitFor(t, testTimeout, "node to close fd 3", func() bool {
		_, err := os.Lstat(fd)
		return errors.Is(err, os.ErrNotExist)
	})
}

// killedBy reports whether the worker, which has exited, died of sig.
func (w *worker) killedBy(sig syscall.Signal) bool {
	ws, ok := w.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// conn is one client connection kept alive across requests.
type conn struct {
	net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, sock inherited) *conn {
	t.Helper()
	c, err := net.Dial(sock.network, sock.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testTimeout))
	return &conn{Conn: c, br: bufio.NewReader(c)}
}

// request sends the requests, in one write (pipelined, when several), and
// reads their answers.
func (c *conn) request(paths ...string) ([]*http.Response, error) {
	var b strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\n\r\nping", p)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return nil, err
	}
	var out []*http.Response
	for range paths {
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			return out, err
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return out, err
		}
		out = append(out, resp)
	}
	return out, nil
}

// closedByServer checks that the server closes c without another byte.
func (c *conn) closedByServer(t *testing.T) {
	t.Helper()
	if n, err := c.br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last answer: read %q, %v; want the server to close the connection", n, err)
	}
}

// TestIdleConnectionAnsweredWhileDraining is the bug in one request: a
// keep-alive connection is idle when the worker is told to stop, and its
// client then sends a request. Node's server.close() has closed the
// connection under it; with the drain it gets its answer with Connection:
// close, the server closes the connection, and the app's close callback
// fires.
func TestIdleConnectionAnsweredWhileDraining(t *testing.T) {
	tests := []struct {
		name   string
		script string
		stop   func(t *testing.T, w *worker) // and wait until the app begins its shutdown
		dies   syscall.Signal                // the signal that ends the app, 0 for exit 0
	}{
		{name: "app handles 'shutdown'", script: pm2DocsApp, stop: func(t *testing.T, w *worker) {
			w.shutdown(t)
			w.line(t, "shutdown")
		}},
		{name: "app handles SIGTERM", script: sigtermApp, stop: func(t *testing.T, w *worker) {
			w.signal(t, syscall.SIGTERM)
			w.line(t, "SIGTERM")
		}},
		{name: "app handles nothing, SIGTERM", script: bareApp, dies: syscall.SIGTERM, stop: func(t *testing.T, w *worker) {
			w.signal(t, syscall.SIGTERM)
			w.stoppedAccepting(t)
		}},
		{name: "app handles nothing, SIGINT", script: bareApp, dies: syscall.SIGINT, stop: func(t *testing.T, w *worker) {
			w.signal(t, syscall.SIGINT)
			w.stoppedAccepting(t)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := listenTCP(t)
			w := startWorker(t, sock, "", tt.script)
			w.await(t, "'ready'", w.ready)
			c := dial(t, sock)
			if r, err := c.request("/"); err != nil || r[0].Close {
				t.Fatalf("before the stop: %v, want a keep-alive answer", err)
			}
			tt.stop(t, w)
			r, err := c.request("/")
			if err != nil {
				t.Fatalf("request on the idle connection after the stop: %v", err)
			}
			if !r[0].Close {
				t.Error("the answer after the stop has no Connection: close")
			}
			c.closedByServer(t)
			if tt.dies == 0 {
				w.line(t, "closed")
			}
			w.await(t, "exit", w.exited)
			if tt.dies != 0 && !w.killedBy(tt.dies) {
				t.Errorf("node ended with %v, want death by %v as without the preload", w.err, tt.dies)
			}
			if tt.dies == 0 && w.err != nil {
				t.Errorf("node ended with %v, want exit 0 from the app", w.err)
			}
		})
	}
}

// TestDrainOffLosesRequests shows that the test above sees the bug: with
// the drain off (CORRAL_NODE_DRAIN=off), Node's own server.close() closes
// the idle connection, and SIGTERM kills an app that handles nothing with
// the connection open.
func TestDrainOffLosesRequests(t *testing.T) {
	for _, tt := range []struct {
		name, script string
		stop         func(t *testing.T, w *worker)
	}{
		{name: "app handles 'shutdown'", script: pm2DocsApp, stop: func(t *testing.T, w *worker) {
			w.shutdown(t)
			w.line(t, "shutdown")
		}},
		{name: "app handles nothing", script: bareApp, stop: func(t *testing.T, w *worker) {
			w.signal(t, syscall.SIGTERM)
			w.await(t, "exit", w.exited)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sock := listenTCP(t)
			w := startWorker(t, sock, "", tt.script, "CORRAL_NODE_DRAIN=off")
			w.await(t, "'ready'", w.ready)
			c := dial(t, sock)
			if _, err := c.request("/"); err != nil {
				t.Fatal(err)
			}
			tt.stop(t, w)
			if r, err := c.request("/"); err == nil {
				t.Fatalf("with the drain off, the request after the stop got %s, want it lost", r[0].Status)
			}
		})
	}
}

// TestPipelinedRequestsAnswered sends two requests in one write after the
// drain has begun: both are answered, and only the second, the last the
// client sent, closes the connection.
func TestPipelinedRequestsAnswered(t *testing.T) {
	sock := listenTCP(t)
	w := startWorker(t, sock, "", pm2DocsApp)
	w.await(t, "'ready'", w.ready)
	c := dial(t, sock)
	if _, err := c.request("/", "/"); err != nil {
		t.Fatalf("pipelined requests before the stop: %v", err)
	}
	w.shutdown(t)
	w.line(t, "shutdown")
	r, err := c.request("/slow", "/")
	if err != nil {
		t.Fatalf("pipelined requests after the stop: %d answered, then %v", len(r), err)
	}
	if r[0].Close || !r[1].Close {
		t.Errorf("Connection: close on the answers: %t, %t; want only on the last", r[0].Close, r[1].Close)
	}
	c.closedByServer(t)
	w.line(t, "closed")
}

// TestRequestInFlightCompletes starts a slow request, stops the worker
// while it runs, and gets its answer, with Connection: close although the
// request began before the drain.
func TestRequestInFlightCompletes(t *testing.T) {
	sock := listenTCP(t)
	w := startWorker(t, sock, "", pm2DocsApp)
	w.await(t, "'ready'", w.ready)
	c := dial(t, sock)
	if _, err := c.request("/"); err != nil { // so that the worker has accepted c
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	w.line(t, "slow") // the request has begun: the drain must mark its answer
	w.shutdown(t)
	w.line(t, "shutdown")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("the request in flight at the stop: %v", err)
	}
	io.ReadAll(resp.Body)
	if !resp.Close {
		t.Error("its answer has no Connection: close")
	}
	c.closedByServer(t)
	w.line(t, "closed")
}

// TestIdleConnectionClosedAfterGrace checks that a keep-alive connection
// that sends nothing does not hold the drain up: the server closes it,
// then the app's close callback fires.
func TestIdleConnectionClosedAfterGrace(t *testing.T) {
	sock := listenTCP(t)
	w := startWorker(t, sock, "", pm2DocsApp)
	w.await(t, "'ready'", w.ready)
	c := dial(t, sock)
	if _, err := c.request("/"); err != nil {
		t.Fatal(err)
	}
	w.shutdown(t)
	w.line(t, "shutdown")
	c.closedByServer(t)
	w.line(t, "closed")
	w.await(t, "exit", w.exited)
	if w.err != nil {
		t.Errorf("node ended with %v, want exit 0", w.err)
	}
}

// httpsApp serves HTTPS with the key and certificate in KEY and CERT and
// handles 'shutdown' as pm2DocsApp does.
const httpsApp = `'use strict';
const fs = require('fs');
const https = require('https');
const server = https.createServer({ key: fs.readFileSync(process.env.KEY), cert: fs.readFileSync(process.env.CERT) },
  (req, res) => res.end(String(process.pid)));
server.listen(process.env.PORT, () => process.send('ready'));
process.on('message', (msg) => {
  if (msg !== 'shutdown') return;
  console.log('shutdown');
  server.close(() => { console.log('closed'); process.exit(0); });
});
`

// TestHTTPSDrains runs the idle-connection case on an https server.
func TestHTTPSDrains(t *testing.T) {
	dir := t.TempDir()
	key, cert := selfSigned(t, dir)
	sock := listenTCP(t)
	w := startWorker(t, sock, dir, httpsApp, "KEY="+key, "CERT="+cert)
	w.await(t, "'ready'", w.ready)
	tc, err := tls.Dial("tcp", sock.addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(testTimeout))
	c := &conn{Conn: tc, br: bufio.NewReader(tc)}
	if r, err := c.request("/"); err != nil || r[0].Close {
		t.Fatalf("before the stop: %v, want a keep-alive answer", err)
	}
	w.shutdown(t)
	w.line(t, "shutdown")
	r, err := c.request("/")
	if err != nil {
		t.Fatalf("request on the idle connection after the stop: %v", err)
	}
	if !r[0].Close {
		t.Error("the answer after the stop has no Connection: close")
	}
	w.line(t, "closed")
}

// selfSigned writes a new key and a certificate for 127.0.0.1 into dir and
// returns their paths.
func selfSigned(t *testing.T, dir string) (key, cert string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "corral test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	key, cert = filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
	for path, block := range map[string]*pem.Block{key: {Type: "PRIVATE KEY", Bytes: kder}, cert: {Type: "CERTIFICATE", Bytes: der}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return key, cert
}

// TestChannelKeepsNothingAlive checks that the preload's own listener for
// 'shutdown' does not keep a process alive that would exit without it,
// and that an app's own listener still does.
func TestChannelKeepsNothingAlive(t *testing.T) {
	sock := listenTCP(t)
	w := startWorker(t, sock, "", `const s = require('http').createServer().listen(process.env.PORT, () => s.close());`)
	w.await(t, "exit", w.exited)
	if w.err != nil {
		t.Fatalf("node ended with %v, want exit 0 by itself", w.err)
	}
	w = startWorker(t, sock, "", `process.on('message', (m) => { if (m === 'bye') process.exit(3); }); process.send('ready');`)
	w.await(t, "'ready'", w.ready)
	if _, err := io.WriteString(w.ipc, "\"bye\"\n"); err != nil {
		t.Fatal(err)
	}
	w.await(t, "exit", w.exited)
	if w.cmd.ProcessState.ExitCode() != 3 {
		t.Fatalf("node ended with %v, want exit 3 from the app's own listener", w.err)
	}
}
