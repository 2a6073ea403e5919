package workers

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
	cmd   *exec.Cmd
	pid   int
	state state

	started  time.Time
	onlineAt time.Time
	status   string // the worker's own last STATUS=

	candidate bool   // started by a reload, not yet serving its slot
	retiring  bool   // its slot is going away
	why       string // why it is stopping, for the log
	failure   string // set when stopped for not coming online in time

	ipc *net.UnixConn // corral's end of Node's IPC channel, or nil

	readyTimer  *time.Timer // ready timeout while starting
	signalTimer *time.Timer // the stop signal after 'shutdown', Node IPC only
	killTimer   *time.Timer // SIGKILL at the stop timeout while stopping
}

func (w *worker) String() string {
	return fmt.Sprintf("worker %d (pid %d, generation %d)", w.slot, w.pid, w.gen)
}

// signal sends sig to the worker's process group, so that an app started
// through a shell or npm gets it too; to the process alone where the app left
// the group.
func (w *worker) signal(sig syscall.Signal) error {
	err := unix.Kill(-w.pid, sig)
	if errors.Is(err, unix.ESRCH) {
		err = w.cmd.Process.Signal(sig)
	}
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

func (w *worker) stopTimers() {
	for _, t := range []*time.Timer{w.readyTimer, w.signalTimer, w.killTimer} {
		if t != nil {
			t.Stop()
		}
	}
}

// env returns the worker's environment: the spec's, without the variables
// that belong to corral's own service manager, plus the worker contract.
func workerEnv(spec *Spec, slot, gen int, listenEnv []string, notifyPath string) []string {
	env := make([]string, 0, len(spec.Env)+len(listenEnv)+6)
	for _, kv := range spec.Env {
		if !inheritable(kv) {
			continue
		}
		env = append(env, kv)
	}
	index := strconv.Itoa(slot)
	env = append(env, listenEnv...)
	return append(env,
		"NOTIFY_SOCKET="+notifyPath,
		"CORRAL_WORKER_INDEX="+index,
		"NODE_APP_INSTANCE="+index,
		"CORRAL_WORKERS="+strconv.Itoa(spec.Instances),
		"CORRAL_GENERATION="+strconv.Itoa(gen),
	)
}

// owned lists the variables corral sets for each worker, or that describe
// corral's own relation to systemd and must not reach a worker.
var owned = []string{
	"LISTEN_PID=", "LISTEN_FDS=", "LISTEN_FDNAMES=", "LISTEN_PIDFDID=",
	"NOTIFY_SOCKET=", "WATCHDOG_PID=", "WATCHDOG_USEC=",
	"CORRAL_WORKER_INDEX=", "NODE_APP_INSTANCE=", "CORRAL_WORKERS=", "CORRAL_GENERATION=",
}

func inheritable(kv string) bool {
	for _, p := range owned {
		if strings.HasPrefix(kv, p) {
			return false
		}
	}
	return true
}

// exitText describes how a process ended, for logs and reload results.
func exitText(ps *os.ProcessState) string {
	if ps == nil {
		return "did not start"
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		sig := ws.Signal()
		return fmt.Sprintf("was killed by signal %d (%s)", int(sig), unix.SignalName(sig))
	}
	return fmt.Sprintf("exited with status %d", ps.ExitCode())
}

// spawner starts processes from one OS thread that stays locked for the
// life of the pool. PR_SET_PDEATHSIG fires when the thread that forked a
// child ends, not the process (golang/go#27505), so forking from a thread
// the Go runtime may retire would kill workers at random.
type spawner struct {
	reqs chan spawnReq
}

type spawnReq struct {
	cmd   *exec.Cmd
	reply chan error
}

// newSpawner starts the spawner's goroutine; it ends when done is closed.
func newSpawner(done <-chan struct{}) *spawner {
	s := &spawner{reqs: make(chan spawnReq)}
	go func() {
		// Never unlocked: the thread exits with the goroutine, after
		// Run has reaped every worker.
		runtime.LockOSThread()
		for {
			select {
			case r := <-s.reqs:
				r.reply <- r.cmd.Start()
			case <-done:
				return
			}
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	reply := make(chan error, 1)
	s.reqs <- spawnReq{cmd, reply}
	return <-reply
}
