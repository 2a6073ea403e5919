package apps

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/corraldev/corral/workers"
)

// Worker is one worker of an app, with what /proc says of it and its
// descendants.
type Worker struct {
	workers.WorkerStatus
	UptimeSeconds float64 `json:"uptime_seconds"`
	CPUPercent    float64 `json:"cpu_percent"` // of one CPU, the worker and its descendants
	RSSBytes      uint64  `json:"rss_bytes"`   // the worker and its descendants
}

// Status is an app and its worker table, as `corral status NAME` shows it.
type Status struct {
	Info
	Workers []Worker `json:"workers"`
}

// Status returns the app name and, while it runs, its workers. An unknown
// name is an error that lists the names that exist.
func (m *Manager) Status(ctx context.Context, name string) (Status, error) {
	a, err := m.find(ctx, name)
	if err != nil {
		return Status{}, err
	}
	info, err := m.info(ctx, a)
	if err != nil {
		return Status{}, err
	}
	procs0, t0 := readProcs(), time.Now()
	infos := []Info{info}
	m.sampleCPU(ctx, infos)
	procs1, t1 := readProcs(), time.Now()
	st := Status{Info: infos[0]}
	if p, err := m.unitProps(ctx, st.Unit); err == nil {
		st.Enabled = p.str("UnitFileState")
	}
	if info.Corral == nil {
		return st, nil
	}
	for _, w := range info.Corral.Workers {
		tree := procs1.tree(w.PID)
		c0, _ := procs0.sum(tree)
		c1, rss := procs1.sum(tree)
		wk := Worker{WorkerStatus: w, RSSBytes: rss, UptimeSeconds: time.Since(w.Started).Round(time.Second).Seconds()}
		if c1 >= c0 {
			wk.CPUPercent = percent(c1-c0, t1.Sub(t0))
		}
		st.Workers = append(st.Workers, wk)
	}
	return st, nil
}

// LogsOptions say which journal lines Logs shows.
type LogsOptions struct {
	Follow bool
	Lines  int    // the last N lines; 0 means journalctl's default when not following
	Since  string // journalctl's --since: "1h ago", "today", "2026-11-25 10:00"
	// Worker, a slot such as "1", shows that worker's output alone, in
	// every generation: the journal identifier NAME/SLOT that corral gives
	// each worker's stream. "" shows everything.
	Worker string
}

// JournalCommand returns the journalctl command line that shows the app's
// journal: its service's and its socket's lines, corral's and the
// workers'. journalctl is the journal's own reader.
func (m *Manager) JournalCommand(ctx context.Context, name string, opts LogsOptions) ([]string, error) {
	a, err := m.find(ctx, name)
	if err != nil {
		return nil, err
	}
	args := m.journalArgs(UnitsOf(a.template, a.name), opts)
	if opts.Worker != "" {
		args = append(args, "-t", a.name+"/"+opts.Worker)
	}
	return args, nil
}

func (m *Manager) journalArgs(units Units, opts LogsOptions) []string {
	args := []string{"journalctl", "--no-pager"}
	if m.scope == User {
		args = append(args, "--user")
	}
	args = append(args, "-u", units.Service, "-u", units.Socket)
	if opts.Lines > 0 {
		args = append(args, "-n", strconv.Itoa(opts.Lines))
	}
	if opts.Follow {
		args = append(args, "-f")
	}
	if opts.Since != "" {
		args = append(args, "--since", opts.Since)
	}
	return args
}

// journalTail returns the last n lines of the service's journal, without
// their prefixes; none when journalctl cannot read it.
func (m *Manager) journalTail(ctx context.Context, units Units, n int) []string {
	args := m.journalArgs(Units{Service: units.Service, Socket: units.Service}, LogsOptions{Lines: n})
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], append(args[1:], "-o", "cat")...).Output()
	if err != nil {
		return nil
	}
	s := strings.TrimRight(string(out), "\n")
	if s == "" || s == "-- No entries --" {
		return nil
	}
	return strings.Split(s, "\n")
}
