package workers

import (
	"fmt"
	"time"

	"github.com/corraldev/corral/config"
)

// recycle is the replacement of one worker that went above max_memory:
// cand starts in old's slot, of old's generation and Spec, and old is sent
// its stop signal only once cand is online, as in a reload. At most one
// runs at a time, never during a reload.
type recycle struct {
	old, cand *worker
}

// recycleRetry is the first delay before a slot whose recycle failed is
// tried again; it grows by half after each failure, up to Backoff.Max.
const recycleRetry = time.Second

// maybeRecycle starts the recycle of the first worker above max_memory,
// unless one runs, a reload runs, or corral stops. Run calls it after
// every event.
func (p *Pool) maybeRecycle() {
	if p.rec != nil || p.roll != nil || p.stopping {
		return
	}
	now := time.Now()
	for _, i := range p.slotIndexes() {
		s := p.slots[i]
		old := s.cur
		if old == nil || old.state != online || old.over == 0 || now.Before(s.recycleAfter) {
			continue
		}
		cand, err := p.start(s.index, s.spec, s.gen, true)
		if err != nil {
			p.opts.Warnf("%v", err)
			p.recycleLater(s)
			continue
		}
		p.rec = &recycle{old: old, cand: cand}
		p.opts.Logf("%s: recycling: its replacement, pid %d, is starting", old, cand.pid)
		if s.spec.Ready == ReadyExec {
			p.online(cand)
		}
		return
	}
}

// recycling reports whether w is the candidate of the running recycle.
func (p *Pool) recycling(w *worker) bool {
	return p.rec != nil && p.rec.cand == w
}

// recycleOnline makes the online candidate its slot's worker and stops
// the old one.
func (p *Pool) recycleOnline(w *worker) {
	old := p.rec.old
	p.rec = nil
	w.candidate = false
	s := p.slots[w.slot]
	s.recycles++
	s.recycleDelay = 0
	if s.cur == old {
		s.cur = w
		p.stop(old, fmt.Sprintf("recycled: memory %s above max_memory %s", config.FormatBytes(old.over), config.FormatBytes(old.spec.MaxMemory)))
	} else if s.cur == nil {
		s.cur = w // the old one exited meanwhile
		if s.timer != nil {
			s.timer.Stop()
			s.timer = nil
		}
	} else {
		p.stop(w, "its slot has another worker")
		return
	}
	p.opts.Logf("worker %d: recycled (recycle %d of the slot): pid %d serves it", s.index, s.recycles, w.pid)
}

// recycleFailed handles a candidate that exited or missed its ready
// timeout: the old worker keeps serving, and the slot is tried again later.
func (p *Pool) recycleFailed(w *worker, why string, running bool) {
	p.rec = nil
	if running {
		p.stop(w, "recycle aborted: "+why)
	}
	s := p.slots[w.slot]
	if s == nil {
		return
	}
	if s.cur == nil && s.timer == nil && !p.stopping {
		p.restartLater(s) // the old worker exited meanwhile
	}
	d := p.recycleLater(s)
	p.opts.Warnf("worker %d: recycle failed: its replacement %s (its output is in %s); the old worker keeps serving; next try in %v",
		w.slot, why, p.opts.OutputHint, d)
}

// recycleLater holds off the next recycle of s, by a delay that grows
// with each failure, and returns it.
func (p *Pool) recycleLater(s *slot) time.Duration {
	d := max(s.recycleDelay, recycleRetry)
	s.recycleDelay = min(time.Duration(float64(d)*1.5), p.opts.Backoff.Max)
	s.recycleAfter = time.Now().Add(d)
	p.after(d, timerEvent{kind: recycleNow, slot: s})
	return d
}

// abortRecycle stops the running recycle's candidate.
func (p *Pool) abortRecycle(why string) {
	if r := p.rec; r != nil {
		p.rec = nil
		p.stop(r.cand, "recycle aborted: "+why)
	}
}
