package workers

import (
	"time"

	"github.com/corraldev/corral/readiness"
)

// probeInterval is how often starting workers in ReadyListen mode are
// looked at. A look reads /proc (about 0.3 ms for a Go worker with 50 fds
// and 10 threads), and only starting workers are looked at.
const probeInterval = 20 * time.Millisecond

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
