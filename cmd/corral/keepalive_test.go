package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corraldev/corral/internal/loadtest"
	"github.com/corraldev/corral/internal/testenv"
)

// TestPM2AppKeepAliveReloads is issue 11's headline: the app written as
// PM2's docs teach, unchanged, under corral, with only keep-alive clients,
// loses no request over 20 reloads. With the preload's drain off it does,
// which shows that the test can see the bug.
func TestPM2AppKeepAliveReloads(t *testing.T) {
	node := testenv.Need(t, "node", "nodejs")
	app, err := filepath.Abs("../../examples/pm2-app/app.js")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("drain on", func(t *testing.T) {
		ok, failed, errs := keepAliveReloads(t, node, app, 20)
		if failed > 0 {
			t.Fatalf("%d of %d requests failed: %q", failed, ok+failed, errs)
		}
	})
	t.Run("drain off", func(t *testing.T) {
		for attempt := 1; attempt <= 3; attempt++ {
			var failed int64
			t.Run(fmt.Sprintf("attempt %d", attempt), func(t *testing.T) {
				_, failed, _ = keepAliveReloads(t, node, app, 5, "CORRAL_NODE_DRAIN=off")
			})
			if failed > 0 {
				return
			}
		}
		t.Fatal("no request failed with CORRAL_NODE_DRAIN=off: the test cannot see the bug")
	})
}

// keepAliveReloads runs app in 2 workers under corral and reloads it n
// times under load from 8 keep-alive clients, and returns the load's
// counts.
func keepAliveReloads(t *testing.T, node, app string, n int, env ...string) (ok, failed int64, errs []string) {
	addr := testenv.FreeAddr(t)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	in := runCorral(t, append(env, "PORT="+port), "-i", "2", "--listen", addr, "--", node, app)
	in.waitRunning(2)
	l := loadtest.Start(addr, 0, 8)
	for i := range n {
		if out, err := corralCmd(t, nil, "reload", "--control", in.control).CombinedOutput(); err != nil {
			l.Stop()
			t.Fatalf("reload %d: %v: %s", i, err, out)
		}
	}
	in.waitRunning(2)
	ok, failed, errs = l.Stop()
	t.Logf("%d reloads, 8 keep-alive clients: %d requests ok, %d failed", n, ok, failed)
	if ok < 1000 {
		t.Fatalf("only %d requests answered: the load did not run", ok)
	}
	return ok, failed, errs
}
