package workers

import (
	"fmt"
	"syscall"
	"time"

	"github.com/corraldev/corral/activation"
	"github.com/corraldev/corral/cgroup"
	"github.com/corraldev/corral/node"
)

// state is where a worker is in its life.
type state int

const (
	starting state = iota // running, not yet online
	online                // reported online; serving
	stopping              // sent the stop signal; draining
)

func (s state) String() string {
	switch s {
	case starting:
		return "starting"
	case online:
		return "online"
	default:
		return "stopping"
	}
}

// worker is one process. Only the pool's Run goroutine touches it.
type worker struct {
	slot  int
	gen   int
	spec  *Spec
	proc  *activation.Process
	pid   int
	state state

	started  time.Time
	onlineAt time.Time
	status   string // the worker's own last STATUS=
	pinged   bool   // it has sent WATCHDOG=1, which is logged once

	candidate bool   // started by a reload, not yet serving its slot
	retiring  bool   // its slot is going away
	why       string // why it is stopping, for the log
	failure   string // set when stopped for not coming online in time

	ipc *node.Channel // corral's end of Node's IPC channel, or nil

	group      *cgroup.Group // its cgroup, or nil; kept after it exits until the cgroup is empty
	groupWatch int           // watch on cgroup.events while its cgroup empties
	memWatch   int           // watch on memory.events while max_memory is notified
	memArmed   bool          // its max_memory check is set up
	memPoll    bool          // its max_memory is checked by sampling
	highSet    bool          // memory.high is set at its max_memory
	highSeen   uint64        // memory.events' high counter, as last read
	over       int64         // its memory when it was found above max_memory; 0 if never

	mem      int64         // memory, as last measured
	cpuTotal time.Duration // CPU time used, as last measured
	cpuPct   float64       // CPU % over the time between the last two looks
	cpuAt    time.Time     // when cpuUsed was read
	cpuUsed  time.Duration

	readyTimer  *time.Timer // ready timeout while starting
	signalTimer *time.Timer // the stop signal after 'shutdown', Node IPC only
	killTimer   *time.Timer // SIGKILL at the stop timeout while stopping
}

func (w *worker) String() string {
	return fmt.Sprintf("worker %d (pid %d, generation %d)", w.slot, w.pid, w.gen)
}

// signal sends sig to the worker's process group (see activation.Process).
func (w *worker) signal(sig syscall.Signal) error {
	return w.proc.Signal(sig)
}

// kill kills the worker at once: its whole cgroup where it has one (what it
// started in another process group or session too), else its process
// group.
func (w *worker) kill() error {
	if w.group != nil {
		return w.group.Kill()
	}
	return w.signal(syscall.SIGKILL)
}

func (w *worker) stopTimers() {
	for _, t := range []*time.Timer{w.readyTimer, w.signalTimer, w.killTimer} {
		if t != nil {
			t.Stop()
		}
	}
}

// exitText describes how a process ended, for logs and reload results.
func exitText(e activation.Exit, err error) string {
	if err != nil {
		return "ended, but could not be waited for: " + err.Error()
	}
	return e.String()
}
