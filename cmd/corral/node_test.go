package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/testenv"
)

// The PM2-style example runs unchanged: listen(PORT) through the preload,
// process.send('ready'), and exit on 'shutdown'; 20 reloads under load
// lose nothing.
func TestPM2AppReloadsUnderLoad(t *testing.T) {
	node := testenv.Need(t, "node", "nodejs")
	app, err := filepath.Abs("../../examples/pm2-app/app.js")
	if err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	in := runCorral(t, []string{"PORT=" + port}, "-i", "2", "--listen", addr, "--", node, app)
	before := in.waitRunning(2)
	if got := testenv.Get(t, addr); !strings.HasPrefix(got, "hello from instance ") {
		t.Fatalf("GET / = %q", got)
	}
	l := loadtest.Start(addr, 2, 2)
	for i := range 20 {
		out, err := corralCmd(t, nil, "reload", "--control", in.control).CombinedOutput()
		if err != nil {
			t.Fatalf("reload %d: %v: %s", i, err, out)
		}
	}
	after := in.waitRunning(2)
	ok, failed, errs := l.Stop()
	t.Logf("20 reloads of the PM2-style app: %d requests ok, %d failed", ok, failed)
	if failed > 0 || ok == 0 {
		t.Fatalf("%d of %d requests failed: %q", failed, ok+failed, errs)
	}
	if pidsOf(before) == pidsOf(after) || after.Generation != 21 {
		t.Fatalf("workers not replaced: %v -> %v", pidsOf(before), pidsOf(after))
	}
	if n := strings.Count(in.stderr.String(), "after 'shutdown'; sending"); n > 0 {
		t.Errorf("%d old workers needed the stop signal: they should exit on 'shutdown'", n)
	}
}

// A Node app that never calls process.send('ready') is online once it
// listens, as under PM2 without wait_ready: ready = "auto" means listen.
func TestNodeAppWithoutReadyMessage(t *testing.T) {
	node := testenv.Need(t, "node", "nodejs")
	addr := testenv.FreeAddr(t)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	in := runCorral(t, nil, "-i", "1", "--listen", addr,
		"--", node, "-e", "require('http').createServer((q, s) => s.end('ok')).listen("+port+")")
	in.waitRunning(1)
	if got := testenv.Get(t, addr); got != "ok" {
		t.Fatalf("GET = %q", got)
	}
	// corral's log comes through a pipe, maybe after its status.
	testenv.WaitFor(t, 30*time.Second, "corral to say it used listen readiness", func() bool {
		return strings.Contains(in.stderr.String(), "ready=listen") && strings.Contains(in.stderr.String(), "listening: pid")
	})
}
