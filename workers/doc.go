// Package workers runs a pool of worker processes of one app: N slots, each
// served by one worker, all sharing the same listening sockets.
//
// At any time a slot has at most one serving worker, and during a rolling
// reload at most one candidate of the next generation. A reload moves the pool
// from generation g to g+1 slot by slot: the candidate starts, reports online
// (READY=1 on corral's notify socket, or at once with ReadyExec), and only then
// is the slot's old worker sent the stop signal and given its stop timeout to
// drain before SIGKILL. A candidate that exits or misses its ready timeout
// aborts the reload under the keep-old policy: the candidates are stopped and
// every old worker that is still running keeps serving.
//
// One goroutine, Pool.Run, owns all of this state. Worker exits, notify
// messages, timers, reload and status requests reach it as messages on
// channels; requests carry their own reply channel. Every other goroutine
// (one Wait per worker, parked in the poller; the notify reader; one reader
// per Node IPC channel; timers) only sends. Run sleeps while nothing
// happens: the only periodic timers are the readiness probe, armed only
// while a ReadyListen worker is starting, and systemd's watchdog ping, when
// the unit sets WatchdogSec=.
//
// The pool decides when a worker starts and stops; how it starts (the fd
// table, the environment, the trampoline that sets LISTEN_PID, the process
// group, the death signal) is package activation's Launcher, and the pool
// never picks a fd number. Node's IPC channel is package node's, passed as
// an extra descriptor.
//
// This package is corral's machinery, not an API for other programs.
package workers
