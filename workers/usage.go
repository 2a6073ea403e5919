package workers

import (
	"time"

	"github.com/corraldev/corral/cgroup"
	"github.com/corraldev/corral/config"
)

// sampleInterval is how often the memory of workers is looked at for
// max_memory where the kernel cannot tell (no memory controller), unless
// Options.SampleInterval says otherwise. A look reads a few small files
// per worker with raw system calls, and the ticker is a timerfd (see
// kernelTicker), so that a look wakes corral's threads about four times
// and nothing else: measured here, an idle corral with max_memory wakes
// less than once a second, with 2 workers or 16. The ticker runs only
// while such a worker is online and under its max_memory, so an idle
// corral without max_memory, or with the kernel's notification, arms none.
const sampleInterval = 5 * time.Second

// measure reads what w uses now: memory, and CPU % since the last look
// (at least a second ago; since it started for the first look).
func (p *Pool) measure(w *worker, now time.Time) {
	var u cgroup.Usage
	var err error
	if w.group != nil {
		u, err = w.group.Usage()
	} else {
		u, err = cgroup.ProcessTree(w.pid)
	}
	if err != nil {
		return // it has just exited
	}
	w.mem, w.cpuTotal = u.Memory, u.CPU
	var used, over time.Duration
	switch {
	case w.cpuAt.IsZero():
		used, over = u.CPU, now.Sub(w.started)
	case now.Sub(w.cpuAt) >= time.Second:
		used, over = u.CPU-w.cpuUsed, now.Sub(w.cpuAt)
	default:
		return // too short a time to say; keep the last figure
	}
	if over > 0 {
		w.cpuPct = max(float64(used)/float64(over)*100, 0)
	}
	w.cpuAt, w.cpuUsed = now, u.CPU
}

// armMemory sets up the max_memory check of each online worker that has
// none yet: the kernel's notification where the memory controller is
// delegated (memory.high at max_memory; memory.events says when it is
// crossed), else a look every sampleInterval. Then it runs the sample
// ticker while a worker needs looking at. Run calls it after every event.
func (p *Pool) armMemory() {
	need := false
	for _, w := range p.workers {
		if w.state != online || w.spec.MaxMemory <= 0 || w.over > 0 {
			continue
		}
		if !w.memArmed {
			w.memArmed = true
			w.memPoll = !p.notifyMemory(w)
		}
		need = need || w.memPoll
	}
	switch {
	case need && p.sampleTick == nil:
		t, err := newKernelTicker(p.opts.SampleInterval)
		if err != nil {
			p.opts.Warnf("max_memory: %v; the workers' memory is not checked", err)
			return
		}
		p.sampleTick = t
	case !need && p.sampleTick != nil:
		p.stopSampling()
	}
}

// sampleC returns the sample ticker's channel, or nil while it is stopped.
func (p *Pool) sampleC() <-chan struct{} {
	if p.sampleTick == nil {
		return nil
	}
	return p.sampleTick.C
}

func (p *Pool) stopSampling() {
	if p.sampleTick != nil {
		p.sampleTick.Stop()
		p.sampleTick = nil
	}
}

// notifyMemory sets memory.high of w's cgroup at its max_memory and
// watches memory.events, and reports whether it did.
func (p *Pool) notifyMemory(w *worker) bool {
	if w.group == nil || !p.opts.Cgroups.Memory() {
		return false
	}
	if err := w.group.SetMemoryHigh(w.spec.MaxMemory); err != nil {
		p.opts.Warnf("%s: %v; checking its memory every %v instead", w, err, p.opts.SampleInterval)
		return false
	}
	wd, err := p.watcher.Add(w.group.MemoryEventsFile())
	if err != nil {
		w.group.SetMemoryHigh(0)
		p.opts.Warnf("%s: %v; checking its memory every %v instead", w, err, p.opts.SampleInterval)
		return false
	}
	w.memWatch, w.highSet = wd, true
	p.watches[wd] = watch{w, watchMemory}
	p.checkMemory(w) // it may be above already
	return true
}

// liftMemoryHigh removes the memory.high that notifyMemory set, so that
// the kernel does not throttle a worker that is above it.
func (p *Pool) liftMemoryHigh(w *worker) {
	p.unwatch(&w.memWatch)
	if !w.highSet || w.group == nil {
		return
	}
	w.highSet = false
	if err := w.group.SetMemoryHigh(0); err != nil {
		p.opts.Warnf("%s: %v", w, err)
	}
}

// memoryEvent handles a modified memory.events of an online worker's
// cgroup. memory.high counts page cache too, which the kernel has just
// reclaimed: the worker is recycled only if it is still above max_memory
// without it. Either way memory.high is lifted, so that the kernel does not
// throttle the worker, and a worker above it from page cache alone is
// looked at every sampleInterval from then on.
func (p *Pool) memoryEvent(w *worker) {
	ev, err := w.group.MemoryEvents()
	if err != nil || ev.High == w.highSeen {
		return
	}
	w.highSeen = ev.High
	p.liftMemoryHigh(w)
	if w.state != online {
		return
	}
	if !p.checkMemory(w) {
		w.memPoll = true
		p.opts.Logf("%s: crossed memory.high (max_memory %s) with page cache; its memory is %s: checking it every %v from now on",
			w, config.FormatBytes(w.spec.MaxMemory), config.FormatBytes(w.mem), p.opts.SampleInterval)
	}
}

// sampleMemory looks at each online worker whose max_memory is checked by
// sampling.
func (p *Pool) sampleMemory() {
	for _, w := range p.sortedWorkers() {
		if w.state == online && w.memPoll && w.over == 0 {
			p.checkMemory(w)
		}
	}
}

// checkMemory measures w and marks it for a recycle if it is above its
// max_memory, and reports whether it is.
func (p *Pool) checkMemory(w *worker) bool {
	p.measure(w, time.Now())
	if w.mem <= w.spec.MaxMemory || w.state != online {
		return false
	}
	w.over = w.mem
	p.liftMemoryHigh(w)
	p.opts.Warnf("%s: memory %s is above max_memory %s: recycling it (its replacement starts first)", w, config.FormatBytes(w.mem), config.FormatBytes(w.spec.MaxMemory))
	return true
}
