package node_test

import (
	"bytes"
	"context"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"testing"
)

// TestListenUsesInheritedSocket runs apps that listen the way PM2 apps do
// and checks that they serve on the socket the test holds and hands them.
func TestListenUsesInheritedSocket(t *testing.T) {
	tests := []struct {
		name       string
		unix       bool   // inherit a unix socket rather than TCP
		fdName     string // its LISTEN_FDNAMES entry
		portAsName bool   // name it after another port, which PORT names
		port       string // PORT for app.js; the socket's port or path when empty
		listen     string // JS that starts s listening with callback cb
	}{
		{name: "port", fdName: "http", listen: "s.listen(Number(process.env.PORT), cb)"},
		{name: "port string and host", fdName: "http", listen: "s.listen(process.env.PORT, 'localhost', cb)"},
		{name: "options", fdName: "unknown", listen: "s.listen({ port: Number(process.env.PORT), backlog: 64 }, cb)"},
		{name: "name", fdName: "http", port: "http", listen: "s.listen(process.env.PORT, cb)"},
		{name: "port as name", portAsName: true, listen: "s.listen(Number(process.env.PORT), cb)"},
		{name: "unix path", unix: true, fdName: "unknown", listen: "s.listen({ path: process.env.PORT }, cb)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			sock, port := listenTCP(t), tt.port
			if tt.unix {
				sock = listenUnix(t)
			}
			if port == "" && tt.unix {
				port = sock.addr
			} else if port == "" {
				port = strconv.Itoa(sock.port(t))
			}
			fdName := tt.fdName
			if tt.portAsName {
				// A port the test holds, so that a listen that misses the
				// inherited socket fails rather than binds it.
				port = strconv.Itoa(listenTCP(t).port(t))
				fdName = port
			}
			p := start(t, ctx, child{
				script: jsPrelude + `
const s = http.createServer(handler);
let listening = false;
s.on('listening', () => { listening = true; });
const cb = () => {
  const a = s.address();
  report(typeof a === 'string' ? { path: a, listening } : { port: a.port, listening });
};
` + tt.listen + "\n",
				files:   []*os.File{sock.file},
				env:     append(listenEnv(fdName), "PORT="+port),
				ownPID:  true,
				preload: true,
			})
			r := p.report(t)
			if !r.Listening {
				t.Error("the 'listening' event did not come before the callback")
			}
			if tt.unix && r.Path != sock.addr {
				t.Fatalf("server.address() = %q, want %q", r.Path, sock.addr)
			}
			if !tt.unix && r.Port != sock.port(t) {
				t.Fatalf("server.address().port = %d, want the inherited socket's %d", r.Port, sock.port(t))
			}
			mustServe(t, ctx, sock, p)
		})
	}
}

// expressApp is Express's hello world app, as its documentation gives it,
// reading the port from PORT as PM2 apps do.
const expressApp = `const express = require('express')
const app = express()
const port = process.env.PORT || 3000

app.get('/', (req, res) => {
  res.send('Hello World!')
})

app.listen(port, () => {
  console.log(` + "`Example app listening on port ${port}`" + `)
})
`

// TestExpressApp installs Express from the npm registry and runs an
// unmodified Express app on the inherited socket.
func TestExpressApp(t *testing.T) {
	dir := installExpress(t)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	sock := listenTCP(t)
	port := strconv.Itoa(sock.port(t))
	p := start(t, ctx, child{
		script:  expressApp,
		dir:     dir,
		files:   []*os.File{sock.file},
		env:     append(listenEnv("http"), "PORT="+port),
		ownPID:  true,
		preload: true,
	})
	line, err := p.out.ReadString('\n')
	if want := "Example app listening on port " + port + "\n"; err != nil || line != want {
		werr := p.kill()
		t.Fatalf("Express printed %q, %v, want %q (node: %v); stderr:\n%s", line, err, want, werr, &p.stderr)
	}
	body, err := get(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	if body != "Hello World!" {
		t.Fatalf("Express answered %q, want %q", body, "Hello World!")
	}
}

// TestOtherListensUntouched checks that the preload takes the inherited
// socket once per process and leaves other listen calls to Node.
func TestOtherListensUntouched(t *testing.T) {
	tests := []struct {
		name   string
		script string // reports port, of the inherited listen; outcome, of another listen on that port
		other  bool   // and other, the port of a listen(0)
	}{
		{
			name:  "port 0 and a second listen on the port",
			other: true,
			script: `(async () => {
  const other = http.createServer(handler).listen(0, '127.0.0.1');
  await outcome(other);
  const first = http.createServer(handler).listen(Number(process.env.PORT));
  await outcome(first);
  const second = outcome(http.createServer(handler).listen(Number(process.env.PORT), '127.0.0.1'));
  report({ other: other.address().port, port: first.address().port, outcome: await second });
})();
`,
		},
		{
			name: "the app's own listen on fd 3",
			script: `(async () => {
  const own = http.createServer(handler).listen({ fd: 3 });
  await outcome(own);
  const second = outcome(http.createServer(handler).listen(Number(process.env.PORT), '127.0.0.1'));
  report({ port: own.address().port, outcome: await second });
})();
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			sock := listenTCP(t)
			p := start(t, ctx, child{
				script:  jsPrelude + tt.script,
				files:   []*os.File{sock.file},
				env:     append(listenEnv("http"), "PORT="+strconv.Itoa(sock.port(t))),
				ownPID:  true,
				preload: true,
			})
			r := p.report(t)
			if r.Port != sock.port(t) {
				t.Errorf("inherited listen: server.address().port = %d, want %d", r.Port, sock.port(t))
			}
			if r.Outcome != "EADDRINUSE" {
				t.Errorf("second listen on the port: %s, want EADDRINUSE", r.Outcome)
			}
			mustServe(t, ctx, sock, p)
			if !tt.other {
				return
			}
			if r.Other == 0 || r.Other == sock.port(t) {
				t.Fatalf("listen(0) got port %d, want a new port", r.Other)
			}
			mustServe(t, ctx, inherited{network: "tcp", addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Other))}, p)
		})
	}
}

// TestInert checks that the preload changes nothing where the sockets are
// not meant for the code that listens: a listen on the port the test holds
// must fail as it would without the preload. (The host is the loopback
// address so that nothing binds beyond it; the preload ignores the host.)
func TestInert(t *testing.T) {
	listen := `outcome(http.createServer(handler).listen(Number(process.env.PORT), '127.0.0.1')).then((o) => report({ outcome: o }));
`
	worker := `const { Worker } = require('worker_threads');
const w = new Worker(` + "`" + `
  const http = require('http');
  const { parentPort } = require('worker_threads');
  const s = http.createServer().listen(Number(process.env.PORT), '127.0.0.1');
  s.once('listening', () => { parentPort.postMessage('listening'); s.close(); });
  s.once('error', (err) => parentPort.postMessage(err.code));
` + "`" + `, { eval: true });
w.once('message', (o) => report({ outcome: o }));
`
	tests := []struct {
		name   string
		env    []string
		ownPID bool
		script string
	}{
		{name: "no LISTEN_FDS", ownPID: true, script: listen},
		{name: "LISTEN_PID of another process", env: append(listenEnv("http"), "LISTEN_PID="+strconv.Itoa(os.Getpid())), script: listen},
		{name: "worker thread", env: listenEnv("http"), ownPID: true, script: worker},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			sock := listenTCP(t)
			p := start(t, ctx, child{
				script:  jsPrelude + tt.script,
				files:   []*os.File{sock.file},
				env:     append(tt.env, "PORT="+strconv.Itoa(sock.port(t))),
				ownPID:  tt.ownPID,
				preload: true,
			})
			if r := p.report(t); r.Outcome != "EADDRINUSE" {
				t.Errorf("listen on the held port: %s, want EADDRINUSE", r.Outcome)
			}
		})
	}
}

// TestTwoWorkersShareSocket starts two node processes on one inherited
// socket and makes new connections until both have answered.
func TestTwoWorkersShareSocket(t *testing.T) {
	const maxRequests = 2000
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	sock := listenTCP(t)
	c := child{
		script:  jsPrelude + "const s = http.createServer(handler).listen(Number(process.env.PORT), () => report({ port: s.address().port }));\n",
		files:   []*os.File{sock.file},
		env:     append(listenEnv("http"), "PORT="+strconv.Itoa(sock.port(t))),
		ownPID:  true,
		preload: true,
	}
	seen := map[string]int{} // answers by PID
	for _, p := range []*proc{start(t, ctx, c), start(t, ctx, c)} {
		p.report(t)
		seen[strconv.Itoa(p.cmd.Process.Pid)] = 0
	}
	for i := 0; i < maxRequests && slices.Contains(slices.Collect(maps.Values(seen)), 0); i++ {
		body, err := get(ctx, sock)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := seen[body]; !ok {
			t.Fatalf("answer %q is neither worker's PID", body)
		}
		seen[body]++
	}
	for pid, n := range seen {
		if n == 0 {
			t.Errorf("worker %s answered none of %d requests: %v", pid, maxRequests, seen)
		}
	}
	t.Logf("answers by PID: %v", seen)
}

// TestPreloadQuiet checks that the preload prints nothing, not even a
// deprecation warning, and keeps no process alive: each script exits by
// itself once it has nothing left to do.
func TestPreloadQuiet(t *testing.T) {
	tests := []struct {
		name   string
		env    []string
		script string
	}{
		{name: "no listen", env: listenEnv("http")},
		{name: "listen then close", env: listenEnv("http"),
			script: "const s = require('net').createServer().listen(Number(process.env.PORT), () => s.close());\n"},
		{name: "no LISTEN_FDS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
			defer cancel()
			sock := listenTCP(t)
			cmd := child{
				script:      tt.script,
				files:       []*os.File{sock.file},
				env:         append(tt.env, "PORT="+strconv.Itoa(sock.port(t))),
				ownPID:      true,
				preload:     true,
				nodeOptions: "--pending-deprecation",
			}.command(t, ctx)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("node: %v (exits by itself within %v?); stderr:\n%s", err, testTimeout, &stderr)
			}
			if stdout.Len() > 0 || stderr.Len() > 0 {
				t.Fatalf("node printed %q to stdout and %q to stderr, want nothing", &stdout, &stderr)
			}
		})
	}
}
