package workers

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/corraldev/corral/activation"
	"github.com/corraldev/corral/cgroup"
	"github.com/corraldev/corral/config"
	"golang.org/x/sys/unix"
)

// watchKind is what a cgroup file watch is for.
type watchKind int

const (
	watchEmpty  watchKind = iota // cgroup.events of an exited worker's cgroup: remove it once empty
	watchMemory                  // memory.events of an online worker: memory.high was crossed
)

type watch struct {
	w    *worker
	kind watchKind
}

// startWatching starts the inotify reader when there is a cgroup tree. Its
// goroutine ends when Run closes the watcher.
func (p *Pool) startWatching() error {
	if p.opts.Cgroups == nil {
		return nil
	}
	w, err := cgroup.NewWatcher()
	if err != nil {
		return err
	}
	p.watcher = w
	go func() {
		for {
			wds, err := w.Read()
			if err != nil {
				return
			}
			select {
			case p.cgEvents <- wds:
			case <-p.quit:
				return
			}
		}
	}()
	return nil
}

// prepare gives the worker about to start in slot index its cgroup and
// its journal stream, where corral has them.
func (p *Pool) prepare(lw *activation.Worker, spec *Spec) (*cgroup.Group, error) {
	if p.opts.Journal {
		lw.Journal = p.opts.App + "/" + strconv.Itoa(lw.Slot)
	}
	if p.opts.Cgroups == nil {
		return nil, nil
	}
	g, err := p.opts.Cgroups.NewGroup(cgroup.GroupName(p.opts.App, lw.Slot, lw.Generation),
		cgroup.Limits{MemoryMax: spec.MemoryLimit})
	if err != nil {
		return nil, err
	}
	lw.Cgroup = g.Path()
	return g, nil
}

// endGroup kills what is left in the cgroup of w, whose main process has
// exited, and removes the cgroup once it is empty: now, or when the kernel
// says so.
func (p *Pool) endGroup(w *worker) {
	p.unwatch(&w.memWatch)
	g := w.group
	if g == nil {
		return
	}
	if pop, err := g.Populated(); err == nil && pop {
		if err := g.Kill(); err != nil {
			p.opts.Warnf("%s: kill what is left in its cgroup: %v", w, err)
		} else {
			p.opts.Logf("%s: killed what was left in its cgroup %s", w, g.Name())
		}
	}
	if p.removeGroup(w) {
		return
	}
	wd, err := p.watcher.Add(g.EventsFile())
	if err != nil {
		p.opts.Warnf("%s: watch its cgroup until it is empty: %v", w, err)
		return
	}
	w.groupWatch = wd
	p.watches[wd] = watch{w, watchEmpty}
	p.removeGroup(w) // it may have emptied before the watch
}

// removeGroup removes w's cgroup if it is empty, and reports whether it is
// gone.
func (p *Pool) removeGroup(w *worker) bool {
	if w.group == nil {
		return true
	}
	err := w.group.Remove()
	if errors.Is(err, unix.EBUSY) {
		return false
	}
	if err != nil {
		p.opts.Warnf("%s: %v", w, err)
	}
	p.unwatch(&w.groupWatch)
	w.group = nil
	return true
}

// unwatch ends the watch *wd, if any.
func (p *Pool) unwatch(wd *int) {
	if *wd == 0 {
		return
	}
	p.watcher.Remove(*wd)
	delete(p.watches, *wd)
	*wd = 0
}

// cgroupEvents handles files the kernel marked modified.
func (p *Pool) cgroupEvents(wds []int) {
	for _, wd := range wds {
		wt, ok := p.watches[wd]
		if !ok {
			continue
		}
		switch wt.kind {
		case watchEmpty:
			p.removeGroup(wt.w)
		case watchMemory:
			p.memoryEvent(wt.w)
		}
	}
}

// closeWatcher ends the inotify reader and removes the cgroups that have
// emptied meanwhile; systemd removes the rest with the unit.
func (p *Pool) closeWatcher() {
	if p.watcher == nil {
		return
	}
	for _, wt := range p.watches {
		if wt.kind == watchEmpty {
			p.removeGroup(wt.w)
		}
	}
	p.watcher.Close()
}

// oomText is how w ended when the OOM killer killed it at its memory
// limit, or how otherwise.
func (p *Pool) oomText(w *worker, how string) string {
	if w.group == nil || w.spec.MemoryLimit <= 0 {
		return how
	}
	ev, err := w.group.MemoryEvents()
	if err != nil || !ev.OOMKilled() {
		return how
	}
	return fmt.Sprintf("was killed by the OOM killer at memory_limit %s (%s)", config.FormatBytes(w.spec.MemoryLimit), how)
}
