package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// report is everything one run measured; results.json is this, verbatim.
type report struct {
	Command    string            `json:"command"`
	Started    string            `json:"started"`
	Seconds    float64           `json:"seconds"`
	Machine    map[string]string `json:"machine"`
	PM2Version string            `json:"pm2_version"`
	Config     map[string]any    `json:"config"`
	Summary    []row             `json:"summary"`
	Runs       []*runResult      `json:"runs"`
}

// row is one line of the summary table: a metric's median over rounds per
// target, and the ratios.
type row struct {
	Metric   string             `json:"metric"`
	Better   string             `json:"better"` // "higher" or "lower"
	Medians  map[string]float64 `json:"medians"`
	VsPM2    float64            `json:"corral_over_pm2,omitempty"`
	VsBare   float64            `json:"corral_over_bare,omitempty"`
	decimals int
}

// metrics lists the summary's rows: name, which way is better, decimals,
// and how to read it from one run (ok=false when the run has no such value).
var metrics = []struct {
	name, better string
	decimals     int
	get          func(r *runResult) (float64, bool)
}{
	{"new connection per request: req/s", "higher", 0, func(r *runResult) (float64, bool) { return r.NewConn.RPS, true }},
	{"new connection per request: p50 ms", "lower", 2, func(r *runResult) (float64, bool) { return r.NewConn.P50ms, true }},
	{"new connection per request: p99 ms", "lower", 2, func(r *runResult) (float64, bool) { return r.NewConn.P99ms, true }},
	{"keep-alive: req/s", "higher", 0, func(r *runResult) (float64, bool) { return r.KeepAlive.RPS, true }},
	{"keep-alive: p50 ms", "lower", 2, func(r *runResult) (float64, bool) { return r.KeepAlive.P50ms, true }},
	{"keep-alive: p99 ms", "lower", 2, func(r *runResult) (float64, bool) { return r.KeepAlive.P99ms, true }},
	{"failed requests at full load (both modes)", "lower", 0, func(r *runResult) (float64, bool) {
		return float64(r.NewConn.Failed + r.KeepAlive.Failed), true
	}},
	{"reloads: failed requests", "lower", 0, func(r *runResult) (float64, bool) {
		return rl(r, func(x *reloadResult) float64 { return float64(x.Load.Failed) })
	}},
	{"reloads: failed requests, new-connection clients", "lower", 0, func(r *runResult) (float64, bool) {
		return rl(r, func(x *reloadResult) float64 { return float64(x.ModeFailed[0]) })
	}},
	{"reloads: failed requests, keep-alive clients", "lower", 0, func(r *runResult) (float64, bool) {
		return rl(r, func(x *reloadResult) float64 { return float64(x.ModeFailed[1]) })
	}},
	{"reloads: req/s before", "higher", 0, func(r *runResult) (float64, bool) {
		return rl(r, func(x *reloadResult) float64 { return x.BaselineRPS })
	}},
	{"reloads: req/s during", "higher", 0, func(r *runResult) (float64, bool) { return rl(r, func(x *reloadResult) float64 { return x.DuringRPS }) }},
	{"reloads: req/s before, new-connection clients", "higher", 0, func(r *runResult) (float64, bool) {
		return rl(r, func(x *reloadResult) float64 { return x.ModeRPS[0][0] })
	}},
	{"reloads: req/s during, new-connection clients", "higher", 0, func(r *runResult) (float64, bool) {
		return rl(r, func(x *reloadResult) float64 { return x.ModeRPS[0][1] })
	}},
	{"reloads: req/s before, keep-alive clients", "higher", 0, func(r *runResult) (float64, bool) {
		return rl(r, func(x *reloadResult) float64 { return x.ModeRPS[1][0] })
	}},
	{"reloads: req/s during, keep-alive clients", "higher", 0, func(r *runResult) (float64, bool) {
		return rl(r, func(x *reloadResult) float64 { return x.ModeRPS[1][1] })
	}},
	{"reloads: connections opened by the keep-alive clients", "lower", 0, func(r *runResult) (float64, bool) {
		return rl(r, func(x *reloadResult) float64 { return float64(x.KeepAliveConns) })
	}},
	{"reloads: lowest req/s over 500 ms", "higher", 0, func(r *runResult) (float64, bool) { return rl(r, func(x *reloadResult) float64 { return x.MinRPS }) }},
	{"reloads: failed reload commands", "lower", 0, func(r *runResult) (float64, bool) {
		return rl(r, func(x *reloadResult) float64 { return float64(x.Failed) })
	}},
	{"reload duration: median ms", "lower", 0, func(r *runResult) (float64, bool) {
		return rl(r, func(x *reloadResult) float64 { return median(x.DurationsMs) })
	}},
	{"start to first response: ms", "lower", 0, func(r *runResult) (float64, bool) { return r.StartMs, true }},
	{"supervisor RSS: MiB", "lower", 1, func(r *runResult) (float64, bool) {
		return float64(r.SupervisorKB) / 1024, r.Target != "bare"
	}},
	{"total RSS of the tree: MiB", "lower", 1, func(r *runResult) (float64, bool) { return float64(r.TreeKB) / 1024, true }},
	{"processes in the tree", "lower", 0, func(r *runResult) (float64, bool) { return float64(r.Processes), true }},
	{"distribution at full load (new conn): max/min per worker", "lower", 2, func(r *runResult) (float64, bool) { return spread(r.NewConn), true }},
	{"distribution at full load (keep-alive): max/min per worker", "lower", 2, func(r *runResult) (float64, bool) { return spread(r.KeepAlive), true }},
	{"distribution at moderate load: max/min per worker", "lower", 2, func(r *runResult) (float64, bool) { return spread(r.Moderate), true }},
}

func rl(r *runResult, f func(*reloadResult) float64) (float64, bool) {
	if r.Reload == nil {
		return 0, false
	}
	return f(r.Reload), true
}

// spread is the busiest worker's count over the idlest one's; +Inf when a
// worker served nothing.
func spread(l *loadResult) float64 {
	var counts []float64
	for _, n := range l.PerPID {
		counts = append(counts, float64(n))
	}
	if len(counts) == 0 {
		return math.Inf(1)
	}
	return slices.Max(counts) / slices.Min(counts)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (rep *report) summarize() {
	rep.Summary = nil
	for _, m := range metrics {
		r := row{Metric: m.name, Better: m.better, Medians: map[string]float64{}, decimals: m.decimals}
		by := map[string][]float64{}
		for _, run := range rep.Runs {
			if v, ok := m.get(run); ok {
				by[run.Target] = append(by[run.Target], v)
			}
		}
		for t, vs := range by {
			r.Medians[t] = median(vs)
		}
		r.VsPM2 = ratio(r.Medians, "pm2")
		r.VsBare = ratio(r.Medians, "bare")
		rep.Summary = append(rep.Summary, r)
	}
}

func ratio(m map[string]float64, other string) float64 {
	a, okA := m["corral"]
	b, okB := m[other]
	if !okA || !okB || b == 0 || math.IsInf(a, 0) || math.IsInf(b, 0) {
		return 0
	}
	return a / b
}

// write puts results.json, README.md and reload.png into dir.
func (rep *report) write(dir string) error {
	rep.summarize()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	js, err := json.MarshalIndent(sanitize(rep), "", "  ")
	if err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := writeChart(filepath.Join(dir, "reload.png"), rep); err != nil {
		return fmt.Errorf("write chart: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte(rep.markdown()), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	fmt.Printf("results in %s\n", dir)
	return nil
}

// sanitize round-trips rep with +Inf and NaN (which JSON cannot hold) as -1.
func sanitize(rep *report) *report {
	for i := range rep.Summary {
		for k, v := range rep.Summary[i].Medians {
			if math.IsInf(v, 0) || math.IsNaN(v) {
				rep.Summary[i].Medians[k] = -1
			}
		}
	}
	return rep
}

var targetOrder = []string{"corral", "pm2", "bare", "corral-go"}

func (rep *report) markdown() string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# corral vs PM2 cluster mode\n\n")
	if rep.Config["smoke"] == true {
		p("**Smoke run: these figures check the harness and measure nothing.**\n\n")
	}
	p("The same Node app ([examples/pm2-app/app.js](../../examples/pm2-app/app.js)), %v workers, on one machine, in one run:\n\n", rep.Config["workers"])
	p("- **corral**: `corral run -i %v --listen 127.0.0.1:PORT -- node app.js` (Node IPC channel, listen preload);\n", rep.Config["workers"])
	p("- **pm2**: PM2 %s, `pm2 start app.js -i %v --wait-ready`, `pm2 reload`;\n", rep.PM2Version, rep.Config["workers"])
	p("- **bare** (the ceiling): the same workers on one shared socket started by hand, no supervisor;\n")
	p("- **corral-go**: `corral run -i %v -- hello` ([examples/hello](../../examples/hello)), corral with a faster worker.\n\n", rep.Config["workers"])
	p("Medians over %v interleaved rounds (corral, pm2, bare, corral-go, then again). ", rep.Config["rounds"])
	p("Full load: %v clients for %vs per mode; moderate load: %v req/s, new connection per request. ", rep.Config["clients"], rep.Config["phase_seconds"], rep.Config["moderate_rps"])
	p("Reloads: %v back-to-back reloads, each until the reload command returns, under a mixed load (%v clients with a new connection per request and %v keep-alive clients; POST, which HTTP clients never retry by themselves); a failed request is a connection error, a timeout (5 s) or a non-2xx status.\n\n", rep.Config["reloads"], rep.Config["reload_clients"], rep.Config["reload_clients"])
	p("| metric | corral | PM2 | corral/PM2 | bare | corral/bare | corral-go |\n|---|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range rep.Summary {
		p("| %s (%s is better) | %s | %s | %s | %s | %s | %s |\n", r.Metric, r.Better,
			cell(r, "corral"), cell(r, "pm2"), rat(r.VsPM2), cell(r, "bare"), rat(r.VsBare), cell(r, "corral-go"))
	}
	p("\n![requests/s and failed requests/s during back-to-back reloads](reload.png)\n\n")
	p("Requests served per second (thick) and failed per second (thin, same axis) during the reload scenario of the last round, over 500 ms windows: corral blue, PM2 orange, failures of each in red (PM2) and purple (corral). The strips under the time axis show when the reloads ran, in each target's colour. \n\n")
	p("How the reload commands differ: `corral reload` returns when the new generation serves every slot, while the replaced workers may still be draining (for up to about 1 s); `pm2 reload` returns after the old processes have exited. Back-to-back corral reloads therefore overlap the drains of earlier generations.\n\n")
	p("How to read the figures:\n\n")
	p("- New connection per request: PM2's cluster master accepts every connection and hands it to a worker; under corral (and bare) the workers accept from the shared socket themselves. With the load generator on the same 2 cores, corral, bare and corral-go come out close to one another: the client and the kernel's connection setup are the limit there, so corral/bare swings by about ±15%% from run to run.\n")
	p("- Keep-alive: once a connection is open, PM2's master is no longer in its path, so the two are close.\n")
	p("- Reloads: the app is written as PM2's docs teach: on `'shutdown'` (or SIGINT under PM2) it calls `server.close()` and exits in the callback. Under PM2, Node's `close()` cuts idle keep-alive connections under requests on their way; under corral, the preload's drain answers them with `Connection: close` and closes idle connections only after 1 s, so keep-alive clients reconnect to a new worker after a response. The row \"connections opened by the keep-alive clients\" shows how often they had to; each reconnection is a new-connection request. Under corral, back-to-back reloads overlap the old workers' drains, so more processes share the 2 cores during the reload scenario than under PM2.\n")
	p("- Distribution with keep-alive depends on which worker accepted each of a few long-lived connections, so it varies a lot between rounds (see results.json).\n\n")
	p("## Machine\n\n")
	for _, k := range []string{"cpu", "nproc", "memory", "kernel", "os", "go", "node", "wrk"} {
		if v, ok := rep.Machine[k]; ok {
			p("- %s: %s\n", k, v)
		}
	}
	p("\nLoad generator and servers share the same cores, over loopback: compare the columns, not the absolute figures with another machine.\n\n")
	p("## Command\n\n    %s\n\nfrom the repository root; it took %.0f s. The raw figures of every round, with the failure kinds and the per-worker counts, are in [results.json](results.json).\n", rep.Command, rep.Seconds)
	return b.String()
}

func cell(r row, t string) string {
	v, ok := r.Medians[t]
	switch {
	case !ok:
		return "–"
	case math.IsInf(v, 0) || v < 0:
		return "∞"
	}
	return fmt.Sprintf("%.*f", r.decimals, v)
}

func rat(v float64) string {
	if v == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", v)
}

// describeMachine gathers what the results page says about the machine.
func describeMachine() map[string]string {
	m := map[string]string{"nproc": fmt.Sprint(runtime.NumCPU()), "go": runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m["memory"] = strings.Join(strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1:], " ")
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m["os"] = strings.Trim(v, `"`)
			}
		}
	}
	for k, argv := range map[string][]string{"kernel": {"uname", "-sr"}, "node": {"node", "--version"}} {
		if out, err := exec.Command(argv[0], argv[1:]...).Output(); err == nil {
			m[k] = strings.TrimSpace(string(out))
		}
	}
	return m
}
