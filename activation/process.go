package activation

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Process is a started worker: the leader of its own process group.
//
// Wait reaps it. Where the kernel gives a pidfd (Linux 5.3 and later), the
// wait parks in Go's network poller on the pidfd, which becomes readable
// when the process exits, so a thousand waiting workers hold no OS thread
// (a blocking wait4 or waitid per process holds one each, and the Go
// runtime keeps every thread it ever made). Elsewhere it blocks in wait4.
type Process struct {
	Pid int

	pidfd *os.File // nil without pidfd support

	mu     sync.Mutex // held while reaping and while signalling
	reaped bool
}

func newProcess(pid, pidfd int) *Process {
	p := &Process{Pid: pid}
	if pidfd >= 0 {
		// Non-blocking, so that os.NewFile registers it with the poller.
		if err := unix.SetNonblock(pidfd, true); err == nil {
			p.pidfd = os.NewFile(uintptr(pidfd), "pidfd")
		} else {
			unix.Close(pidfd)
		}
	}
	return p
}

// Exit is how a process ended.
type Exit struct {
	Status unix.WaitStatus
	Rusage unix.Rusage
}

// Signaled reports whether the process was killed by a signal.
func (e Exit) Signaled() bool { return e.Status.Signaled() }

// Code returns the exit status, or -1 when a signal killed it.
func (e Exit) Code() int { return e.Status.ExitStatus() }

// String says "exited with status 1" or "was killed by signal 9 (SIGKILL)".
func (e Exit) String() string {
	if e.Status.Signaled() {
		sig := e.Status.Signal()
		return fmt.Sprintf("was killed by signal %d (%s)", int(sig), unix.SignalName(sig))
	}
	return fmt.Sprintf("exited with status %d", e.Status.ExitStatus())
}

// Wait waits for the process to exit, reaps it, and returns how it ended.
// Call it once.
func (p *Process) Wait() (Exit, error) {
	var e Exit
	if p.pidfd == nil {
		_, err := p.wait4(&e, 0)
		return e, err
	}
	defer p.pidfd.Close()
	rc, err := p.pidfd.SyscallConn()
	if err != nil {
		return e, err
	}
	var done bool
	var werr error
	err = rc.Read(func(uintptr) bool {
		done, werr = p.wait4(&e, unix.WNOHANG)
		return done || werr != nil
	})
	if err != nil && !done && werr == nil {
		// The poller would not take the pidfd: wait the blocking way.
		_, werr = p.wait4(&e, 0)
		return e, werr
	}
	return e, werr
}

// wait4 reaps the process; false when it still runs (WNOHANG).
func (p *Process) wait4(e *Exit, opts int) (bool, error) {
	for {
		p.mu.Lock()
		pid, err := unix.Wait4(p.Pid, &e.Status, opts, &e.Rusage)
		if pid == p.Pid {
			p.reaped = true
		}
		p.mu.Unlock()
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return false, fmt.Errorf("wait for pid %d: %w", p.Pid, err)
		}
		return pid == p.Pid, nil
	}
}

// Signal sends sig to the process group, so that an app started through a
// shell or npm gets it too, or to the process alone where the group is
// gone (the app left it). A process already reaped is not signalled: its
// PID may name another process by now.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return nil
	}
	err := unix.Kill(-p.Pid, sig)
	if errors.Is(err, unix.ESRCH) {
		err = unix.Kill(p.Pid, sig)
	}
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}
