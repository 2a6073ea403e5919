package systemd_test

import (
	"os"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"
)

// The README's workers, answering as the example app does.
const (
	nodeWorker = `
const http = require('http');
const os = require('os');
os.networkInterfaces(); // throws without AF_NETLINK
if (os.cpus().length === 0) throw new Error('os.cpus() is empty: /proc/cpuinfo is hidden');
let draining = false;
const server = http.createServer((req, res) => {
  if (draining) res.setHeader('Connection', 'close');
  res.end('hello from worker ' + process.env.CORRAL_WORKER_INDEX + ' (pid ' + process.pid +
    ', generation ' + process.env.CORRAL_GENERATION + ')\n');
});
server.listen({ fd: 3 });
function drain() {
  draining = true;
  server.close(() => process.exit(0));
  setTimeout(() => server.closeIdleConnections(), 1000).unref();
}
process.on('SIGTERM', drain);
process.on('message', (m) => { if (m === 'shutdown') drain(); }); // PM2's graceful stop
`
	pythonWorker = `
import os, socket
from http.server import HTTPServer, BaseHTTPRequestHandler
socket.getaddrinfo("localhost", 80, flags=socket.AI_ADDRCONFIG)
os.nice(1)  # @resources
sock = socket.socket(fileno=3)
class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from worker %s (pid %d, generation %s)\n" % (
            os.environ["CORRAL_WORKER_INDEX"], os.getpid(), os.environ["CORRAL_GENERATION"])).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
server = HTTPServer(sock.getsockname(), Handler, bind_and_activate=False)
server.socket = sock
n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
n.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
server.serve_forever()
`
)

// TestRuntimesUnderTheSandbox: Node (a JIT, which MemoryDenyWriteExecute=
// would kill) and Python run as workers under the shipped sandbox, use what
// the unit's comments say it leaves open for them, serve, and reload.
func TestRuntimesUnderTheSandbox(t *testing.T) {
	tests := []struct {
		name    string
		command []string
		ready   string
	}{
		// Node has no unix datagram sockets: online once it runs.
		{name: "node", command: []string{"/usr/bin/node", "-e", nodeWorker}, ready: "exec"},
		{name: "python", command: []string{"/usr/bin/python3", "-c", pythonWorker}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := startManager(t)
			if _, err := os.Stat(tt.command[0]); err != nil {
				testenv.Missing(t, "%s is not installed: %v", tt.name, err)
			}
			a := installApp(t, m, appOptions{instances: 2, command: tt.command, ready: tt.ready})
			m.mustSystemctl(t, "start", a.service())
			if pid := pidOf(t, a.get(t)); !workerPIDs(a.status(t))[pid] {
				t.Fatalf("answered by pid %d, not a worker", pid)
			}
			m.mustSystemctl(t, "reload", a.service())
			// With ready = "exec" a replaced worker may still accept for a
			// moment after the reload; soon only the new ones answer.
			fresh := onlinePIDs(a.status(t))
			testenv.WaitFor(t, 10*time.Second, "a new worker to answer", func() bool { return fresh[pidOf(t, a.get(t))] })
		})
	}
}
