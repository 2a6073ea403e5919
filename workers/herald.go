package workers

import (
	"sync"
	"time"

	"github.com/corraldev/corral/notify"
)

// herald tells the service manager from its own goroutine, so that a slow
// or stuck manager (a full notify queue blocks the sender) never stalls
// the pool's loop. Messages keep their order; a status line or a watchdog
// ping waiting behind one of its kind replaces it, so a stuck manager costs
// a bounded queue.
type herald struct {
	up    *notify.Upstream
	warnf func(format string, args ...any)

	mu    sync.Mutex
	queue []upMsg
	wake  chan struct{} // capacity 1
	quit  chan struct{} // closed by stop
	done  chan struct{} // closed when run returns
}

type upKind int

const (
	upStatus upKind = iota
	upReady
	upReloading
	upStopping
	upWatchdog
	upExtend
)

type upMsg struct {
	kind   upKind
	status string
	extend time.Duration
}

// maxQueue bounds what waits for a stuck manager; the oldest goes first.
const maxQueue = 256

func newHerald(up *notify.Upstream, warnf func(string, ...any)) *herald {
	h := &herald{up: up, warnf: warnf, wake: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{})}
	go h.run()
	return h
}

func (h *herald) send(m upMsg) {
	if !h.up.Enabled() {
		return
	}
	h.mu.Lock()
	if n := len(h.queue); n > 0 && (m.kind == upStatus || m.kind == upWatchdog) && h.queue[n-1].kind == m.kind {
		h.queue[n-1] = m
	} else {
		h.queue = append(h.queue, m)
		if len(h.queue) > maxQueue {
			h.queue = h.queue[1:]
		}
	}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *herald) run() {
	defer close(h.done)
	for {
		h.mu.Lock()
		q := h.queue
		h.queue = nil
		h.mu.Unlock()
		for _, m := range q {
			if err := h.deliver(m); err != nil {
				h.warnf("notify service manager: %v", err)
			}
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-h.wake:
		case <-h.quit:
			return
		}
	}
}

func (h *herald) deliver(m upMsg) error {
	switch m.kind {
	case upReady:
		return h.up.Ready(m.status)
	case upReloading:
		return h.up.Reloading(m.status)
	case upStopping:
		return h.up.Stopping(m.status)
	case upWatchdog:
		return h.up.Watchdog()
	case upExtend:
		return h.up.ExtendTimeout(m.extend)
	}
	return h.up.Status(m.status)
}

// stop sends what is queued and ends the goroutine, waiting at most wait
// for a manager that does not read.
func (h *herald) stop(wait time.Duration) {
	h.mu.Lock()
	pending := len(h.queue) > 0
	h.mu.Unlock()
	if pending {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
	close(h.quit)
	select {
	case <-h.done:
	case <-time.After(wait):
	}
}
