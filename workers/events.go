package workers

import (
	"fmt"
	"slices"
	"time"

	"github.com/corraldev/corral/notify"
)

// exited handles the end of a worker process.
func (p *Pool) exited(w *worker, how string) {
	delete(p.workers, w.pid)
	p.gone.add(w.pid)
	w.stopTimers()
	if w.ipc != nil {
		w.ipc.Close() // ends readIPC
	}
	how = p.oomText(w, how)
	defer p.endGroup(w) // after the exit is logged
	if w.state == stopping {
		p.opts.Logf("%s: %s after stop (%s)", w, how, w.why)
		if s := p.slots[w.slot]; w.failure != "" && s != nil && s.cur == w {
			p.failed(s, w.failure, time.Time{})
		}
		return
	}
	if w.candidate {
		p.opts.Warnf("%s: %s during start", w, how)
		p.candidateFailed(w, how+" during start", false)
		return
	}
	s := p.slots[w.slot]
	if s == nil || s.cur != w {
		return
	}
	s.cur = nil
	if w.state == starting {
		how += " during start"
	}
	p.opts.Warnf("%s: %s", w, how)
	p.failed(s, how, w.onlineAt)
}

// failed records that slot s lost its worker and schedules a restart with
// backoff. onlineAt is when the lost worker came online, zero if never.
func (p *Pool) failed(s *slot, why string, onlineAt time.Time) {
	if s == nil || p.stopping {
		return
	}
	s.cur = nil
	s.restarts++
	s.lastExit = why
	if !p.ready && onlineAt.IsZero() {
		s.failed = true
		if p.allFailed() {
			p.fatal = fmt.Errorf("no worker came online: worker %d %s (its output is in %s)", s.index, why, p.opts.OutputHint)
			p.beginStop("no worker came online")
			return
		}
	}
	if p.roll != nil && p.roll.inflight[s.index] != nil {
		return // the reload's candidate takes the slot
	}
	if p.rec != nil && p.rec.cand.slot == s.index {
		return // the recycle's candidate takes the slot
	}
	if !onlineAt.IsZero() && time.Since(onlineAt) >= p.opts.Backoff.Reset {
		s.delay = p.opts.Backoff.Initial
	}
	p.restartLater(s)
}

// restartLater starts a worker in s after its backoff delay.
func (p *Pool) restartLater(s *slot) {
	d := s.delay
	s.delay = min(time.Duration(float64(s.delay)*1.5), p.opts.Backoff.Max)
	p.opts.Logf("worker %d: restarting in %v (restart %d)", s.index, d.Round(time.Millisecond), s.restarts)
	s.timer = p.after(d, timerEvent{kind: restartSlot, slot: s})
}

// allFailed reports whether every slot has failed to start and none has
// ever had a worker online.
func (p *Pool) allFailed() bool {
	if p.everOnline {
		return false
	}
	for _, s := range p.slots {
		if !s.failed {
			return false
		}
	}
	return true
}

// timer handles a timer that fired; one that lost its reason is ignored.
func (p *Pool) timer(ev timerEvent) {
	switch ev.kind {
	case readyTimeout:
		w := ev.w
		if p.workers[w.pid] != w || w.state != starting {
			return
		}
		p.opts.Warnf("%s: did not come online within %v", w, w.spec.ReadyTimeout)
		if w.candidate {
			p.candidateFailed(w, "did not come online within "+w.spec.ReadyTimeout.String(), true)
			return
		}
		w.failure = "did not come online within " + w.spec.ReadyTimeout.String()
		p.stop(w, w.failure)
	case killNow:
		w := ev.w
		if p.workers[w.pid] != w {
			return
		}
		how := "sending SIGKILL"
		if w.group != nil {
			how = "killing its cgroup"
		}
		p.opts.Warnf("%s: still running %v after %s; %s", w, w.spec.StopTimeout, sigName(w.spec.StopSignal), how)
		if err := w.kill(); err != nil {
			p.opts.Warnf("%s: kill: %v", w, err)
		}
	case signalNow:
		if w := ev.w; p.workers[w.pid] == w {
			p.opts.Logf("%s: still running %v after 'shutdown'; sending %s", w, shutdownGrace(w.spec), sigName(w.spec.StopSignal))
			p.sendStop(w)
		}
	case recycleNow:
		// maybeRecycle, after every event, starts it.
	case restartSlot:
		s := ev.slot
		if p.stopping || s.cur != nil || p.slots[s.index] != s {
			return
		}
		s.timer = nil
		p.startSlot(s)
	}
}

// message handles a datagram on corral's notify socket.
func (p *Pool) message(m notify.Message) {
	p.received++
	w := p.sender(m)
	if w == nil && p.fromGone(m) {
		return // sent before its sender's exit, which the pool took first
	}
	if w == nil {
		p.spoofed++
		if time.Since(p.lastSpoof) >= time.Second {
			p.lastSpoof = time.Now()
			p.opts.Warnf("notify socket: ignored a message from pid %d, which is not a worker (%d ignored so far)", m.PID, p.spoofed)
		}
		return
	}
	if m.HasStatus {
		w.status = m.Status
	}
	if m.Stopping && w.state != stopping {
		p.opts.Logf("%s: reports it is stopping", w)
	}
	if m.Watchdog && !w.pinged {
		w.pinged = true
		p.opts.Logf("%s: sent WATCHDOG=1 (only a worker's first ping is logged; corral does not act on them yet)", w)
	}
	if m.Ready && w.state == starting {
		p.online(w)
	}
}

// sender returns the worker that sent m: the worker itself or one of its
// descendants, traced when the datagram arrived. Nil for anyone else.
func (p *Pool) sender(m notify.Message) *worker {
	if w := p.workers[m.PID]; w != nil {
		return w
	}
	for _, pid := range m.Ancestors {
		if w := p.workers[pid]; w != nil {
			return w
		}
	}
	return nil
}

// fromGone reports whether m came from a worker that has exited lately,
// or from a descendant of one.
func (p *Pool) fromGone(m notify.Message) bool {
	if p.gone.has(m.PID) {
		return true
	}
	for _, pid := range m.Ancestors {
		if p.gone.has(pid) {
			return true
		}
	}
	return false
}

// recent holds the PIDs of the last workers that exited. A datagram a
// worker sent just before its exit can reach the pool after the exit
// (they come on different channels), and is no stranger's. The PID may
// name another process by then; a datagram from it is dropped all the
// same, which gives it no more power than a stranger has.
type recent struct {
	pids [64]int
	next int
}

func (r *recent) add(pid int) {
	r.pids[r.next] = pid
	r.next = (r.next + 1) % len(r.pids)
}

func (r *recent) has(pid int) bool {
	return pid > 0 && slices.Contains(r.pids[:], pid)
}

// online handles a worker that came online.
func (p *Pool) online(w *worker) {
	w.state, w.onlineAt = online, time.Now()
	w.stopTimers()
	p.everOnline = true
	p.opts.Logf("%s: online after %v", w, w.onlineAt.Sub(w.started).Round(time.Microsecond))
	if w.candidate && p.recycling(w) {
		p.recycleOnline(w)
		return
	}
	if w.candidate {
		p.promote(w)
		return
	}
	if s := p.slots[w.slot]; s != nil && s.cur == w {
		s.failed = false
	}
	if !p.ready && p.onlineCount() == len(p.slots) {
		p.ready = true
		p.opts.Logf("all %d workers online", len(p.slots))
		p.lastStatus = p.statusLine()
		p.herald.send(upMsg{kind: upReady, status: p.lastStatus})
	}
}

// publish sends STATUS= when the status line changed.
func (p *Pool) publish() {
	if line := p.statusLine(); line != p.lastStatus {
		p.lastStatus = line
		p.herald.send(upMsg{kind: upStatus, status: line})
	}
}
