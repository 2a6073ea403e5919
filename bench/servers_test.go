package main

import (
	"os"
	"os/exec"
	"testing"

	"github.com/corraldev/corral/internal/testenv"
)

// TestServersReloadUnderLoad runs the Node, Express, gunicorn, uvicorn and
// Puma rows of docs/servers.md, and the README's drain-rule examples for Go
// (examples/nethttp) and Python, under corral with a few reloads, and fails
// on a request lost where the page says none is: every row but uvicorn and
// Puma's default, whose rare failures only they can remove (their Known
// field; the page gives the figures and the Puma setting that loses none).
func TestServersReloadUnderLoad(t *testing.T) {
	for _, tool := range []struct{ name, pkg string }{
		{"node", "nodejs"}, {"npm", "npm"}, {"gunicorn", "gunicorn"}, {"puma", "puma"}, {"go", "golang"},
	} {
		testenv.Need(t, tool.name, tool.pkg)
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import uvicorn").Run(); err != nil {
		if testenv.CI() {
			t.Fatalf("/usr/bin/python3 cannot import uvicorn: .ci/run must install python3-uvicorn: %v", err)
		}
		t.Skipf("/usr/bin/python3 cannot import uvicorn (Debian package python3-uvicorn): %v", err)
	}
	t.Chdir("..") // the repository root, as `go run ./bench` runs
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	e, err := setup(t.Context(), config{compare: "none", workers: 2}, root, t.TempDir())
	if err == nil {
		err = buildNetHTTP(t.Context(), e)
	}
	if err != nil {
		t.Fatal(err)
	}
	sc := serversConfig{reloads: 3, idleReloads: 1, newConn: 2, keepAlive: 2,
		only: []string{"Node", "Express", "gunicorn", "uvicorn", "Puma", "README's drain rule"}}
	results := runServers(t.Context(), sc, e)
	if len(results) != 8 {
		t.Fatalf("ran %d servers, want 8", len(results))
	}
	for _, r := range results {
		c := r.Corral
		if c == nil {
			t.Errorf("%s: %s", r.Case.Name, r.Err)
			continue
		}
		t.Logf("%s: new connection %s failed, keep-alive %s; reloads %v ms unloaded, %v ms under load",
			r.Case.Name, frac(c.NewConn), frac(c.KeepAlive), c.IdleMs, c.LoadedMs)
		if c.NewConn.OK == 0 || c.KeepAlive.OK == 0 {
			t.Errorf("%s: the load did not run: %+v", r.Case.Name, c)
		}
		if c.FailedReloads > 0 {
			t.Errorf("%s: %d reloads failed", r.Case.Name, c.FailedReloads)
		}
		if r.Case.Known != "" {
			continue // failures only the server can remove, explained on the page
		}
		if c.NewConn.Failed+c.KeepAlive.Failed > 0 {
			t.Errorf("%s: lost requests: new connection %s, keep-alive %s: %v %v",
				r.Case.Name, frac(c.NewConn), frac(c.KeepAlive), c.NewConn.Errs, c.KeepAlive.Errs)
		}
	}
}
