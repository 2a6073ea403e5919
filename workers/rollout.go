package workers

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// ReloadResult is how a reload ended.
type ReloadResult struct {
	OK         bool          `json:"ok"`
	Generation int           `json:"generation"` // the generation the reload started
	Replaced   int           `json:"replaced"`   // slots now served by it
	Total      int           `json:"total"`      // slots it was to serve
	Duration   time.Duration `json:"duration_ns"`
	Message    string        `json:"message"`
}

// rollout is a reload in progress: generation gen of spec replaces the pool
// slot by slot, at most spec.MaxSurge candidates starting at once.
type rollout struct {
	spec     *Spec
	gen      int
	todo     []int           // slots still to start a candidate for, in order
	inflight map[int]*worker // slot -> candidate starting
	replaced int
	failures []string // slots that failed under the proceed policy
	started  time.Time
	waiters  []chan ReloadResult
}

// requestReload starts a reload, or queues the request behind the one
// running.
func (p *Pool) requestReload(reply chan ReloadResult) {
	switch {
	case p.stopping:
		reply <- ReloadResult{Message: "reload refused: corral is stopping"}
	case p.roll != nil:
		p.opts.Logf("reload requested while generation %d rolls out: queued to run after it", p.roll.gen)
		p.queued = append(p.queued, reply)
	default:
		p.beginRollout([]chan ReloadResult{reply})
	}
}

// beginRollout loads the new Spec and starts replacing workers. A Spec that
// does not load fails the reload before any worker is touched.
func (p *Pool) beginRollout(waiters []chan ReloadResult) {
	spec := *p.spec
	if p.opts.Load != nil {
		var err error
		spec, err = p.opts.Load()
		if err == nil {
			err = checkFileLimit(&spec, 2*spec.Instances, p.baseFDs)
		}
		if err != nil {
			r := ReloadResult{Generation: p.generation, Message: fmt.Sprintf(
				"reload failed: %v; no worker was touched, generation %d keeps serving", err, p.generation)}
			p.opts.Warnf("%s", r.Message)
			p.lastReload = &r
			reply(waiters, r)
			return
		}
	}
	p.abortRecycle("a reload replaces every worker")
	p.lastGen++
	r := &rollout{
		spec:     &spec,
		gen:      p.lastGen,
		inflight: make(map[int]*worker),
		started:  time.Now(),
		waiters:  waiters,
	}
	for i := range spec.Instances {
		r.todo = append(r.todo, i)
	}
	p.roll = r
	p.opts.Logf("reload: generation %d replaces generation %d in %d slots, %d at a time",
		r.gen, p.generation, spec.Instances, spec.MaxSurge)
	p.lastStatus = p.statusLine()
	p.herald.send(upMsg{kind: upReloading, status: p.lastStatus})
	p.fill()
}

// fill starts candidates up to the surge limit, and ends the rollout when
// every slot is done.
func (p *Pool) fill() {
	r := p.roll
	for len(r.inflight) < r.spec.MaxSurge && len(r.todo) > 0 {
		i := r.todo[0]
		r.todo = r.todo[1:]
		w, err := p.start(i, r.spec, r.gen, true)
		if err != nil {
			p.rolloutFailed(i, p.startFailed(i, r.gen, err))
			return
		}
		r.inflight[i] = w
		p.herald.send(upMsg{kind: upExtend, extend: r.spec.ReadyTimeout + r.spec.StopTimeout})
		if r.spec.Ready == ReadyExec {
			p.online(w) // promotes, and fills from there
			return
		}
	}
	if len(r.inflight) == 0 && len(r.todo) == 0 {
		p.finishRollout()
	}
}

// promote makes an online candidate its slot's worker and stops the old one.
func (p *Pool) promote(w *worker) {
	r := p.roll
	delete(r.inflight, w.slot)
	w.candidate = false
	s := p.slots[w.slot]
	if s == nil {
		s = &slot{index: w.slot}
		p.slots[w.slot] = s
	}
	old := s.cur
	s.cur, s.spec, s.gen, s.delay, s.failed = w, r.spec, r.gen, p.opts.Backoff.Initial, false
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if old != nil {
		p.stop(old, fmt.Sprintf("replaced by generation %d", r.gen))
	}
	r.replaced++
	p.fill()
}

// candidateFailed handles a candidate that exited or missed its ready
// timeout, by the reload's failure policy.
func (p *Pool) candidateFailed(w *worker, why string, running bool) {
	if p.recycling(w) {
		p.recycleFailed(w, why, running)
		return
	}
	r := p.roll
	if r == nil || r.inflight[w.slot] != w {
		return
	}
	if r.spec.ReloadFailure == Proceed {
		r.failures = append(r.failures, fmt.Sprintf("worker %d %s", w.slot, why))
		if running {
			p.opts.Warnf("%s: counted online anyway (--reload-failure=proceed)", w)
			p.online(w)
			return
		}
		delete(r.inflight, w.slot)
		s := p.slots[w.slot]
		if s == nil {
			s = &slot{index: w.slot, delay: p.opts.Backoff.Initial}
			p.slots[w.slot] = s
		}
		if s.cur != nil {
			p.stop(s.cur, fmt.Sprintf("replaced by generation %d (--reload-failure=proceed)", r.gen))
		}
		s.cur, s.spec, s.gen = nil, r.spec, r.gen
		p.failed(s, why, time.Time{})
		p.fill()
		return
	}
	if running {
		p.stop(w, "reload aborted: "+why)
	}
	delete(r.inflight, w.slot)
	p.rolloutFailed(w.slot, why)
}

// rolloutFailed aborts the rollout under the keep-old policy.
func (p *Pool) rolloutFailed(slot int, why string) {
	r := p.roll
	msg := fmt.Sprintf("reload failed: worker %d of generation %d %s (its output is in %s); ", slot, r.gen, why, p.opts.OutputHint)
	if r.replaced == 0 {
		msg += fmt.Sprintf("generation %d kept", p.generation)
	} else {
		msg += fmt.Sprintf("%d of %d slots already run generation %d, the rest generation %d", r.replaced, r.spec.Instances, r.gen, p.generation)
	}
	p.endRollout(false, msg)
}

// finishRollout retires the slots beyond the new instance count and reports
// success.
func (p *Pool) finishRollout() {
	r := p.roll
	var gone []int
	for i := range p.slots {
		if i >= r.spec.Instances {
			gone = append(gone, i)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(gone)))
	for _, i := range gone {
		s := p.slots[i]
		delete(p.slots, i)
		if s.timer != nil {
			s.timer.Stop()
		}
		if s.cur != nil {
			s.cur.retiring = true
			p.stop(s.cur, fmt.Sprintf("instances now %d", r.spec.Instances))
		}
	}
	p.spec, p.generation = r.spec, r.gen
	msg := fmt.Sprintf("reload done: generation %d serves in %d slots", r.gen, r.spec.Instances)
	if len(r.failures) > 0 {
		msg += "; proceeded past failures (--reload-failure=proceed): " + strings.Join(r.failures, "; ")
	}
	p.endRollout(true, msg)
}

// endRollout stops any candidate still starting, reports the result to
// systemd, the log and every waiter, and starts a queued reload.
func (p *Pool) endRollout(ok bool, msg string) {
	r := p.roll
	p.roll = nil
	for _, w := range r.inflight {
		p.stop(w, "reload aborted")
	}
	for _, s := range p.slots {
		if s.cur == nil && s.timer == nil && !p.stopping {
			p.restartLater(s) // its old worker exited while a candidate started
		}
	}
	res := ReloadResult{OK: ok, Generation: r.gen, Replaced: r.replaced, Total: r.spec.Instances,
		Duration: time.Since(r.started), Message: msg}
	p.lastReload = &res
	if ok {
		p.opts.Logf("%s in %v", msg, res.Duration.Round(time.Millisecond))
	} else {
		p.opts.Warnf("%s", msg)
	}
	p.lastStatus = p.statusLine()
	if !p.stopping {
		p.herald.send(upMsg{kind: upReady, status: p.lastStatus})
	}
	reply(r.waiters, res)
	if len(p.queued) > 0 && !p.stopping {
		q := p.queued
		p.queued = nil
		p.beginRollout(q)
	}
}

func (p *Pool) replyQueued(r ReloadResult) {
	reply(p.queued, r)
	p.queued = nil
}

func reply(waiters []chan ReloadResult, r ReloadResult) {
	for _, c := range waiters {
		c <- r // buffered by the asker
	}
}
