package notify

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coreos/go-systemd/v22/daemon"
)

// maxStatus is the longest STATUS= value Upstream sends, in bytes, which
// keeps every datagram well under systemd's 4096-byte limit.
const maxStatus = 1024

// Upstream reports corral's own state to the service manager through the
// socket named by $NOTIFY_SOCKET. The zero value and a nil *Upstream are
// disabled. It is safe for concurrent use.
type Upstream struct {
	enabled  bool
	watchdog time.Duration
}

// NewUpstream reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID once and
// returns an Upstream that is enabled if NOTIFY_SOCKET is set. It leaves the
// environment unchanged; keeping these variables out of workers' environments
// is the caller's job.
func NewUpstream() *Upstream {
	u := &Upstream{enabled: os.Getenv("NOTIFY_SOCKET") != ""}
	if d, err := daemon.SdWatchdogEnabled(false); err == nil {
		u.watchdog = d / 2
	}
	return u
}

// Enabled reports whether NOTIFY_SOCKET was set when u was made, that is
// whether notifications go anywhere.
func (u *Upstream) Enabled() bool { return u != nil && u.enabled }

// Ready tells the service manager that corral has started, or finished
// reloading, sending READY=1 and STATUS=status in one datagram (no STATUS
// line if status is empty).
//
// Ready, like every sending method of Upstream, returns one of:
//   - nil: u is not enabled, or the datagram was sent.
//   - err: the datagram could not be sent, or NOTIFY_SOCKET has been unset
//     since NewUpstream.
func (u *Upstream) Ready(status string) error {
	return u.send("READY=1", status)
}

// Status sets the service's status line; an empty status clears it. It
// returns nil if u is not enabled or the datagram was sent, else an error.
func (u *Upstream) Status(status string) error {
	return u.sendState("STATUS=" + cleanStatus(status))
}

// Reloading tells the service manager that a reload has begun, sending
// RELOADING=1, MONOTONIC_USEC=<now> and STATUS=status (if not empty) in one
// datagram, which is what Type=notify-reload requires on systemd 253 and
// later. Follow it with Ready when the reload is done. It returns nil if u
// is not enabled or the datagram was sent, else an error.
func (u *Upstream) Reloading(status string) error {
	state := "RELOADING=1"
	if mono := strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n"); mono != "" {
		state += "\n" + mono
	}
	return u.send(state, status)
}

// Stopping tells the service manager that corral is shutting down, sending
// STOPPING=1 and STATUS=status (if not empty) in one datagram. It returns
// nil if u is not enabled or the datagram was sent, else an error.
func (u *Upstream) Stopping(status string) error {
	return u.send("STOPPING=1", status)
}

// Watchdog sends WATCHDOG=1, which resets the service's watchdog timer. It
// returns nil if u is not enabled or the datagram was sent, else an error.
func (u *Upstream) Watchdog() error {
	return u.sendState(daemon.SdNotifyWatchdog)
}

// ExtendTimeout asks the service manager to allow d more, from now, for
// the start, reload or stop in progress (EXTEND_TIMEOUT_USEC); a negative d
// is sent as 0. It returns nil if u is not enabled or the datagram was sent,
// else an error.
func (u *Upstream) ExtendTimeout(d time.Duration) error {
	return u.sendState("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(max(d.Microseconds(), 0), 10))
}

// WatchdogInterval returns how often to call Watchdog: half of
// WATCHDOG_USEC if the service manager asked this process for watchdog
// pings, and 0 if it did not (WATCHDOG_USEC unset, WATCHDOG_PID naming
// another process) or the variables could not be parsed.
func (u *Upstream) WatchdogInterval() time.Duration {
	if u == nil {
		return 0
	}
	return u.watchdog
}

// send sends the assignment first followed by STATUS=status, if status is
// not empty, in one datagram.
func (u *Upstream) send(first, status string) error {
	if status != "" {
		first += "\nSTATUS=" + cleanStatus(status)
	}
	return u.sendState(first)
}

// sendState sends state as one datagram. Errors name the first key sent.
func (u *Upstream) sendState(state string) error {
	if !u.Enabled() {
		return nil
	}
	sent, err := daemon.SdNotify(false, state)
	if err == nil && !sent {
		err = errUnset
	}
	if err != nil {
		key, _, _ := strings.Cut(state, "=")
		return fmt.Errorf("send %s to service manager: %w", key, err)
	}
	return nil
}

var errUnset = errors.New("NOTIFY_SOCKET was unset after NewUpstream")

// cleanStatus makes status safe to send as one STATUS= line: valid UTF-8,
// no line break (systemd ends a line at '\n' and at '\r') or NUL byte, at
// most maxStatus bytes.
func cleanStatus(status string) string {
	status = strings.ToValidUTF8(status, "\uFFFD")
	status = strings.NewReplacer("\n", " ", "\r", " ", "\x00", "").Replace(status)
	if len(status) <= maxStatus {
		return status
	}
	cut := maxStatus
	for cut > 0 && !utf8.RuneStart(status[cut]) {
		cut--
	}
	return status[:cut]
}
