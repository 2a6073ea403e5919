package apps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// StartOptions change what Start does. The zero value refuses a name in
// use and enables the app, so that it starts at boot.
type StartOptions struct {
	// Force replaces an app of the same name: Delete, then start anew.
	Force bool
	// NoEnable starts the app without enabling it: it does not come back
	// at boot.
	NoEnable bool
}

// ErrExists means an app of that name exists; StartOptions.Force
// replaces it.
var ErrExists = errors.New("an app of that name exists")

// StartError is a start that systemd ran and that failed: the app is
// left in place, failed, for Logs and Delete.
type StartError struct {
	App    string
	Unit   string
	Result string   // the job's result, or "auto-restart"
	Reason string   // the service's Result= and status text
	Logs   []string // the service's last journal lines
}

func (e *StartError) Error() string {
	return fmt.Sprintf("%s failed to start (%s): %s", e.Unit, e.Result, e.Reason)
}

// Start writes the app's config, its socket's drop-in and its record,
// enables its units (unless opts.NoEnable), makes systemd load them,
// starts the service and waits until systemd reports it active, which
// corral's Type=notify service is once every worker is online, or failed.
//
// Before it writes anything it checks, and refuses with an error wrapping
// ErrBadInput: the spec (see Spec), that the manager has the template,
// that the service can read the command, script and working directory
// (DynamicUser= and ProtectHome=), that no app holds the name (ErrExists,
// unless opts.Force), and that no other process holds the ports. A
// start that systemd ran and that failed returns a *StartError, and the
// app stays, failed and stopped, for Logs and Delete.
func (m *Manager) Start(ctx context.Context, s Spec, opts StartOptions) (Info, error) {
	if err := s.check(); err != nil {
		return Info{}, err
	}
	units := UnitsOf(s.template(), s.Name)
	svc, err := m.serviceProps(ctx, units.Service)
	if err != nil {
		return Info{}, err
	}
	if err := m.checkTemplate(s.template(), svc); err != nil {
		return Info{}, err
	}
	if err := m.checkVisible(s, svc); err != nil {
		return Info{}, err
	}
	rec, hasRecord, err := m.checkFree(ctx, s, units, svc, opts.Force)
	if err != nil {
		return Info{}, err
	}
	if err := m.checkPorts(ctx, s, units); err != nil {
		return Info{}, err
	}
	// systemd reads a unit's files when it loads it, and again only at a
	// daemon-reload, which takes the system manager a good half second.
	// A new app's socket was never loaded, so it needs none: the links
	// that enable the app matter at the next boot, when systemd reads
	// them anyway.
	_, reload, err := m.loadedState(ctx, units.Socket)
	if err != nil {
		return Info{}, err
	}
	reload = reload || hasRecord || opts.Force
	if hasRecord {
		if err := m.remove(ctx, rec); err != nil {
			return Info{}, fmt.Errorf("replace %s: %w", s.Name, err)
		}
	} else if opts.Force {
		m.stopUnits(ctx, units) // a unit made by hand: stop it, then take it over
	}
	if err := m.install(ctx, s, units, !opts.NoEnable, reload); err != nil {
		return Info{}, err
	}
	return m.startUnits(ctx, s.template(), s.Name, units)
}

// install writes the record, the config and the socket's drop-in, enables
// the units when enable is set, and makes systemd reload its units when
// reload is set.
func (m *Manager) install(ctx context.Context, s Spec, units Units, enable, reload bool) error {
	cfg := s.Config
	cfg.Listen = nil
	header := fmt.Sprintf("The app %s, written by corral start (%s manager).\n"+
		"Change it and run corral reload %s; corral delete %s removes it.", s.Name, m.scope, s.Name, s.Name)
	text, err := configText(header, cfg)
	if err != nil {
		return err
	}
	dropDir := filepath.Join(m.paths.Units, units.Socket+".d")
	rec := Record{
		Name: s.Name, Template: s.template(), Created: time.Now().UTC().Truncate(time.Second),
		Command: cfg.Command, Dir: cfg.WorkingDirectory, Listen: s.Listen,
		Files: []string{m.configPath(s.Name), filepath.Join(dropDir, "corral-start.conf")},
	}
	for _, dir := range []string{m.paths.Config, dropDir} {
		made, err := mkdirs(dir)
		rec.Dirs = append(rec.Dirs, made...)
		if err != nil {
			return err
		}
	}
	wants, _ := filepath.Glob(filepath.Join(m.paths.Units, "*.wants"))
	// The record first: whatever happens next, Delete finds it all.
	if err := m.writeRecord(rec); err != nil {
		return err
	}
	if err := writeFile(rec.Files[0], []byte(text), 0o644); err != nil {
		return err
	}
	if err := writeFile(rec.Files[1], []byte(socketDropIn(s)), 0o644); err != nil {
		return err
	}
	if enable {
		files := []string{units.Socket, units.Service}
		_, changes, err := m.conn.EnableUnitFilesContext(ctx, files, false, false)
		if err != nil {
			return fmt.Errorf("enable %s: %w", strings.Join(files, " "), err)
		}
		rec.Enabled = files
		for _, c := range changes {
			if c.Type != "symlink" {
				continue
			}
			rec.Links = append(rec.Links, c.Filename)
			// systemd made the .wants directory if it was missing
			// (the first app of a user): Delete removes it if empty.
			if dir := filepath.Dir(c.Filename); !slices.Contains(wants, dir) && !slices.Contains(rec.Dirs, dir) {
				rec.Dirs = append(rec.Dirs, dir)
			}
		}
		if err := m.writeRecord(rec); err != nil {
			return err
		}
	}
	if !reload {
		return nil
	}
	if err := m.conn.ReloadContext(ctx); err != nil {
		return fmt.Errorf("daemon-reload: %w", err)
	}
	return nil
}

// socketDropIn returns the drop-in that replaces the template socket's
// ListenStream= with the app's.
func socketDropIn(s Spec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# The sockets of the app %s, written by corral start; corral delete %s removes it.\n[Socket]\nListenStream=\n", s.Name, s.Name)
	for _, l := range s.Listen {
		fmt.Fprintf(&b, "ListenStream=%s\n", l)
	}
	if s.FDName != "" {
		fmt.Fprintf(&b, "FileDescriptorName=%s\n", s.FDName)
	}
	return b.String()
}

// configPath returns the config file of the app name.
func (m *Manager) configPath(name string) string {
	return filepath.Join(m.paths.Config, name+".toml")
}

// startUnits starts the service, which starts its socket first, and waits.
func (m *Manager) startUnits(ctx context.Context, template, name string, units Units) (Info, error) {
	m.conn.ResetFailedUnitContext(ctx, units.Service) // a unit that never failed has nothing to reset
	result, err := m.run(ctx, startJob, units.Service, true)
	if err != nil {
		return Info{}, err
	}
	if result != jobDone {
		return Info{}, m.startFailed(ctx, name, units, result)
	}
	// No CPU sample: over a process that just started it means nothing.
	info, err := m.info(ctx, found{name: name, template: template, record: true})
	if err == nil && info.MemorySource == "" {
		_, info.MemoryBytes = sumProcs(cgroupPIDs(info.cgroup))
		info.MemorySource = "proc"
	}
	return info, err
}

// startFailed stops what a failed start left restarting, so that the app
// rests failed rather than retry until systemd's start limit, and returns
// why it failed.
func (m *Manager) startFailed(ctx context.Context, name string, units Units, result string) error {
	reason := m.failureReason(ctx, units.Service)
	m.stopUnits(ctx, units)
	logs := m.journalTail(ctx, units, 10)
	reason = withExitLine(reason, logs)
	m.noteFailure(name, "start failed: "+reason)
	return &StartError{App: name, Unit: units.Service, Result: result, Reason: reason, Logs: logs}
}

// withExitLine adds to reason the line corral run wrote as it exited,
// "corral: no worker came online: ...", the last of logs that has it.
func withExitLine(reason string, logs []string) string {
	for i := len(logs) - 1; i >= 0; i-- {
		if line, ok := strings.CutPrefix(logs[i], "corral: "); ok {
			return reason + ": " + line
		}
	}
	return reason
}

// failureReason describes why a service failed: its Result= and its last
// status text, which corral sets to the reason.
func (m *Manager) failureReason(ctx context.Context, service string) string {
	p, err := m.typeProps(ctx, service, "Service")
	if err != nil {
		return err.Error()
	}
	reason := "result " + p.str("Result")
	if code, ok := p["ExecMainStatus"].(int32); ok && p.str("Result") == "exit-code" {
		reason = fmt.Sprintf("corral exited with status %d", code)
		if code == 2 {
			reason += " (a wrong configuration)"
		}
	}
	// The status text says why a reload failed; once corral stopped, it
	// says only "stopping".
	if st := p.str("StatusText"); st != "" && !strings.HasPrefix(st, "stopping") {
		reason += ": " + st
	}
	return reason
}

// stopUnits stops the service and its socket and waits for both; errors
// are left for the caller's next step to meet.
func (m *Manager) stopUnits(ctx context.Context, units Units) {
	m.run(ctx, stopJob, units.Socket, false)
	m.run(ctx, stopJob, units.Service, false)
}

// Lingering reports whether the calling user's manager keeps running
// after the user logs out (loginctl enable-linger), and the user's name.
func Lingering() (bool, string) {
	name := currentUser()
	_, err := os.Stat(filepath.Join("/var/lib/systemd/linger", name))
	return err == nil, name
}
