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

	// idle, if set (by tests, before run starts), runs in run's goroutine
	// each time run has found the queue empty, just before it waits.
	idle func()
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

// newHerald starts a herald; stop ends it.
func newHerald(up *notify.Upstream, warnf func(string, ...any)) *herald {
	h := makeHerald(up, warnf)
	go h.run()
	return h
}

// makeHerald returns a herald whose run has not started.
func makeHerald(up *notify.Upstream, warnf func(string, ...any)) *herald {
	return &herald{up: up, warnf: warnf, wake: make(chan struct{}, 1),
		quit: make(chan struct{}), done: make(chan struct{})}
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

// run delivers what is queued, in order, until stop. A message queued
// before stop is delivered even when stop's quit and send's wake are ready
// at once and select picks quit.
func (h *herald) run() {
	defer close(h.done)
	for {
		if h.deliverQueued() {
			continue
		}
		if h.idle != nil {
			h.idle()
		}
		select {
		case <-h.wake:
		case <-h.quit:
			h.deliverQueued()
			return
		}
	}
}

// deliverQueued takes the queue and delivers it, and reports whether it
// held anything.
func (h *herald) deliverQueued() bool {
	h.mu.Lock()
	q := h.queue
	h.queue = nil
	h.mu.Unlock()
	for _, m := range q {
		if err := h.deliver(m); err != nil {
			h.warnf("notify service manager: %v", err)
		}
	}
	return len(q) > 0
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
// for a manager that does not read. Nothing may be sent after stop.
func (h *herald) stop(wait time.Duration) {
	close(h.quit)
	select {
	case <-h.done:
	case <-time.After(wait):
	}
}
