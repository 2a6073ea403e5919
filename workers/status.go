package workers

import (
	"fmt"
	"sort"
	"time"
)

// Status is a snapshot of the pool, as `corral status` shows it.
type Status struct {
	State      string         `json:"state"` // starting, running, reloading or stopping
	Generation int            `json:"generation"`
	Instances  int            `json:"instances"`
	Online     int            `json:"online"`
	Restarts   int            `json:"restarts"`
	Line       string         `json:"status"` // the STATUS= line systemd shows
	LastReload *ReloadResult  `json:"last_reload,omitempty"`
	Ignored    uint64         `json:"ignored_notify_messages"` // from PIDs that are not workers
	Dropped    uint64         `json:"dropped_notify_messages"` // malformed, oversized, no credentials
	IPCDropped uint64         `json:"dropped_ipc_messages"`    // malformed or over 64 KiB on Node's channel
	Probes     uint64         `json:"listen_probes"`           // looks for a listening worker (ready=listen)
	Workers    []WorkerStatus `json:"workers"`
}

// WorkerStatus describes one worker process.
type WorkerStatus struct {
	Slot       int       `json:"slot"`
	PID        int       `json:"pid"`
	Generation int       `json:"generation"`
	State      string    `json:"state"` // starting, online, stopping; "candidate" while a reload starts it
	Started    time.Time `json:"started"`
	Restarts   int       `json:"restarts"`  // of its slot
	LastExit   string    `json:"last_exit"` // of its slot's previous worker
	Status     string    `json:"status,omitempty"`
}

func (p *Pool) state() string {
	switch {
	case p.stopping:
		return "stopping"
	case p.roll != nil:
		return "reloading"
	case !p.ready:
		return "starting"
	}
	return "running"
}

func (p *Pool) restarts() int {
	n := 0
	for _, s := range p.slots {
		n += s.restarts
	}
	return n
}

// statusLine is the one line systemctl status shows.
func (p *Pool) statusLine() string {
	if p.stopping {
		return fmt.Sprintf("stopping: %d workers left", len(p.workers))
	}
	if r := p.roll; r != nil {
		return fmt.Sprintf("reloading: %d/%d replaced, generation %d", r.replaced, r.spec.Instances, r.gen)
	}
	line := fmt.Sprintf("%d/%d workers online · generation %d · %d restarts",
		p.onlineCount(), p.spec.Instances, p.generation, p.restarts())
	for _, i := range p.slotIndexes() {
		if s := p.slots[i]; s.cur == nil && s.restarts > 0 {
			line += fmt.Sprintf(" · worker %d down (%s; restart %d pending)", i, s.lastExit, s.restarts)
		}
	}
	if r := p.lastReload; r != nil && !r.OK {
		line += " · last " + r.Message
	}
	return line
}

func (p *Pool) slotIndexes() []int {
	idx := make([]int, 0, len(p.slots))
	for i := range p.slots {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	return idx
}

func (p *Pool) status() Status {
	st := Status{
		State:      p.state(),
		Generation: p.generation,
		Instances:  p.spec.Instances,
		Online:     p.onlineCount(),
		Restarts:   p.restarts(),
		Line:       p.statusLine(),
		LastReload: p.lastReload,
		Ignored:    p.spoofed,
		Dropped:    p.opts.Notify.Dropped(),
		IPCDropped: p.ipcDropped,
		Probes:     p.probes,
	}
	for _, w := range p.workers {
		ws := WorkerStatus{Slot: w.slot, PID: w.pid, Generation: w.gen, State: w.state.String(),
			Started: w.started, Status: w.status}
		if w.candidate {
			ws.State = "candidate"
		}
		if s := p.slots[w.slot]; s != nil {
			ws.Restarts, ws.LastExit = s.restarts, s.lastExit
		}
		st.Workers = append(st.Workers, ws)
	}
	sort.Slice(st.Workers, func(i, j int) bool {
		a, b := st.Workers[i], st.Workers[j]
		if a.Slot != b.Slot {
			return a.Slot < b.Slot
		}
		return a.Generation < b.Generation
	})
	return st
}
