package main

// The servers mode: `go run ./bench -servers` runs each server of
// docs/servers.md unchanged under corral (and the Node ones under PM2 too),
// reloads it back to back under load from new-connection and keep-alive
// clients, counted apart, and rewrites the table of docs/servers.md.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/corraldev/corral/internal/loadtest"
)

// serverCase is one row of docs/servers.md: a server, its app, and how it
// runs under corral.
type serverCase struct {
	Name     string `json:"name"`
	Settings string `json:"settings"` // what it needs under corral, Markdown
	// Known explains failures that only the server can remove; empty when
	// the case must lose nothing.
	Known string   `json:"known,omitempty"`
	tools []string // commands it needs
	flags []string // corral run flags besides -i, --listen and --control
	pm2   bool     // also run under PM2 cluster mode
	// argv returns the worker command for the app in dir, on port.
	argv func(e *env, dir string, port int) []string
	// prepare writes the app into dir.
	prepare func(ctx context.Context, e *env, dir string) error
}

// serverResult is what one case measured.
type serverResult struct {
	Case       serverCase   `json:"case"`
	Corral     *reloadStats `json:"corral"`
	PM2        *reloadStats `json:"pm2,omitempty"`
	Err        string       `json:"error,omitempty"`
	Reloads    int          `json:"reloads"`
	NewConn    int          `json:"new_connection_clients"`
	KeepAlive  int          `json:"keep_alive_clients"`
	DurationS  float64      `json:"seconds"`
	StartedUTC string       `json:"started"`
	Command    string       `json:"command,omitempty"`
}

// reloadStats are the counts of one target over the reloads, per mode.
type reloadStats struct {
	NewConn, KeepAlive modeStats
	// Reload durations, unloaded (before the load) and under load, ms.
	IdleMs, LoadedMs []float64
	FailedReloads    int
}

type modeStats struct {
	OK, Failed int64
	Kinds      map[string]int64 `json:",omitempty"`
	Errs       []string         `json:",omitempty"`
}

// serverCases are the rows, in the order of the page.
func serverCases() []serverCase {
	nodeArgv := func(e *env, dir string, _ int) []string { return []string{"node", filepath.Join(dir, "app.js")} }
	return []serverCase{
		{Name: "Node `http` (PM2's docs' app)", tools: []string{"node"}, pm2: true,
			Settings: "none: `corral run -- node app.js`; `server.close()` on `'shutdown'` is enough",
			argv:     nodeArgv, prepare: copyFile("examples/pm2-app/app.js", "app.js")},
		{Name: "Express 4", tools: []string{"node", "npm"}, pm2: true,
			Settings: "none: `corral run -- node app.js`",
			argv:     nodeArgv, prepare: prepareExpress},
		{Name: "gunicorn 20 (sync workers)", tools: []string{"gunicorn"},
			Settings: "`--ready=listen`; no `--bind`: gunicorn takes `LISTEN_FDS` itself (`--bind fd://3` as well makes it fail with EBADF)",
			flags:    []string{"--ready=listen"},
			argv: func(e *env, dir string, _ int) []string {
				return []string{"gunicorn", "--workers", "1", "--chdir", dir, "app:app"}
			},
			prepare: writeFile("app.py", wsgiApp)},
		{Name: "uvicorn 0.17", tools: []string{"/usr/bin/python3"},
			Settings: "`--ready=listen`; `uvicorn --fd 3`",
			Known:    "At SIGTERM uvicorn closes at once every connection that has no request in progress (`shutdown` in `protocols/http/h11_impl.py`): idle keep-alive connections, and new ones it has accepted whose request has not arrived yet, so their clients get a reset. The socket is shared and corral never sees those connections: only uvicorn can change this (by answering them with `Connection: close` for a grace, as the README's drain rule says)",
			flags:    []string{"--ready=listen"},
			argv: func(e *env, dir string, _ int) []string {
				return []string{"/usr/bin/python3", "-m", "uvicorn", "--fd", "3", "--lifespan", "off", "--no-access-log", "--app-dir", dir, "app:app"}
			},
			prepare: writeFile("app.py", asgiApp)},
		{Name: "Puma 5.6 (single mode)", tools: []string{"puma"},
			Settings: "`--ready=listen`; `puma -b tcp://HOST:PORT` with the socket's address, so that Puma takes the inherited socket",
			Known:    "At SIGTERM Puma closes the connections waiting in its reactor with no request bytes read (`Reactor#shutdown`, then `Client#timeout!`): a new connection it accepted an instant before, whose request is on its way, and a keep-alive connection whose answer it had just sent. Only Puma can change this; `queue_requests false` (the next row) takes the reactor out and loses nothing, at the cost of keep-alive",
			flags:    []string{"--ready=listen"},
			argv: func(e *env, dir string, port int) []string {
				return []string{"puma", "--silent", "-b", fmt.Sprintf("tcp://127.0.0.1:%d", port), filepath.Join(dir, "config.ru")}
			},
			prepare: writeFile("config.ru", rackApp)},
		{Name: "Puma 5.6, `queue_requests false`", tools: []string{"puma"},
			Settings: "as above, with `queue_requests false` in a config file (`-C`): no reactor, and no keep-alive",
			flags:    []string{"--ready=listen"},
			argv: func(e *env, dir string, port int) []string {
				return []string{"puma", "--silent", "-C", filepath.Join(dir, "puma.rb"), "-b", fmt.Sprintf("tcp://127.0.0.1:%d", port), filepath.Join(dir, "config.ru")}
			},
			prepare: func(ctx context.Context, e *env, dir string) error {
				if err := writeFile("config.ru", rackApp)(ctx, e, dir); err != nil {
					return err
				}
				return writeFile("puma.rb", "queue_requests false\n")(ctx, e, dir)
			}},
		{Name: "Go `net/http`, `Shutdown` at SIGTERM", tools: []string{"go"},
			Settings: "sends `READY=1`; drains the common way (`-drain=shutdown` of [examples/nethttp](../examples/nethttp))",
			Known:    "`http.Server.Shutdown` closes idle keep-alive connections at once and drops a request it reads after it began (golang/go#65802): follow the README's drain rule instead",
			argv: func(e *env, dir string, _ int) []string {
				return []string{filepath.Join(e.scratch, "nethttp"), "-drain=shutdown"}
			}},
		{Name: "Go `net/http`, the README's drain rule", tools: []string{"go"},
			Settings: "sends `READY=1`; [examples/nethttp](../examples/nethttp)",
			argv:     func(e *env, dir string, _ int) []string { return []string{filepath.Join(e.scratch, "nethttp")} }},
		{Name: "Go with `httpworker`", tools: []string{"go"},
			Settings: "none: [examples/hello](../examples/hello)",
			argv:     func(e *env, dir string, _ int) []string { return []string{e.hello} }},
		{Name: "Python `http.server`, the README's drain rule", tools: []string{"python3"},
			Settings: "sends `READY=1`; [examples/python/server.py](../examples/python/server.py)",
			argv: func(e *env, dir string, _ int) []string {
				return []string{"python3", filepath.Join(e.root, "examples/python/server.py")}
			}},
	}
}

const wsgiApp = `import os
def app(environ, start_response):
    environ["wsgi.input"].read()
    body = ("pid %d\n" % os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
`

const asgiApp = `import os
async def app(scope, receive, send):
    while (await receive()).get("more_body"):
        pass
    body = ("pid %d\n" % os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
`

const rackApp = `run ->(env) { env["rack.input"].read; [200, {"content-type" => "text/plain"}, ["pid #{Process.pid}\n"]] }
`

const expressApp = `'use strict';
const express = require('express');
const app = express();
app.all('/', (req, res) => res.send('pid ' + process.pid + '\n'));
const server = app.listen(process.env.PORT || 3000, () => { if (process.send) process.send('ready'); });
process.on('message', (msg) => { if (msg === 'shutdown') server.close(() => process.exit(0)); });
process.on('SIGINT', () => server.close(() => process.exit(0)));
`

func writeFile(name, text string) func(context.Context, *env, string) error {
	return func(_ context.Context, _ *env, dir string) error {
		return os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644)
	}
}

func copyFile(from, name string) func(context.Context, *env, string) error {
	return func(_ context.Context, e *env, dir string) error {
		b, err := os.ReadFile(filepath.Join(e.root, from))
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
}

func prepareExpress(ctx context.Context, e *env, dir string) error {
	if err := writeFile("app.js", expressApp)(ctx, e, dir); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"private": true}`+"\n"), 0o644)
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--no-package-lock", "--loglevel=error", "express@4")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm install express@4: %w: %s", err, out)
	}
	return nil
}

// serversConfig is the knobs of the servers mode.
type serversConfig struct {
	reloads, idleReloads int
	newConn, keepAlive   int
	only                 []string // case names to run; all when empty
	pm2                  bool
}

// runServers measures every case and returns the results.
func runServers(ctx context.Context, sc serversConfig, e *env) []serverResult {
	var out []serverResult
	for _, c := range serverCases() {
		if len(sc.only) > 0 && !slices.ContainsFunc(sc.only, func(s string) bool { return strings.Contains(c.Name, s) }) {
			continue
		}
		log.Printf("servers: %s", c.Name)
		began := time.Now()
		r := serverResult{Case: c, Reloads: sc.reloads, NewConn: sc.newConn, KeepAlive: sc.keepAlive, StartedUTC: began.UTC().Format(time.RFC3339)}
		var err error
		r.Corral, r.PM2, err = measureServer(ctx, sc, e, c)
		if err != nil {
			r.Err = err.Error()
			log.Printf("servers: %s: %v", c.Name, err)
		}
		r.DurationS = time.Since(began).Seconds()
		out = append(out, r)
		if ctx.Err() != nil {
			break
		}
	}
	return out
}

// measureServer runs one case under corral, and under PM2 if it asks.
func measureServer(ctx context.Context, sc serversConfig, e *env, c serverCase) (corral, pm2 *reloadStats, err error) {
	for _, tool := range c.tools {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, nil, fmt.Errorf("needs %s: %w", tool, err)
		}
	}
	dir, err := os.MkdirTemp(e.scratch, "server-")
	if err != nil {
		return nil, nil, err
	}
	if c.prepare != nil {
		if err := c.prepare(ctx, e, dir); err != nil {
			return nil, nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	t := newCorral(e, dir, port, c.argv(e, dir, port)...)
	t.flags = append([]string{"-C", dir}, c.flags...) // the default stop timeout, as a user has it
	if corral, err = reloadUnderLoad(ctx, sc, t, port); err != nil {
		return nil, nil, fmt.Errorf("under corral: %w (logs in %s)", err, dir)
	}
	if !c.pm2 || !sc.pm2 || e.pm2 == "" {
		return corral, nil, nil
	}
	if port, err = freePort(); err != nil {
		return corral, nil, err
	}
	pe := *e
	pe.app = filepath.Join(dir, "app.js")
	p := &pm2Target{e: &pe, dir: dir, port: port}
	if pm2, err = reloadUnderLoad(ctx, sc, p, port); err != nil {
		return corral, nil, fmt.Errorf("under PM2: %w (logs in %s)", err, dir)
	}
	return corral, pm2, nil
}

// reloadUnderLoad starts t, reloads it sc.idleReloads times without load,
// then sc.reloads times under two loads at once, one of new-connection
// clients and one of keep-alive clients, and stops it. After each reload
// under load it waits until both loads have had answers again, so that
// every reload meets clients in both modes.
func reloadUnderLoad(ctx context.Context, sc serversConfig, t target, port int) (rs *reloadStats, err error) {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	defer func() {
		if serr := t.stop(); serr != nil && err == nil {
			err = fmt.Errorf("stop: %w", serr)
		}
	}()
	if err := t.start(ctx); err != nil {
		return nil, err
	}
	if _, err := waitServing(ctx, addr, 60*time.Second); err != nil {
		return nil, err
	}
	rs = &reloadStats{}
	for range sc.idleReloads {
		d, err := timedReload(ctx, t)
		if err != nil {
			return nil, err
		}
		rs.IdleMs = append(rs.IdleMs, d)
	}
	if _, err := waitServing(ctx, addr, 60*time.Second); err != nil {
		return nil, err
	}
	nc := loadtest.Options{Addr: addr, NewConn: sc.newConn, Timeout: 5 * time.Second}.Start()
	ka := loadtest.Options{Addr: addr, KeepAlive: sc.keepAlive, Timeout: 5 * time.Second}.Start()
	defer nc.Stop()
	defer ka.Stop()
	for i := range sc.reloads {
		if err := answeredAgain(ctx, nc, ka); err != nil {
			return nil, fmt.Errorf("before reload %d: %w", i+1, err)
		}
		d, err := timedReload(ctx, t)
		if err != nil {
			log.Printf("reload %d: %v", i+1, err)
			rs.FailedReloads++
		}
		rs.LoadedMs = append(rs.LoadedMs, d)
	}
	if err := answeredAgain(ctx, nc, ka); err != nil {
		return nil, fmt.Errorf("after the reloads: %w", err)
	}
	for _, m := range []struct {
		l  *loadtest.Load
		to *modeStats
	}{{nc, &rs.NewConn}, {ka, &rs.KeepAlive}} {
		m.l.Stop()
		c := m.l.Counts()
		*m.to = modeStats{OK: c.OK, Failed: c.Failed, Kinds: c.Kinds, Errs: c.Errs}
	}
	return rs, nil
}

// answeredAgain waits until each load has had 50 more answers.
func answeredAgain(ctx context.Context, loads ...*loadtest.Load) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, l := range loads {
		l.Mark()
		if _, err := l.Wait(ctx, func(c loadtest.Counts) bool { return c.SinceMark.OK >= 50 }); err != nil {
			return fmt.Errorf("no answers: %w", err)
		}
	}
	return nil
}

// timedReload reloads t and returns how long it took, in ms.
func timedReload(ctx context.Context, t target) (float64, error) {
	t0 := time.Now()
	err := t.reload(ctx)
	return ms(time.Since(t0)), err
}

// writeServers writes docs/servers.json and rewrites the table of
// docs/servers.md. Rows that did not run this time (-only) keep their
// earlier results from docs/servers.json.
func writeServers(root string, results []serverResult, command string) error {
	results = mergeResults(filepath.Join(root, "docs/servers.json"), results)
	b, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "docs/servers.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	page := filepath.Join(root, "docs/servers.md")
	old, err := os.ReadFile(page)
	if err != nil {
		return err
	}
	const begin, end = "<!-- servers table: go run ./bench -servers -->\n", "<!-- end of servers table -->\n"
	i, j := strings.Index(string(old), begin), strings.Index(string(old), end)
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %q ... %q markers", page, strings.TrimSpace(begin), strings.TrimSpace(end))
	}
	text := string(old[:i+len(begin)]) + serversTable(results, command) + string(old[j:])
	return os.WriteFile(page, []byte(text), 0o644)
}

// mergeResults returns the results of every case, in the page's order:
// those just measured, else those in the JSON file at path.
func mergeResults(path string, fresh []serverResult) []serverResult {
	var old []serverResult
	if b, err := os.ReadFile(path); err == nil {
		json.Unmarshal(b, &old)
	}
	var out []serverResult
	for _, c := range serverCases() {
		for _, set := range [][]serverResult{fresh, old} {
			i := slices.IndexFunc(set, func(r serverResult) bool { return r.Case.Name == c.Name })
			if i >= 0 {
				r := set[i]
				r.Case.Settings, r.Case.Known = c.Settings, c.Known
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// serversTable is the Markdown table of results.
func serversTable(results []serverResult, command string) string {
	var b strings.Builder
	b.WriteString("| server | settings under corral | new connection: failed / requests | keep-alive: failed / requests | reload ms: median unloaded, median and max under load | PM2 6: new connection, keep-alive failed / requests |\n")
	b.WriteString("|---|---|--:|--:|--:|--:|\n")
	for _, r := range results {
		c := r.Corral
		if c == nil {
			fmt.Fprintf(&b, "| %s | %s | – | – | – | error: %s |\n", r.Case.Name, r.Case.Settings, r.Err)
			continue
		}
		pm2 := "–"
		if r.PM2 != nil {
			pm2 = fmt.Sprintf("%s, %s", frac(r.PM2.NewConn), frac(r.PM2.KeepAlive))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.0f; %.0f, %.0f | %s |\n", r.Case.Name, r.Case.Settings,
			frac(c.NewConn), frac(c.KeepAlive), median(c.IdleMs), median(c.LoadedMs), slices.Max(append([]float64{0}, c.LoadedMs...)), pm2)
	}
	if len(results) > 0 {
		r := results[0]
		if r.Command != "" {
			command = r.Command
		}
		fmt.Fprintf(&b, "\n%d reloads under load per server, 2 workers, %d new-connection and %d keep-alive clients at once; measured by `%s` on %s, %s.\n",
			r.Reloads, r.NewConn, r.KeepAlive, command, r.StartedUTC[:10], describeCPU())
	}
	var others []string // commands of rows measured by another run
	byCommand := map[string][]string{}
	for _, r := range results {
		if r.Command != "" && r.Command != command {
			if byCommand[r.Command] == nil {
				others = append(others, r.Command)
			}
			byCommand[r.Command] = append(byCommand[r.Command], r.Case.Name)
		}
	}
	for _, c := range others {
		fmt.Fprintf(&b, "\nThese rows come from `%s`, run later: %s.\n", c, strings.Join(byCommand[c], "; "))
	}
	for _, r := range results {
		if r.Corral != nil && r.Corral.NewConn.Failed+r.Corral.KeepAlive.Failed > 0 {
			fmt.Fprintf(&b, "\n%s, failures: %s.", r.Case.Name, kinds(r.Corral))
			if r.Case.Known != "" {
				fmt.Fprintf(&b, " %s.", r.Case.Known)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func frac(m modeStats) string {
	return fmt.Sprintf("%d / %d", m.Failed, m.OK+m.Failed)
}

func kinds(rs *reloadStats) string {
	var parts []string
	for mode, m := range map[string]modeStats{"new connection": rs.NewConn, "keep-alive": rs.KeepAlive} {
		for k, n := range m.Kinds {
			parts = append(parts, fmt.Sprintf("%s %d %s", mode, n, k))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// describeCPU names the machine briefly for the table's footnote.
func describeCPU() string {
	m := describeMachine()
	return fmt.Sprintf("%s CPUs, %s", m["nproc"], m["kernel"])
}

// serversMain is the servers mode's main. With rewriteOnly it measures
// nothing and rewrites the table from docs/servers.json.
func serversMain(ctx context.Context, sc serversConfig, argv string, keep, rewriteOnly bool) error {
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "docs/servers.md")); err != nil {
		return errors.New("run it from corral's repository root: docs/servers.md not found")
	}
	if rewriteOnly {
		return writeServers(root, nil, "")
	}
	scratch, err := os.MkdirTemp("", "corral-servers-")
	if err != nil {
		return err
	}
	if keep {
		log.Printf("scratch directory (kept): %s", scratch)
	} else {
		defer os.RemoveAll(scratch)
	}
	compare := "none"
	if sc.pm2 {
		compare = "pm2"
	}
	e, err := setup(ctx, config{compare: compare, workers: 2}, root, scratch)
	if err != nil {
		return err
	}
	if err := buildNetHTTP(ctx, e); err != nil {
		return err
	}
	results := runServers(ctx, sc, e)
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range results {
		results[i].Command = "go run ./bench " + argv
	}
	return writeServers(root, results, "go run ./bench "+argv)
}

// buildNetHTTP builds examples/nethttp into the scratch directory.
func buildNetHTTP(ctx context.Context, e *env) error {
	out, err := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(e.scratch, "nethttp"), "./examples/nethttp").CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./examples/nethttp: %w: %s", err, out)
	}
	return nil
}
