package node_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/testenv"
)

// rolls is how many times rollingReload replaces the worker.
const rolls = 5

// signalAfter is how long after 'shutdown' rollingReload sends SIGTERM to a
// worker still running, as corral does after half its stop timeout.
const signalAfter = time.Second

// TestRollingReloadUnderLoad replaces a worker five times, the way corral
// does (a new worker on the same socket, 'ready', then 'shutdown' and
// SIGTERM to the old one), under keep-alive and new-connection clients,
// and allows no failed request.
func TestRollingReloadUnderLoad(t *testing.T) {
	for _, tt := range []struct{ name, script string }{
		{name: "app handles 'shutdown'", script: pm2DocsApp},
		{name: "app handles SIGTERM", script: sigtermApp},
		{name: "app handles nothing", script: bareApp},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ok, failed, errs := rollingReload(t, "", tt.script)
			if failed > 0 {
				t.Errorf("%d of %d requests failed: %q", failed, ok+failed, errs)
			}
		})
	}
}

// TestExpressRollingReloadUnderLoad does the same with an Express app
// installed from the npm registry, which closes its server on 'shutdown'.
func TestExpressRollingReloadUnderLoad(t *testing.T) {
	dir := installExpress(t)
	const app = `'use strict';
const express = require('express');
const app = express();
app.post('/', (req, res) => res.send(String(process.pid)));
const server = app.listen(process.env.PORT, () => process.send('ready'));
process.on('message', (msg) => {
  if (msg === 'shutdown') server.close(() => process.exit(0));
});
`
	ok, failed, errs := rollingReload(t, dir, app)
	if failed > 0 {
		t.Errorf("%d of %d requests failed: %q", failed, ok+failed, errs)
	}
}

// TestRollingReloadSeesDrainOff shows that the load test can see the bug
// the drain removes: with CORRAL_NODE_DRAIN=off, the app that handles
// 'shutdown' as PM2's docs teach loses requests of keep-alive clients.
func TestRollingReloadSeesDrainOff(t *testing.T) {
	for attempt := 1; attempt <= 3; attempt++ {
		var failed int64
		t.Run(fmt.Sprintf("attempt %d", attempt), func(t *testing.T) {
			_, failed, _ = rollingReload(t, "", pm2DocsApp, "CORRAL_NODE_DRAIN=off")
		})
		if failed > 0 {
			return
		}
	}
	t.Fatal("no request failed with the drain off: the load test cannot see the bug")
}

// rollingReload runs rolls replacements of a worker running script in dir
// under load from 2 new-connection and 4 keep-alive clients, and returns
// the load's counts. Each replacement waits for the old worker's exit, so
// that the load moves to the new one, and fails the test if the old
// worker needed SIGKILL.
func rollingReload(t *testing.T, dir, script string, env ...string) (ok, failed int64, errs []string) {
	sock := listenTCP(t)
	old := startWorker(t, sock, dir, script, env...)
	old.await(t, "'ready'", old.ready)
	load := loadtest.Start(sock.addr, 2, 4)
	stopped := false
	defer func() {
		if !stopped {
			load.Stop()
		}
	}()
	for i := 1; i <= rolls; i++ {
		w := startWorker(t, sock, dir, script, env...)
		w.await(t, fmt.Sprintf("'ready' from worker %d", i), w.ready)
		stopLikeCorral(t, old)
		old = w
	}
	ok, failed, errs = load.Stop()
	stopped = true
	t.Logf("%d replacements: %d requests answered, %d failed", rolls, ok, failed)
	if ok < 100 {
		t.Fatalf("only %d requests answered: the load did not run", ok)
	}
	return ok, failed, errs
}

// stopLikeCorral sends w 'shutdown', SIGTERM after signalAfter, and waits
// for its exit, killing it after 10s.
func stopLikeCorral(t *testing.T, w *worker) {
	t.Helper()
	w.shutdown(t)
	select {
	case <-w.exited:
		return
	case <-time.After(signalAfter):
	}
	w.signal(t, syscall.SIGTERM)
	select {
	case <-w.exited:
	case <-time.After(10 * time.Second):
		w.cmd.Process.Kill()
		t.Fatal("the old worker was still running 10s after SIGTERM")
	}
}

// installExpress installs Express 4 from the npm registry into a new
// directory and returns it.
func installExpress(t *testing.T) string {
	t.Helper()
	npm := testenv.Need(t, "npm", "npm")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"private": true}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), npmTimeout)
	defer cancel()
	install := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund",
		"--no-package-lock", "--loglevel=error", "express@4")
	install.Dir = dir
	install.Env = cleanEnv()
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm install express@4: %v\n%s", err, out)
	}
	return dir
}
