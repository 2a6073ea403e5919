package workers

import (
	"time"

	"github.com/corraldev/corral/readiness"
)

// probeInterval is how often starting workers in ReadyListen mode are
// looked at. A look reads /proc (about 0.3 ms for a Go worker with 50 fds
// and 10 threads), and only starting workers are looked at. The ticker runs
// only while there is such a worker: an idle pool arms no timer.
const probeInterval = 20 * time.Millisecond

// probeC returns the probe ticker's channel, or nil (never ready) while it
// is stopped.
func (p *Pool) probeC() <-chan time.Time {
	if p.probeTick == nil {
		return nil
	}
	return p.probeTick.C
}

// armProbe runs the probe ticker while a ReadyListen worker is starting and
// stops it when none is. Run calls it after every event.
func (p *Pool) armProbe() {
	need := false
	for _, w := range p.workers {
		if w.state == starting && w.spec.Ready == ReadyListen {
			need = true
			break
		}
	}
	switch {
	case need && p.probeTick == nil:
		p.probeTick = time.NewTicker(probeInterval)
	case !need:
		p.stopProbing()
	}
}

func (p *Pool) stopProbing() {
	if p.probeTick != nil {
		p.probeTick.Stop()
		p.probeTick = nil
	}
}

// probeListening counts online each starting ReadyListen worker that now
// waits for connections on one of the sockets.
func (p *Pool) probeListening() {
	for _, w := range p.sortedWorkers() {
		if w.state != starting || w.spec.Ready != ReadyListen {
			continue
		}
		p.probes++
		ok, why, err := readiness.Listening(w.pid, p.probe)
		if err != nil {
			p.opts.Warnf("%s: look for a listening socket: %v", w, err)
			continue
		}
		if ok {
			p.opts.Logf("%s: listening: %s", w, why)
			p.online(w)
		}
	}
}
