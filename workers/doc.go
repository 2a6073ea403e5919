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
// (one Wait per worker, the notify reader, timers, the spawner) only sends.
//
// Workers are started through corral's exec trampoline (package activation)
// so that LISTEN_PID is the worker's own PID, each in its own process group,
// with PR_SET_PDEATHSIG set to SIGKILL from an OS thread that lives as long as
// corral: a worker never outlives a SIGKILLed corral.
package workers
