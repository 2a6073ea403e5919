package apps

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/corraldev/corral/control"
	"github.com/corraldev/corral/workers"
)

// Info is one app as `corral ls` shows it.
type Info struct {
	Name     string `json:"name"`
	Template string `json:"template"`
	Unit     string `json:"unit"`
	// State is systemd's ActiveState of the service (activating, active,
	// reloading, deactivating, inactive, failed), "auto-restart" while
	// systemd waits to restart it, "reloading" while corral replaces the
	// workers, and "failed" for a service that stopped after it failed.
	State    string `json:"state"`
	SubState string `json:"sub_state"`
	// Enabled is the service's UnitFileState (enabled, disabled, ...),
	// in Status only: List reads no more than it shows.
	Enabled   string `json:"enabled,omitempty"`
	Online    int    `json:"online"`
	Instances int    `json:"instances"`
	// Generation counts the app's releases: 1 at start, +1 per reload.
	Generation int `json:"generation"`
	// Restarts are the workers corral restarted after a crash, plus the
	// times systemd restarted corral (ServiceRestarts, NRestarts).
	Restarts        int       `json:"restarts"`
	ServiceRestarts int       `json:"service_restarts"`
	MainPID         int       `json:"pid"`
	Since           time.Time `json:"since,omitzero"`
	UptimeSeconds   float64   `json:"uptime_seconds"`
	CPUPercent      float64   `json:"cpu_percent"` // of one CPU, over the sample
	MemoryBytes     uint64    `json:"memory_bytes"`
	// MemorySource says where MemoryBytes comes from: "systemd" (the
	// unit's cgroup) or "proc" (the sum of its processes).
	MemorySource string                `json:"memory_source"`
	Listen       []string              `json:"listen"`
	LastReload   *workers.ReloadResult `json:"last_reload"`
	Status       string                `json:"status"` // the service's status text
	// Corral is corral's own view, from its control socket, when it
	// runs; nil otherwise.
	Corral *workers.Status `json:"-"`
	// Record tells whether corral start made the app.
	Record bool `json:"started_by_corral"`

	cgroup string
	pids   []int // in the cgroup, when read from /proc
	cpu0   uint64
	cpuOK  bool
	at0    time.Time
}

// cpuSample is how long List measures CPU use: short enough that `corral
// ls` answers at once, long enough for a percentage to mean something.
const cpuSample = 100 * time.Millisecond

// List returns every app of the manager, sorted by name: those with a
// record of Start, and every instance of a template whose service runs
// `corral run`, such as those of `corral units --template`, that systemd
// has loaded and that is not inactive.
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	found, err := m.discover(ctx)
	if err != nil {
		return nil, err
	}
	infos := make([]Info, len(found))
	errs := make([]error, len(found))
	var wg sync.WaitGroup
	for i, a := range found {
		wg.Go(func() { infos[i], errs[i] = m.info(ctx, a) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	m.sampleCPU(ctx, infos)
	return infos, nil
}

// Info returns one app, with its CPU use sampled over cpuSample. An
// unknown name is an error that lists the names that exist.
func (m *Manager) Info(ctx context.Context, name string) (Info, error) {
	a, err := m.find(ctx, name)
	if err != nil {
		return Info{}, err
	}
	info, err := m.info(ctx, a)
	if err != nil {
		return Info{}, err
	}
	infos := []Info{info}
	m.sampleCPU(ctx, infos)
	return infos[0], nil
}

// found is an app that discover found.
type found struct {
	name, template string
	record         bool
	failure        string   // the record's LastFailure
	listen         []string // the record's Listen
	// listed says that discover listed the loaded units: then unit is the
	// service's state, or nil when systemd has not loaded it.
	listed bool
	unit   *sdbus.UnitStatus
}

// discover finds the apps: records, and the loaded instances of templates
// whose service runs corral run.
func (m *Manager) discover(ctx context.Context) ([]found, error) {
	names, err := m.records()
	if err != nil {
		return nil, err
	}
	units, err := m.conn.ListUnitsByPatternsContext(ctx, nil, []string{"*@*.service"})
	if err != nil {
		return nil, fmt.Errorf("list units: %w", err)
	}
	loaded := make(map[string]*sdbus.UnitStatus, len(units))
	for i, u := range units {
		if u.LoadState == "loaded" {
			loaded[u.Name] = &units[i]
		}
	}
	byName := make(map[string]found)
	for _, n := range names {
		r, err := m.readRecord(n)
		if err != nil {
			return nil, err
		}
		byName[n] = found{name: n, template: r.Template, record: true, failure: r.LastFailure, listen: r.Listen,
			listed: true, unit: loaded[UnitsOf(r.Template, n).Service]}
	}
	corralTemplates := make(map[string]bool)
	for _, u := range units {
		tmpl, name, ok := splitInstance(u.Name, ".service")
		// A loaded unit that is inactive and has no record is one systemd
		// will unload: a deleted app, or one stopped by hand.
		if !ok || loaded[u.Name] == nil || u.ActiveState == "inactive" {
			continue
		}
		if f, seen := byName[name]; seen && f.template == tmpl {
			continue
		}
		is, known := corralTemplates[tmpl]
		if !known {
			p, err := m.typeProps(ctx, u.Name, "Service")
			if err != nil {
				continue // unloaded meanwhile
			}
			is = runsCorral(p.execStart())
			corralTemplates[tmpl] = is
		}
		if is {
			key := name
			if _, clash := byName[key]; clash {
				key = tmpl + "@" + name // the same name under two templates
			}
			byName[key] = found{name: name, template: tmpl, listed: true, unit: loaded[u.Name]}
		}
	}
	out := make([]found, 0, len(byName))
	for _, f := range byName {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].name != out[j].name {
			return out[i].name < out[j].name
		}
		return out[i].template < out[j].template
	})
	return out, nil
}

// runsCorral reports whether a service's command is `corral run`.
func runsCorral(argv []string) bool {
	return len(argv) > 1 && filepath.Base(argv[0]) == "corral" && argv[1] == "run"
}

// ErrUnknown means no app has the name.
var ErrUnknown = errors.New("no such app")

// find returns the app name, or an error wrapping ErrUnknown that lists
// the names there are.
func (m *Manager) find(ctx context.Context, name string) (found, error) {
	if err := CheckName(name); err != nil {
		return found{}, badInput(err)
	}
	all, err := m.discover(ctx)
	if err != nil {
		return found{}, err
	}
	var names []string
	for _, f := range all {
		if f.name == name {
			return f, nil
		}
		names = append(names, f.name)
	}
	if len(names) == 0 {
		return found{}, fmt.Errorf("%w %q: the %s manager runs no corral app (corral start creates one)", ErrUnknown, name, m.scope)
	}
	return found{}, fmt.Errorf("%w %q under the %s manager; the apps are: %s", ErrUnknown, name, m.scope, strings.Join(slices.Compact(names), ", "))
}

// info reads one app's properties from systemd and corral. An app that
// discover found not loaded is not loaded for this: it is inactive.
func (m *Manager) info(ctx context.Context, f found) (Info, error) {
	units := UnitsOf(f.template, f.name)
	info := Info{Name: f.name, Template: f.template, Unit: units.Service, Record: f.record}
	if f.listed && f.unit == nil {
		info.State, info.Listen = "inactive", f.listen
		if f.failure != "" {
			info.State, info.Status = "failed", f.failure
		}
		return info, nil
	}
	var svc props
	var err error
	if f.listed {
		svc, err = m.typeProps(ctx, units.Service, "Service")
		if err == nil {
			svc["ActiveState"], svc["SubState"] = f.unit.ActiveState, f.unit.SubState
		}
	} else {
		svc, err = m.serviceProps(ctx, units.Service)
	}
	if err != nil {
		return info, err
	}
	if l, err := m.conn.GetUnitTypePropertyContext(ctx, units.Socket, "Socket", "Listen"); err == nil {
		info.Listen = props{"Listen": l.Value.Value()}.listens()
	}
	info.State, info.SubState, info.Enabled = svc.str("ActiveState"), svc.str("SubState"), svc.str("UnitFileState")
	info.Status = svc.str("StatusText")
	if pid, ok := svc.u64("MainPID"); ok {
		info.MainPID = int(pid)
	}
	if n, ok := svc.u64("NRestarts"); ok {
		info.ServiceRestarts = int(n)
	}
	switch {
	case info.SubState == "auto-restart":
		info.State = "auto-restart"
	case info.State == "inactive" && (f.failure != "" || svc.str("Result") != "" && svc.str("Result") != "success"):
		info.State = "failed"
		if f.failure != "" {
			info.Status = f.failure
		}
	}
	info.cgroup = svc.str("ControlGroup")
	if info.State == "active" || info.State == "reloading" {
		info.Since = svc.time("ExecMainStartTimestamp")
		info.UptimeSeconds = time.Since(info.Since).Round(time.Second).Seconds()
		info.Corral = m.workerStatus(ctx, svc)
	}
	info.at0 = time.Now()
	if info.cpu0, info.cpuOK = svc.u64("CPUUsageNSec"); !info.cpuOK {
		info.pids = cgroupPIDs(info.cgroup)
		info.cpu0, _ = sumProcs(info.pids)
	}
	if mem, ok := svc.u64("MemoryCurrent"); ok {
		info.MemoryBytes, info.MemorySource = mem, "systemd"
	}
	info.Restarts = info.ServiceRestarts
	if st := info.Corral; st != nil {
		info.Online, info.Instances, info.Generation = st.Online, st.Instances, st.Generation
		info.Restarts += st.Restarts
		info.LastReload = st.LastReload
		if st.State == "reloading" {
			info.State = "reloading"
		}
	}
	return info, nil
}

// workerStatus asks the app's corral for its status over its control
// socket, in the service's RuntimeDirectory=; nil when it does not answer.
func (m *Manager) workerStatus(ctx context.Context, svc props) *workers.Status {
	dirs := svc.strs("RuntimeDirectory")
	if len(dirs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := control.Status(ctx, filepath.Join(m.paths.Runtime, dirs[0], "control.sock"))
	if err != nil {
		return nil
	}
	return &st
}

// sampleCPU fills in the CPU use of infos from a second reading at least
// cpuSample after the first of them, and the memory that systemd could
// not give: from systemd's CPUUsageNSec where it has one, else from the
// processes in the app's cgroup.
func (m *Manager) sampleCPU(ctx context.Context, infos []Info) {
	timer := time.NewTimer(cpuSample - time.Since(earliest(infos, time.Now())))
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return
	}
	var wg sync.WaitGroup
	for i := range infos {
		in := &infos[i]
		if in.cgroup == "" {
			continue
		}
		wg.Go(func() {
			var cpu1 uint64
			if in.cpuOK {
				p, err := m.conn.GetServicePropertyContext(ctx, in.Unit, "CPUUsageNSec")
				if err != nil {
					return
				}
				cpu1, _ = p.Value.Value().(uint64)
			} else {
				in.pids = cgroupPIDs(in.cgroup)
				var rss uint64
				cpu1, rss = sumProcs(in.pids)
				if in.MemorySource == "" {
					in.MemoryBytes, in.MemorySource = rss, "proc"
				}
			}
			if cpu1 >= in.cpu0 {
				in.CPUPercent = percent(cpu1-in.cpu0, time.Since(in.at0))
			}
			if in.MemorySource == "" {
				_, in.MemoryBytes = sumProcs(cgroupPIDs(in.cgroup))
				in.MemorySource = "proc"
			}
		})
	}
	wg.Wait()
}

// earliest returns the earliest first CPU reading of infos, or def.
func earliest(infos []Info, def time.Time) time.Time {
	t := def
	for _, in := range infos {
		if !in.at0.IsZero() && in.at0.Before(t) {
			t = in.at0
		}
	}
	return t
}

func percent(cpu uint64, over time.Duration) float64 {
	if over <= 0 {
		return 0
	}
	p := float64(cpu) / float64(over.Nanoseconds()) * 100
	return float64(int(p*10+0.5)) / 10
}

// Has reports whether the manager has an app of that name.
func (m *Manager) Has(ctx context.Context, name string) (bool, error) {
	_, err := m.find(ctx, name)
	if errors.Is(err, ErrUnknown) {
		return false, nil
	}
	return err == nil, err
}
