package workers

import (
	"fmt"
	"syscall"
	"time"
)

// ReadyMode says when a new worker counts as online.
type ReadyMode string

const (
	// ReadyNotify waits for READY=1 (or "online") on corral's notify socket.
	ReadyNotify ReadyMode = "notify"
	// ReadyExec counts a worker online as soon as its process is running.
	ReadyExec ReadyMode = "exec"
	// ReadyListen counts a worker online once it, or a descendant, waits
	// for connections on one of the sockets (package readiness), or
	// notifies, whichever comes first.
	ReadyListen ReadyMode = "listen"
)

// FailurePolicy says what a reload does when a new worker fails to come online.
type FailurePolicy string

const (
	// KeepOld aborts the reload, stops the candidates and keeps every old
	// worker that is still running. The default.
	KeepOld FailurePolicy = "keep-old"
	// Proceed replaces the old worker anyway, as PM2 does when its
	// listen_timeout runs out; a candidate that exited is restarted with
	// backoff in its slot.
	Proceed FailurePolicy = "proceed"
)

// Spec is what a generation of workers runs. The pool never changes a Spec;
// a reload brings a new one.
type Spec struct {
	Path string   // absolute path of the command
	Args []string // arguments after the command
	Env  []string // environment, before corral's own variables are added
	Dir  string   // working directory; "" is corral's

	Instances     int // number of slots, > 0
	Ready         ReadyMode
	ReadyTimeout  time.Duration // how long a new worker may take to come online
	StopTimeout   time.Duration // how long a worker may drain before SIGKILL
	StopSignal    syscall.Signal
	MaxSurge      int // candidates starting at once during a reload, > 0
	ReloadFailure FailurePolicy

	// NodeIPC gives each worker Node's IPC channel (NODE_CHANNEL_FD):
	// process.send('ready') counts as online, and a graceful stop sends
	// 'shutdown' first, the stop signal after shutdownGrace.
	NodeIPC bool
}

// validate reports what is wrong with s, naming the setting.
func (s *Spec) validate() error {
	switch {
	case s.Path == "":
		return fmt.Errorf("no command to run")
	case s.Instances < 1:
		return fmt.Errorf("instances %d: want at least 1", s.Instances)
	case s.Ready != ReadyNotify && s.Ready != ReadyExec && s.Ready != ReadyListen:
		return fmt.Errorf("ready %q: want notify, listen or exec", s.Ready)
	case s.ReadyTimeout <= 0:
		return fmt.Errorf("ready timeout %v: want a positive duration", s.ReadyTimeout)
	case s.StopTimeout <= 0:
		return fmt.Errorf("stop timeout %v: want a positive duration", s.StopTimeout)
	case s.StopSignal == 0:
		return fmt.Errorf("no stop signal")
	case s.MaxSurge < 1:
		return fmt.Errorf("max surge %d: want at least 1", s.MaxSurge)
	case s.ReloadFailure != KeepOld && s.ReloadFailure != Proceed:
		return fmt.Errorf("reload failure policy %q: want keep-old or proceed", s.ReloadFailure)
	}
	return nil
}
