package workers

import (
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

	// MaxMemory, in bytes, recycles a worker whose memory goes above it:
	// a replacement starts in its slot and comes online first, one recycle
	// at a time and never during a reload. 0: never.
	MaxMemory int64
	// MemoryLimit, in bytes, is each worker's cgroup memory.max. It needs
	// Options.Cgroups with the memory controller. 0: none.
	MemoryLimit int64

	// NodeIPC gives each worker Node's IPC channel (NODE_CHANNEL_FD):
	// process.send('ready') counts as online, and a graceful stop sends
	// 'shutdown' first, the stop signal after shutdownGrace.
	NodeIPC bool
}
