package apps

import (
	"context"
	"fmt"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// A job's results: systemd's JobRemoved signal gives done, canceled,
// timeout, failed, dependency or skipped; run adds jobRestarted.
const (
	jobDone      = "done"
	jobRestarted = "auto-restart" // the service failed and awaits a restart
)

// jobFunc starts a job on a unit with a mode and reports its result on ch.
type jobFunc func(c *sdbus.Conn, ctx context.Context, unit, mode string, ch chan<- string) (int, error)

var (
	startJob   jobFunc = (*sdbus.Conn).StartUnitContext
	stopJob    jobFunc = (*sdbus.Conn).StopUnitContext
	restartJob jobFunc = (*sdbus.Conn).RestartUnitContext
	reloadJob  jobFunc = (*sdbus.Conn).ReloadUnitContext
)

// run queues a job for unit, mode "replace", and waits for its result,
// which it returns. With watch, it also watches the unit's state and
// returns jobRestarted as soon as the unit fails or is scheduled for a
// restart, rather than wait while systemd restarts it until its start
// limit: a start, or a restart, that failed once has failed.
func (m *Manager) run(ctx context.Context, job jobFunc, unit string, watch bool) (string, error) {
	var changes chan *sdbus.PropertiesUpdate
	if watch {
		changes = make(chan *sdbus.PropertiesUpdate, 1024)
		errs := make(chan error, 1024) // "update channel is full": then only the job's result counts
		m.conn.SetPropertiesSubscriber(changes, errs)
		defer m.conn.SetPropertiesSubscriber(nil, nil)
	}
	done := make(chan string, 1) // buffered: go-systemd's dispatcher must never block on it
	if _, err := job(m.conn, ctx, unit, "replace", done); err != nil {
		return "", fmt.Errorf("%s: %w", unit, err)
	}
	for {
		select {
		case r := <-done:
			return r, nil
		case u := <-changes:
			if u.UnitName == unit && failing(u.Changed) {
				return jobRestarted, nil
			}
		case <-ctx.Done():
			return "", fmt.Errorf("%s: waiting for the job: %w", unit, ctx.Err())
		}
	}
}

// failing reports whether changed unit properties say the unit failed or
// awaits an automatic restart.
func failing(changed map[string]dbus.Variant) bool {
	as, _ := changed["ActiveState"].Value().(string)
	ss, _ := changed["SubState"].Value().(string)
	return as == "failed" || ss == "auto-restart"
}
