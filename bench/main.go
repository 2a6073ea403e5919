// Command bench runs corral and PM2 cluster mode side by side on the same
// Node app, on the same machine, in one run, and writes the results
// (Markdown, JSON and a PNG chart) to docs/benchmarks/.
//
//	go run ./bench -compare pm2           # the full run, under 10 minutes on 2 cores
//	go run ./bench -compare pm2 -smoke    # every scenario for a moment, for CI
//
// Run it from the repository root. It builds corral and examples/hello,
// installs PM2 (pinned) with npm into a scratch directory, and measures, for
// N workers of examples/pm2-app/app.js:
//
//   - corral: `corral run -i N -- node app.js` (Node IPC channel and listen preload);
//   - pm2: `pm2 start app.js -i N --wait-ready`, with PM2_HOME in the scratch directory;
//   - bare: the same workers on a shared socket started by hand, no supervisor (the ceiling);
//   - corral-go: `corral run -i N -- hello`, the Go example, for corral's cost with a faster worker.
//
// Targets run interleaved (corral, pm2, bare, corral-go, then again) for
// several rounds, so that drift of the machine spreads over all of them;
// the report gives medians over rounds. The load comes from corral's load
// generator, internal/loadtest: it counts every failure and which worker
// answered (the app puts its PID in the body). Loopback only. Every process
// it starts is ended by PID when it is done with it, and on SIGINT/SIGTERM.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/corraldev/corral/internal/loadtest"
)

// pm2Version is the PM2 the comparison installs: the newest 6.x, which
// supports Node >= 18.
const pm2Version = "6.0.14"

// config holds the knobs of one run; defaults are the full run's.
type config struct {
	compare  string
	smoke    bool
	rounds   int
	reloads  int
	workers  int
	clients  int
	duration time.Duration // each full-load phase
	moderate float64       // requests/s for the moderate-load distribution
	out      string
	keep     bool
}

func main() {
	var c config
	flag.StringVar(&c.compare, "compare", "pm2", "what to compare corral with: pm2, or none (corral, bare and corral-go only)")
	flag.BoolVar(&c.smoke, "smoke", false, "run every scenario for a moment (CI): checks the harness, measures nothing")
	flag.IntVar(&c.rounds, "rounds", 3, "interleaved rounds per target")
	flag.IntVar(&c.reloads, "reloads", 20, "back-to-back reloads in the reload scenario")
	flag.IntVar(&c.workers, "workers", 2, "workers per target")
	flag.IntVar(&c.clients, "clients", 16, "concurrent clients at full load")
	flag.DurationVar(&c.duration, "duration", 4*time.Second, "length of each full-load phase")
	flag.Float64Var(&c.moderate, "moderate", 300, "requests/s of the moderate load")
	flag.StringVar(&c.out, "out", "", "directory for the results (default docs/benchmarks, or a temporary directory with -smoke)")
	flag.BoolVar(&c.keep, "keep", false, "keep the scratch directory (logs of every process)")
	from := flag.String("from", "", "measure nothing: rewrite the results page and chart in -out from this results.json (with -servers: rewrite docs/servers.md's table from docs/servers.json; any value)")
	servers := flag.Bool("servers", false, "measure the servers of docs/servers.md under corral (and PM2 with -compare pm2) and rewrite its table")
	only := flag.String("only", "", "with -servers: run only the servers whose names contain one of these comma-separated words")
	flag.Parse()
	if *servers {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		sc := serversConfig{reloads: c.reloads, idleReloads: 3, newConn: 4, keepAlive: 4, pm2: c.compare == "pm2"}
		if *only != "" {
			sc.only = strings.Split(*only, ",")
		}
		if err := serversMain(ctx, sc, strings.Join(os.Args[1:], " "), c.keep, *from != ""); err != nil {
			log.Fatalf("bench: %v", err)
		}
		return
	}
	if c.smoke {
		c.rounds, c.reloads, c.duration, c.clients = 1, 2, 300*time.Millisecond, 4
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *from != "" {
		if err := rewrite(*from, c.out); err != nil {
			log.Fatalf("bench: %v", err)
		}
		return
	}
	if err := run(ctx, c, strings.Join(os.Args[1:], " ")); err != nil {
		log.Fatalf("bench: %v", err)
	}
}

func run(ctx context.Context, c config, argv string) error {
	if c.compare != "pm2" && c.compare != "none" {
		return fmt.Errorf("-compare %q: want pm2 or none", c.compare)
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "examples/pm2-app/app.js")); err != nil {
		return errors.New("run it from corral's repository root: examples/pm2-app/app.js not found")
	}
	if c.out == "" {
		c.out = filepath.Join(root, "docs/benchmarks")
		if c.smoke {
			if c.out, err = os.MkdirTemp("", "corral-bench-out-"); err != nil {
				return err
			}
		}
	}
	scratch, err := os.MkdirTemp("", "corral-bench-")
	if err != nil {
		return err
	}
	if c.keep {
		log.Printf("scratch directory (kept): %s", scratch)
	} else {
		defer os.RemoveAll(scratch)
	}
	e, err := setup(ctx, c, root, scratch)
	if err != nil {
		return err
	}
	began := time.Now()
	rep := &report{Command: "go run ./bench " + argv, Machine: describeMachine(), PM2Version: pm2Version, Config: c.public(), Started: began.UTC().Format(time.RFC3339)}
	names := []string{"corral", "pm2", "bare", "corral-go"}
	if c.compare == "none" {
		names = []string{"corral", "bare", "corral-go"}
	}
	for r := 1; r <= c.rounds; r++ {
		for _, name := range names {
			log.Printf("round %d/%d: %s", r, c.rounds, name)
			res, err := measure(ctx, c, e, name, r)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r, name, err)
			}
			rep.Runs = append(rep.Runs, res)
		}
	}
	rep.Seconds = time.Since(began).Seconds()
	return rep.write(c.out)
}

// setup builds corral and the Go example and installs PM2.
func setup(ctx context.Context, c config, root, scratch string) (*env, error) {
	e := &env{root: root, scratch: scratch, workers: c.workers,
		corral: filepath.Join(scratch, "corral"), hello: filepath.Join(scratch, "hello"),
		app: filepath.Join(root, "examples/pm2-app/app.js"), preload: filepath.Join(root, "node/corral-preload.js")}
	for _, b := range [][2]string{{e.corral, "./cmd/corral"}, {e.hello, "./examples/hello"}} {
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", b[0], b[1]).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %w: %s", b[1], err, out)
		}
	}
	if c.compare != "pm2" {
		return e, nil
	}
	dir := filepath.Join(scratch, "npm")
	os.MkdirAll(dir, 0o755)
	log.Printf("installing pm2@%s into %s", pm2Version, dir)
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", dir, "pm2@"+pm2Version)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("npm install pm2@%s: %w: %s", pm2Version, err, out)
	}
	e.pm2 = filepath.Join(dir, "node_modules/.bin/pm2")
	return e, nil
}

// runResult is what one target did in one round.
type runResult struct {
	Target       string        `json:"target"`
	Round        int           `json:"round"`
	StartMs      float64       `json:"start_to_serving_ms"`
	SupervisorKB int           `json:"supervisor_rss_kb"`
	TreeKB       int           `json:"tree_rss_kb"`
	Processes    int           `json:"processes"`
	NewConn      *loadResult   `json:"new_connection"`
	KeepAlive    *loadResult   `json:"keep_alive"`
	Moderate     *loadResult   `json:"moderate"`
	Reload       *reloadResult `json:"reload,omitempty"`
}

// reloadResult is the reload scenario: back-to-back reloads under load.
type reloadResult struct {
	Reloads     int       `json:"reloads"`
	Failed      int       `json:"failed_reloads"`
	DurationsMs []float64 `json:"durations_ms"`
	BaselineRPS float64   `json:"baseline_rps"`
	DuringRPS   float64   `json:"during_rps"`
	MinRPS      float64   `json:"min_rps_500ms"`
	ReloadStart float64   `json:"reloads_start_s"`
	ReloadEnd   float64   `json:"reloads_end_s"`
	// ModeRPS is req/s before and during the reloads, of the
	// new-connection clients ([0]) and of the keep-alive ones ([1]).
	ModeRPS [2][2]float64 `json:"mode_rps_before_during"`
	// ModeFailed is the failed requests of the new-connection clients
	// ([0]) and of the keep-alive ones ([1]).
	ModeFailed [2]int64 `json:"mode_failed"`
	// KeepAliveConns is how many connections the keep-alive clients
	// opened over the whole scenario (one each when nothing closes them).
	KeepAliveConns int64       `json:"keep_alive_connections"`
	Load           *loadResult `json:"load"`
}

// measure starts one target, runs every scenario on it and stops it.
func measure(ctx context.Context, c config, e *env, name string, round int) (res *runResult, err error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.scratch, fmt.Sprintf("%s-%d", name, round))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var t target
	switch name {
	case "corral":
		t = newCorral(e, dir, port, "node", e.app)
	case "corral-go":
		t = newCorral(e, dir, port, e.hello)
	case "pm2":
		t = &pm2Target{e: e, dir: dir, port: port}
	case "bare":
		t = &bareTarget{e: e, dir: dir, port: port}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	res = &runResult{Target: name, Round: round}

	served := make(chan error, 1)
	var servedAt time.Time
	began := time.Now()
	go func() {
		var err error
		servedAt, err = waitServing(ctx, addr, 30*time.Second)
		served <- err
	}()
	defer func() {
		if serr := t.stop(); serr != nil && err == nil {
			err = fmt.Errorf("stop: %w", serr)
		}
	}()
	if err := t.start(ctx); err != nil {
		<-served
		return nil, err
	}
	if err := <-served; err != nil {
		return nil, err
	}
	res.StartMs = ms(servedAt.Sub(began))

	full := loadSpec{addr: addr, clients: c.clients}
	timed(ctx, c.duration/4, full) // warm-up: every worker online, JIT warm
	res.NewConn = timed(ctx, c.duration, full)
	ka := full
	ka.keepAlive = true
	res.KeepAlive = timed(ctx, c.duration, ka)
	res.Moderate = timed(ctx, c.duration/2, loadSpec{addr: addr, clients: 8, rate: c.moderate})
	pids := tree(t.roots()...)
	res.Processes, res.TreeKB = len(pids), sumRSS(pids)
	if sup := t.supervisor(); sup > 0 {
		res.SupervisorKB = rssKB(sup)
	}
	if name != "bare" {
		if res.Reload, err = reloads(ctx, c, t, addr); err != nil {
			return nil, err
		}
	}
	return res, ctx.Err()
}

// timed runs load for d.
func timed(ctx context.Context, d time.Duration, s loadSpec) *loadResult {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return runLoad(ctx, s)
}

// reloads runs c.reloads back-to-back reloads under a mixed load (a quarter
// of c.clients open a connection per request, a quarter keep one alive),
// after a second of the same load as the baseline.
func reloads(ctx context.Context, c config, t target, addr string) (*reloadResult, error) {
	half := max(c.clients/4, 1) // of each kind: half the full load in all
	var loads [2]*loadtest.Load
	for i, ka := range []bool{false, true} {
		loads[i] = loadSpec{addr: addr, clients: half, keepAlive: ka}.start()
		defer loads[i].Stop()
	}
	began := time.Now()
	baseline := time.Second
	if c.smoke {
		baseline = 200 * time.Millisecond
	}
	rr := &reloadResult{Reloads: c.reloads}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(baseline):
	}
	rr.ReloadStart = time.Since(began).Seconds()
	for range c.reloads {
		t0 := time.Now()
		if err := t.reload(ctx); err != nil {
			log.Printf("reload: %v", err)
			rr.Failed++
		}
		rr.DurationsMs = append(rr.DurationsMs, ms(time.Since(t0)))
	}
	rr.ReloadEnd = time.Since(began).Seconds()
	select {
	case <-ctx.Done():
	case <-time.After(baseline / 2):
	}
	modes := [2]*loadResult{result(loads[0].Report()), result(loads[1].Report())}
	rr.Load = merge(modes[0], modes[1])
	rr.stats()
	rr.KeepAliveConns = modes[1].Conns
	rr.ModeFailed = [2]int64{modes[0].Failed, modes[1].Failed}
	for i, m := range modes {
		from, to := int(rr.ReloadStart*10), int(rr.ReloadEnd*10)
		rr.ModeRPS[i] = [2]float64{windowRPS(m.BucketOK, 0, from), windowRPS(m.BucketOK, from, to)}
	}
	return rr, ctx.Err()
}

// merge adds two load runs that ran at the same time.
func merge(a, b *loadResult) *loadResult {
	m := &loadResult{Seconds: max(a.Seconds, b.Seconds), OK: a.OK + b.OK, Failed: a.Failed + b.Failed, Conns: a.Conns + b.Conns,
		Kinds: map[string]int64{}, PerPID: map[int]int64{}, P50ms: max(a.P50ms, b.P50ms), P99ms: max(a.P99ms, b.P99ms)}
	m.RPS = float64(m.OK) / m.Seconds
	for _, r := range []*loadResult{a, b} {
		for k, v := range r.Kinds {
			m.Kinds[k] += v
		}
		for k, v := range r.PerPID {
			m.PerPID[k] += v
		}
	}
	n := max(len(a.BucketOK), len(b.BucketOK))
	m.BucketOK, m.BucketKO = make([]int64, n), make([]int64, n)
	for i := range n {
		for _, r := range []*loadResult{a, b} {
			if i < len(r.BucketOK) {
				m.BucketOK[i] += r.BucketOK[i]
				m.BucketKO[i] += r.BucketKO[i]
			}
		}
	}
	return m
}

// stats fills in the throughput before and during the reloads from the
// 100ms buckets.
func (rr *reloadResult) stats() {
	b := rr.Load.BucketOK
	from, to := int(rr.ReloadStart*10), min(int(rr.ReloadEnd*10), len(b))
	rr.BaselineRPS, rr.DuringRPS = windowRPS(b, 0, from), windowRPS(b, from, to)
	rr.MinRPS = -1
	for i := from; i+5 <= to; i += 5 {
		v := float64(sum(b[i:i+5])) * 2
		if rr.MinRPS < 0 || v < rr.MinRPS {
			rr.MinRPS = v
		}
	}
	if rr.MinRPS < 0 {
		rr.MinRPS = rr.DuringRPS
	}
}

// windowRPS is the rate in 100ms buckets [from, to).
func windowRPS(buckets []int64, from, to int) float64 {
	to = min(to, len(buckets))
	if to <= from {
		return 0
	}
	return float64(sum(buckets[from:to])) / (float64(to-from) / 10)
}

func sum(xs []int64) int64 {
	var n int64
	for _, x := range xs {
		n += x
	}
	return n
}

func (c config) public() map[string]any {
	return map[string]any{"compare": c.compare, "smoke": c.smoke, "rounds": c.rounds, "reloads": c.reloads,
		"workers": c.workers, "clients": c.clients, "reload_clients": max(c.clients/4, 1), "phase_seconds": c.duration.Seconds(), "moderate_rps": c.moderate}
}

// rewrite writes the results page, JSON and chart in dir again from the
// results.json of an earlier run.
func rewrite(from, dir string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return fmt.Errorf("rewrite: %w", err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("rewrite: %s: %w", from, err)
	}
	if dir == "" {
		dir = filepath.Dir(from)
	}
	return rep.write(dir)
}
