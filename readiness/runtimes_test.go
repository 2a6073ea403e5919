package readiness

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/corraldev/corral/internal/testenv"
)

// These tests run real servers that never notify on the socket at fd 3.
// Each needs a program this machine may lack; the test skips without it,
// except in CI (CI=true), which installs the Debian packages python3,
// nodejs, python3-uvicorn and gunicorn.

// pythonWith returns a Python interpreter that imports module, skipping
// the test when none does. Debian's packages install modules for
// /usr/bin/python3, which may not be the python3 first in PATH.
func pythonWith(t *testing.T, module, pkg string) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		if path, err := exec.LookPath(py); err == nil && exec.Command(path, "-c", "import "+module).Run() == nil {
			return path
		}
	}
	testenv.Missing(t, "no python3 imports %s (Debian package %s)", module, pkg)
	return ""
}

const pythonServe = `
import http.server, socket
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
sock = socket.socket(fileno=3)
server = http.server.HTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
server.socket = sock
server.serve_forever()
`

const pythonHold = `
import socket, sys
sock = socket.socket(fileno=3)
print("holding", flush=True)
sys.stdin.read()
`

// TestPythonLoadsThenServes checks the moment a worker goes from loading
// (holding the socket, waiting for a line on stdin) to serving.
func TestPythonLoadsThenServes(t *testing.T) {
	python := testenv.Need(t, "python3", "python3")
	f, addr := listener(t)
	s := sockets(t, f)
	c := start(t, f, nil, python, "-c", "import sys\nprint('holding', flush=True)\nsys.stdin.readline()\n"+pythonServe)
	expect(t, c, s, addr, false)
	if _, err := io.WriteString(c.stdin, "loaded\n"); err != nil {
		t.Fatal(err)
	}
	expect(t, c, s, addr, true)
}

func TestPython(t *testing.T) {
	tests := []struct {
		name   string
		script string
		serves bool
	}{
		{name: "http.server", script: pythonServe, serves: true},
		{name: "holds the socket, never serves", script: pythonHold},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			python := testenv.Need(t, "python3", "python3")
			f, addr := listener(t)
			c := start(t, f, nil, python, "-c", tt.script)
			expect(t, c, sockets(t, f), addr, tt.serves)
		})
	}
}

const nodeServe = `require("http").createServer((req, res) => res.end("ok")).listen({fd: 3})`

func TestNode(t *testing.T) {
	tests := []struct {
		name   string
		script string
		shell  bool // run node from a shell, as npm start does
		serves bool
	}{
		{name: "http.createServer().listen({fd: 3})", script: nodeServe, serves: true},
		{name: "started by a shell", script: nodeServe, shell: true, serves: true},
		{name: "holds the socket, never serves", script: `console.log("holding"); process.stdin.resume()`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			argv := []string{testenv.Need(t, "node", "nodejs"), "-e", tt.script}
			if tt.shell {
				argv = []string{"/bin/sh", "-c", `"$@"; exit $?`, "sh", argv[0], argv[1], argv[2]}
			}
			f, addr := listener(t)
			c := start(t, f, nil, argv...)
			s := sockets(t, f)
			if !tt.serves {
				expect(t, c, s, addr, false)
				return
			}
			reason := waitListening(t, c, s)
			if tt.shell {
				byChild(t, c, reason)
			}
			served(t, addr)
		})
	}
}

const asgiApp = `
async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
`

const wsgiApp = `
def app(environ, start_response):
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
`

// TestUvicorn runs Debian's uvicorn (an asyncio event loop, epoll).
func TestUvicorn(t *testing.T) {
	python := pythonWith(t, "uvicorn", "python3-uvicorn")
	dir := appDir(t, asgiApp)
	f, addr := listener(t)
	c := start(t, f, nil, python, "-m", "uvicorn", "--fd", "3", "--lifespan", "off", "--app-dir", dir, "app:app")
	expect(t, c, sockets(t, f), addr, true)
}

// TestGunicorn runs Debian's gunicorn: a master that holds the socket and
// a sync worker, its child, that waits for connections in select.
func TestGunicorn(t *testing.T) {
	gunicorn := testenv.Need(t, "gunicorn", "gunicorn")
	dir := appDir(t, wsgiApp)
	f, addr := listener(t)
	c := start(t, f, nil, gunicorn, "--bind", "fd://3", "--workers", "1", "--chdir", dir, "app:app")
	s := sockets(t, f)
	byChild(t, c, waitListening(t, c, s))
	served(t, addr)
}

// appDir returns a new directory holding app.py with source.
func appDir(t testing.TB, source string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(source), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}
