package workers

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/corraldev/corral/config"
)

// Status is a snapshot of the pool, as `corral status` shows it.
type Status struct {
	State      string        `json:"state"` // starting, running, reloading or stopping
	Generation int           `json:"generation"`
	Instances  int           `json:"instances"`
	Online     int           `json:"online"`
	Restarts   int           `json:"restarts"`
	Line       string        `json:"status"` // the STATUS= line systemd shows
	LastReload *ReloadResult `json:"last_reload,omitempty"`
	Received   uint64        `json:"notify_messages"`         // handled, from workers or not
	Ignored    uint64        `json:"ignored_notify_messages"` // from PIDs that are not workers
	Dropped    uint64        `json:"dropped_notify_messages"` // malformed, oversized, no credentials
	IPCDropped uint64        `json:"dropped_ipc_messages"`    // malformed or over 64 KiB on Node's channel
	Probes     uint64        `json:"listen_probes"`           // looks for a listening worker (ready=listen)

	// The app's totals, over every worker's processes.
	MemoryBytes int64   `json:"memory_bytes"`
	CPUPercent  float64 `json:"cpu_percent"`          // 100 is one CPU
	MaxMemory   int64   `json:"max_memory,omitempty"` // bytes; 0 for none
	Recycles    int     `json:"recycles"`             // workers recycled for max_memory
	// Accounting says where the figures come from: "cgroup" (each
	// worker's cgroup), "cgroup; memory from /proc" (a cgroup without the
	// memory controller) or "/proc" (the workers' process trees).
	Accounting string `json:"accounting"`

	Corral Self `json:"corral"` // corral's own process

	Workers []WorkerStatus `json:"workers"`
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
	Recycles   int       `json:"recycles"` // of its slot, for max_memory

	// MemoryBytes is its memory and its children's (see cgroup.Usage);
	// CPUPercent its CPU use since the previous look (status or
	// max_memory's sampling, at least a second before; since it started
	// at the first look), 100 being one CPU; CPUSeconds all it used.
	MemoryBytes int64   `json:"memory_bytes"`
	CPUPercent  float64 `json:"cpu_percent"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	Cgroup      string  `json:"cgroup,omitempty"` // its cgroup's directory
}

func (p *Pool) accounting() string {
	switch t := p.opts.Cgroups; {
	case t == nil:
		return "/proc"
	case !t.Memory():
		return "cgroup; memory from /proc"
	}
	return "cgroup"
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
	if n := p.recycles(); n > 0 {
		line += fmt.Sprintf(" · %d recycled (max_memory)", n)
	}
	if r := p.rec; r != nil {
		line += fmt.Sprintf(" · recycling worker %d (memory %s above max_memory %s)", r.old.slot, config.FormatBytes(r.old.over), config.FormatBytes(r.old.spec.MaxMemory))
	}
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

func (p *Pool) recycles() int {
	n := 0
	for _, s := range p.slots {
		n += s.recycles
	}
	return n
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
		Received:   p.received,
		Ignored:    p.spoofed,
		Dropped:    p.opts.Notify.Dropped(),
		IPCDropped: p.ipcDropped,
		Probes:     p.probes,
		MaxMemory:  p.spec.MaxMemory,
		Recycles:   p.recycles(),
		Accounting: p.accounting(),
	}
	now := time.Now()
	for _, w := range p.workers {
		p.measure(w, now)
		ws := WorkerStatus{Slot: w.slot, PID: w.pid, Generation: w.gen, State: w.state.String(),
			Started: w.started, Status: w.status,
			MemoryBytes: w.mem, CPUPercent: math.Round(w.cpuPct*10) / 10, CPUSeconds: w.cpuTotal.Seconds()}
		if w.candidate {
			ws.State = "candidate"
		}
		if s := p.slots[w.slot]; s != nil {
			ws.Restarts, ws.LastExit, ws.Recycles = s.restarts, s.lastExit, s.recycles
		}
		if w.group != nil {
			ws.Cgroup = w.group.Path()
		}
		st.MemoryBytes += ws.MemoryBytes
		st.CPUPercent += ws.CPUPercent
		st.Workers = append(st.Workers, ws)
	}
	st.CPUPercent = math.Round(st.CPUPercent*10) / 10
	sort.Slice(st.Workers, func(i, j int) bool {
		a, b := st.Workers[i], st.Workers[j]
		if a.Slot != b.Slot {
			return a.Slot < b.Slot
		}
		return a.Generation < b.Generation
	})
	return st
}
