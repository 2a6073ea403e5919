package workers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"
)

// nodeSpec runs script with the machine's node, with Node's IPC channel.
func nodeSpec(t *testing.T, n int, script string) Spec {
	t.Helper()
	node := testenv.Need(t, "node", "nodejs")
	path := filepath.Join(t.TempDir(), "app.js")
	if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := testSpec(t, "none", n)
	spec.Path, spec.Args, spec.NodeIPC = node, []string{path}, true
	return spec
}

// The PM2 way: process.send('ready') when listening, exit on 'shutdown'.
const pm2App = `
const http = require('http');
const server = http.createServer((req, res) => res.end(process.pid + '\n'));
server.listen({fd: 3}, () => process.send('ready'));
process.on('message', (msg) => {
  if (msg === 'shutdown') server.close(() => process.exit(0));
});
`

func TestNodeReadyAndShutdownMessages(t *testing.T) {
	h := startPool(t, nodeSpec(t, 2, pm2App))
	before := h.settle(2)
	h.reload(true)
	after := h.settle(2)
	for pid := range pids(before) {
		if pids(after)[pid] {
			t.Fatalf("pid %d survived the reload", pid)
		}
	}
	log := h.log.String()
	if strings.Count(log, "sent 'shutdown'") != 2 || strings.Contains(log, "after 'shutdown'; sending") {
		t.Errorf("old workers should exit on 'shutdown' alone:\n%s", log)
	}
	if strings.Count(log, "exited with status 0 after stop (replaced by generation 2)") != 2 {
		t.Errorf("old workers did not exit 0:\n%s", log)
	}
}

func TestNodeIgnoringShutdownGetsTheSignal(t *testing.T) {
	spec := nodeSpec(t, 1, `
require('http').createServer((q, s) => s.end('x')).listen({fd: 3}, () => process.send('online'));
`)
	spec.StopTimeout = 400 * time.Millisecond
	h := startPool(t, spec)
	h.settle(1)
	h.reload(true)
	h.settle(1)
	waitLog(t, h, "still running 200ms after 'shutdown'; sending SIGTERM", 1)
	waitLog(t, h, "was killed by signal 15 (SIGTERM) after stop", 1)
}

func TestNodeChannelDoesNotKeepAppAlive(t *testing.T) {
	spec := nodeSpec(t, 1, `console.log('one-off job done');`)
	spec.Ready = ReadyExec
	h := startPool(t, spec, func(o *Options) { o.Backoff = Backoff{Initial: time.Hour} })
	st := h.waitFor("the app to exit on its own", func(st Status) bool { return st.Restarts == 1 })
	if len(st.Workers) != 0 || !strings.Contains(h.log.String(), "exited with status 0") {
		t.Fatalf("status %+v; log:\n%s", st, h.log)
	}
}

func TestNodeChannelGarbageIsDropped(t *testing.T) {
	h := startPool(t, nodeSpec(t, 1, `
const fs = require('fs');
const fd = 3 + Number(process.env.LISTEN_FDS);
fs.writeSync(fd, '{not json\n');
fs.writeSync(fd, '"' + 'x'.repeat(70000) + '"\n');
process.send('ready');
require('http').createServer((q, s) => s.end('x')).listen({fd: 3});
`))
	st := h.settle(1)
	if st.IPCDropped != 2 {
		t.Fatalf("dropped %d IPC messages, want 2", st.IPCDropped)
	}
}
