package apps

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Action is what Do does to an app.
type Action string

const (
	Reload  Action = "reload"  // corral's rolling reload, through systemctl reload
	Restart Action = "restart" // a new corral; the socket stays open
	Stop    Action = "stop"    // the service and its socket
	StartIt Action = "start"   // an app that exists, stopped
)

// Result is what an action did to one app.
type Result struct {
	Name    string `json:"name"`
	OK      bool   `json:"ok"`
	Message string `json:"message"`
}

// Do runs action on each app of names, in order, each a systemd job
// waited for; All stands for every app. A name that is no app's gets a
// failed Result that lists the names there are.
func (m *Manager) Do(ctx context.Context, action Action, names []string) ([]Result, error) {
	all, err := m.discover(ctx)
	if err != nil {
		return nil, err
	}
	var targets []found
	var results []Result
	for _, n := range names {
		if n == All {
			targets = append(targets, all...)
			continue
		}
		i := slices.IndexFunc(all, func(f found) bool { return f.name == n })
		if i < 0 {
			_, err := m.find(ctx, n)
			results = append(results, Result{Name: n, Message: err.Error()})
			continue
		}
		targets = append(targets, all[i])
	}
	if len(targets) == 0 && len(results) == 0 {
		return nil, fmt.Errorf("%w: the %s manager runs no corral app (corral start creates one)", ErrUnknown, m.scope)
	}
	for _, f := range targets {
		results = append(results, m.do(ctx, action, f))
	}
	return results, nil
}

// do runs action on one app.
func (m *Manager) do(ctx context.Context, action Action, f found) Result {
	units := UnitsOf(f.template, f.name)
	r := Result{Name: f.name}
	switch action {
	case Stop:
		m.stopUnits(ctx, units)
		p, err := m.unitProps(ctx, units.Service)
		if err != nil {
			r.Message = err.Error()
			return r
		}
		r.OK = p.str("ActiveState") == "inactive" || p.str("ActiveState") == "failed"
		r.Message = "stopped"
		if !r.OK {
			r.Message = "still " + p.str("ActiveState")
		}
		return r
	case Reload:
		return m.reload(ctx, f, units)
	}
	job := restartJob
	if action == StartIt {
		job = startJob
		m.conn.ResetFailedUnitContext(ctx, units.Service)
	}
	result, err := m.run(ctx, job, units.Service, true)
	switch {
	case err != nil:
		r.Message = err.Error()
	case result == jobDone:
		r.OK, r.Message = true, string(action)+"ed"
		m.noteFailure(f.name, "")
		if info, err := m.info(ctx, f); err == nil && info.Corral != nil {
			r.Message += ": " + info.Corral.Line
		}
	default:
		reason := m.failureReason(ctx, units.Service)
		m.stopUnits(ctx, units)
		reason = withExitLine(reason, m.journalTail(ctx, units, 10))
		m.noteFailure(f.name, fmt.Sprintf("%s failed: %s", action, reason))
		r.Message = fmt.Sprintf("%s failed (%s): %s; corral logs %s shows why", action, result, reason, f.name)
	}
	if action == StartIt && r.OK {
		r.Message = "started"
	}
	return r
}

// reload runs systemctl reload's job: corral's rolling reload, which
// fails when corral kept the old workers. The message is corral's.
func (m *Manager) reload(ctx context.Context, f found, units Units) Result {
	r := Result{Name: f.name}
	p, err := m.unitProps(ctx, units.Service)
	if err != nil {
		r.Message = err.Error()
		return r
	}
	if st := p.str("ActiveState"); st != "active" && st != "reloading" {
		r.Message = fmt.Sprintf("not running (%s): start it with corral restart %s", st, f.name)
		return r
	}
	result, err := m.run(ctx, reloadJob, units.Service, false)
	if err != nil {
		r.Message = err.Error()
		return r
	}
	info, ierr := m.info(ctx, f)
	var last string
	if ierr == nil && info.LastReload != nil {
		last = info.LastReload.Message
	}
	switch {
	case result == jobDone:
		r.OK, r.Message = true, last
		if last == "" {
			r.Message = "reloaded"
		}
	case last != "":
		r.Message = last
	case ierr == nil && info.Status != "":
		r.Message = fmt.Sprintf("reload %s: %s", result, info.Status)
	default:
		r.Message = fmt.Sprintf("reload %s; corral logs %s shows why", result, f.name)
	}
	return r
}

// ErrNotStarted means an app exists but corral start did not make it,
// so Delete does not know what to remove.
var ErrNotStarted = errors.New("not made by corral start")

// Delete stops the app name, disables what Start enabled, and removes
// what Start wrote, as its record lists; nothing else. An app with no
// record is an error wrapping ErrNotStarted (or ErrUnknown) that says how
// to remove it by hand.
func (m *Manager) Delete(ctx context.Context, name string) error {
	rec, err := m.readRecord(name)
	if errors.Is(err, os.ErrNotExist) {
		f, ferr := m.find(ctx, name)
		if ferr != nil {
			return ferr
		}
		u := UnitsOf(f.template, f.name)
		return fmt.Errorf("%w: %s: corral delete removes only what corral start wrote; remove it by hand: systemctl%s disable --now %s %s, and its config",
			ErrNotStarted, name, map[Scope]string{User: " --user"}[m.scope], u.Socket, u.Service)
	}
	if err != nil {
		return err
	}
	return m.remove(ctx, rec)
}

// remove undoes what rec lists. It goes on past a failed step, so that
// as much as can be is removed, and returns every error.
func (m *Manager) remove(ctx context.Context, rec Record) error {
	units := UnitsOf(rec.Template, rec.Name)
	m.stopUnits(ctx, units)
	var errs []error
	if len(rec.Enabled) > 0 {
		if _, err := m.conn.DisableUnitFilesContext(ctx, rec.Enabled, false); err != nil {
			errs = append(errs, fmt.Errorf("disable %s: %w", strings.Join(rec.Enabled, " "), err))
		}
	}
	for _, f := range rec.Files {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	for i := len(rec.Dirs) - 1; i >= 0; i-- {
		os.Remove(rec.Dirs[i]) // only when empty: another app's files stay
	}
	if err := m.conn.ReloadContext(ctx); err != nil {
		errs = append(errs, fmt.Errorf("daemon-reload: %w", err))
	}
	m.conn.ResetFailedUnitContext(ctx, units.Service)
	m.conn.ResetFailedUnitContext(ctx, units.Socket)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete %s: %w (its record %s stays; run corral delete %s again)", rec.Name, err, m.recordPath(rec.Name), rec.Name)
	}
	if err := os.Remove(m.recordPath(rec.Name)); err != nil {
		return fmt.Errorf("delete %s: %w", rec.Name, err)
	}
	os.Remove(filepath.Dir(m.recordPath(rec.Name))) // when it was the last
	return nil
}
