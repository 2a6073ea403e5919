package workers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"

	"github.com/corraldev/corral/activation"
	"github.com/corraldev/corral/cgroup"
	"github.com/corraldev/corral/node"
	"github.com/corraldev/corral/notify"
	"github.com/corraldev/corral/readiness"
	"golang.org/x/sys/unix"
)

// Options configure a Pool. Spec, Sockets and Notify are required.
type Options struct {
	Spec Spec // the first generation

	// Load returns the Spec for a reload, re-reading the configuration. An
	// error fails the reload before any worker is touched. Nil means a
	// reload restarts every worker with the current Spec.
	Load func() (Spec, error)

	Sockets []activation.Socket // handed to every worker as fds 3..
	Notify  *notify.Socket      // corral's socket that workers notify; the pool reads it
	Up      *notify.Upstream    // the service manager; nil for none

	// App is the app's name, in the workers' cgroup names and journal
	// identifiers. Default "app".
	App string
	// Cgroups is the cgroup tree systemd delegated to corral: each worker
	// runs in a cgroup of its own there, which is killed whole when the
	// worker's main process exits or its stop timeout ends. Nil for none:
	// a worker's figures then come from its process tree in /proc, and
	// stop signals and SIGKILL reach its process group.
	Cgroups *cgroup.Tree
	// Journal makes each worker's stdout and stderr a journal stream of
	// its own, identified "APP/SLOT"; set it when corral's own output goes
	// to the journal. Otherwise workers share corral's stdout and stderr.
	Journal bool

	// OutputHint says where a worker's output went, for failure messages,
	// e.g. "journalctl -u corral@api". Default: corral's standard error.
	OutputHint string

	Backoff Backoff
	// SampleInterval is how often a worker's memory is looked at for
	// max_memory where the kernel does not notify. Default 5s.
	SampleInterval time.Duration

	Logf  func(format string, args ...any) // informational lines
	Warnf func(format string, args ...any) // warnings and errors
}

// Backoff is the delay before a crashed worker is restarted in its slot:
// Initial after the first crash, times 1.5 after each further one, at most
// Max, and back to Initial once a worker has been online for Reset.
// The zero value means 100ms, 15s and 30s, as PM2's exp_backoff_restart_delay.
type Backoff struct {
	Initial, Max, Reset time.Duration
}

func (b *Backoff) defaults() {
	if b.Initial <= 0 {
		b.Initial = 100 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 15 * time.Second
	}
	if b.Reset <= 0 {
		b.Reset = 30 * time.Second
	}
}

// slot is one place in the pool. cur is the worker serving it, nil while it
// waits for a restart.
type slot struct {
	index    int
	cur      *worker
	spec     *Spec // what cur runs, and what a restart runs
	gen      int
	restarts int
	lastExit string
	delay    time.Duration // the next restart's backoff
	timer    *time.Timer   // pending restart
	failed   bool          // a start failed before corral was ever ready

	recycles     int           // workers recycled for max_memory
	recycleDelay time.Duration // before the next try, after a recycle failed
	recycleAfter time.Time     // no recycle before
}

// Pool supervises the workers. Create it with New, run it with Run; Reload,
// Status and Kill may be called from any goroutine while Run runs.
type Pool struct {
	opts     Options
	probe    readiness.Sockets // for ReadyListen
	baseFDs  int               // descriptors corral holds besides its workers' (see checkFileLimit)
	launcher *activation.Launcher
	herald   *herald

	// Owned by Run.
	spec       *Spec
	generation int // of the last completed reload, or 1
	lastGen    int // the highest generation started
	slots      map[int]*slot
	workers    map[int]*worker // by PID
	roll       *rollout
	queued     []chan ReloadResult
	lastReload *ReloadResult
	ready      bool // READY=1 sent
	everOnline bool
	stopping   bool
	fatal      error
	received   uint64 // notify messages handled
	spoofed    uint64 // of them, from strangers
	gone       recent // workers that exited lately, for their late datagrams
	ipcDropped uint64
	probes     uint64       // looks at starting ReadyListen workers
	probeTick  *time.Ticker // runs only while a ReadyListen worker starts
	lastStatus string
	lastSpoof  time.Time
	rec        *recycle        // the max_memory recycle running, or nil
	watcher    *cgroup.Watcher // with Options.Cgroups
	watches    map[int]watch   // by watch descriptor
	sampleTick *kernelTicker   // runs only while a worker's max_memory is sampled

	exits    chan exitEvent
	msgs     chan notify.Message
	ipcs     chan ipcEvent
	timers   chan timerEvent
	reloads  chan chan ReloadResult
	statuses chan chan Status
	kills    chan struct{}
	cgEvents chan []int    // watch descriptors of modified cgroup files
	quit     chan struct{} // closed when Run returns
}

type exitEvent struct {
	w    *worker
	exit activation.Exit
	err  error // the wait failed
}

type timerKind int

const (
	readyTimeout timerKind = iota
	killNow
	restartSlot
	signalNow
	recycleNow // a slot's recycle may be tried again
)

type timerEvent struct {
	kind timerKind
	w    *worker
	slot *slot
}

// New checks opts and returns a Pool ready to Run.
func New(opts Options) (*Pool, error) {
	if len(opts.Sockets) == 0 {
		return nil, errors.New("no listening sockets for the workers")
	}
	if opts.Notify == nil {
		return nil, errors.New("no notify socket")
	}
	opts.Backoff.defaults()
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Warnf == nil {
		opts.Warnf = opts.Logf
	}
	if opts.OutputHint == "" {
		opts.OutputHint = "corral's standard error"
	}
	if opts.Up == nil {
		opts.Up = &notify.Upstream{}
	}
	if opts.App == "" {
		opts.App = "app"
	}
	if opts.SampleInterval <= 0 {
		opts.SampleInterval = sampleInterval
	}
	p := &Pool{
		opts:     opts,
		slots:    make(map[int]*slot),
		workers:  make(map[int]*worker),
		exits:    make(chan exitEvent),
		msgs:     make(chan notify.Message),
		ipcs:     make(chan ipcEvent),
		timers:   make(chan timerEvent),
		reloads:  make(chan chan ReloadResult),
		statuses: make(chan chan Status),
		kills:    make(chan struct{}, 1),
		cgEvents: make(chan []int),
		watches:  make(map[int]watch),
		quit:     make(chan struct{}),
	}
	files := make([]*os.File, len(opts.Sockets))
	for i, s := range opts.Sockets {
		files[i] = s.File
	}
	probe, err := readiness.SocketsOf(files)
	if err != nil {
		return nil, fmt.Errorf("sockets: %w", err)
	}
	p.probe = probe
	spec := opts.Spec
	p.spec = &spec
	// Up to two workers a slot during a reload, the old one draining.
	p.baseFDs = baseFDs(1) // and the workers' stdin, which Run opens
	if err := checkFileLimit(p.spec, 2*spec.Instances, p.baseFDs); err != nil {
		return nil, err
	}
	return p, nil
}

// Run starts the workers and supervises them until ctx is done, then stops
// them all: the stop signal, the stop timeout, SIGKILL, and every one reaped.
// It returns nil after a stop that ctx asked for, and an error when no
// worker ever came online at start. Run may be called once.
func (p *Pool) Run(ctx context.Context) error {
	defer close(p.quit)
	launcher, err := activation.NewLauncher()
	if err != nil {
		return err
	}
	p.launcher = launcher
	defer launcher.Close() // after every worker is reaped: the loop below waits for them
	p.herald = newHerald(p.opts.Up, p.opts.Warnf)
	defer p.herald.stop(time.Second)
	nctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.opts.Notify.Serve(nctx, p.msgs)

	var watchdog <-chan time.Time
	if d := p.opts.Up.WatchdogInterval(); d > 0 {
		t := time.NewTicker(d)
		defer t.Stop()
		watchdog = t.C
	}

	defer p.stopProbing()
	if err := p.startWatching(); err != nil {
		return err
	}
	defer p.closeWatcher()
	defer p.stopSampling()

	p.generation, p.lastGen = 1, 1
	for i := 0; i < p.spec.Instances; i++ {
		s := &slot{index: i, spec: p.spec, gen: 1, delay: p.opts.Backoff.Initial}
		p.slots[i] = s
		p.startSlot(s)
	}
	p.tend()

	done := ctx.Done()
	for !p.stopping || len(p.workers) > 0 {
		select {
		case <-done:
			done = nil
			p.beginStop("corral is stopping")
		case ev := <-p.exits:
			p.exited(ev.w, exitText(ev.exit, ev.err))
		case m := <-p.msgs:
			p.message(m)
		case ev := <-p.ipcs:
			p.ipc(ev)
		case ev := <-p.timers:
			p.timer(ev)
		case reply := <-p.reloads:
			p.requestReload(reply)
		case reply := <-p.statuses:
			reply <- p.status()
		case <-p.kills:
			p.killAll()
		case <-p.probeC():
			p.probeListening()
		case <-p.sampleC():
			p.sampleMemory()
		case wds := <-p.cgEvents:
			p.cgroupEvents(wds)
		case <-watchdog:
			if p.healthy() {
				p.herald.send(upMsg{kind: upWatchdog})
			}
		}
		p.tend()
	}
	return p.fatal
}

// tend runs after every event: it starts a max_memory recycle that is due,
// publishes a changed status line, and runs the periodic timers that the
// workers now need, and no others.
func (p *Pool) tend() {
	p.maybeRecycle()
	p.publish()
	p.armProbe()
	p.armMemory()
}

// Reload asks for a rolling reload and waits for its result. A reload asked
// for while one runs is queued; all queued requests share one reload that
// runs after the current one.
func (p *Pool) Reload(ctx context.Context) ReloadResult {
	reply := make(chan ReloadResult, 1)
	select {
	case p.reloads <- reply:
	case <-p.quit:
		return ReloadResult{Message: "reload failed: corral has stopped"}
	case <-ctx.Done():
		return ReloadResult{Message: "reload not started: " + ctx.Err().Error()}
	}
	select {
	case r := <-reply:
		return r
	case <-ctx.Done():
		return ReloadResult{Message: "stopped waiting for the reload: " + ctx.Err().Error()}
	}
}

// Status returns a snapshot of the pool.
func (p *Pool) Status(ctx context.Context) (Status, error) {
	reply := make(chan Status, 1)
	select {
	case p.statuses <- reply:
	case <-p.quit:
		return Status{}, errors.New("corral has stopped")
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
	st := <-reply
	st.Corral = readSelf() // here, not in Run: /proc is read off the pool's goroutine
	return st, nil
}

// Kill sends SIGKILL to every worker at once (a second SIGTERM).
func (p *Pool) Kill() {
	select {
	case p.kills <- struct{}{}:
	default:
	}
}

// after delivers ev to Run after d, unless Run has returned.
func (p *Pool) after(d time.Duration, ev timerEvent) *time.Timer {
	return time.AfterFunc(d, func() {
		select {
		case p.timers <- ev:
		case <-p.quit:
		}
	})
}

// start starts one worker of spec in slot index. The caller counts it
// online at once when spec.Ready is ReadyExec. Its error says why the
// worker could not be started; the caller logs it (see startFailed).
func (p *Pool) start(index int, spec *Spec, gen int, candidate bool) (*worker, error) {
	lw := &activation.Worker{
		Path: spec.Path, Args: spec.Args, Dir: spec.Dir, Env: spec.Env,
		Sockets:      p.opts.Sockets,
		NotifySocket: p.opts.Notify.Path(),
		Slot:         index, Slots: spec.Instances, Generation: gen,
	}
	group, err := p.prepare(lw, spec)
	if err != nil {
		return nil, err
	}
	var ipc *node.Channel
	if spec.NodeIPC {
		c, child, err := node.NewChannel()
		if err != nil {
			if group != nil {
				group.Remove()
			}
			return nil, err
		}
		defer child.File.Close()
		ipc = c
		lw.Extra = append(lw.Extra, child)
	}
	proc, err := p.launcher.Start(lw)
	if err != nil {
		if ipc != nil {
			ipc.Close()
		}
		if group != nil {
			group.Remove()
		}
		return nil, err
	}
	w := &worker{
		slot: index, gen: gen, spec: spec, proc: proc, pid: proc.Pid,
		started: time.Now(), candidate: candidate, ipc: ipc, group: group,
	}
	p.workers[w.pid] = w
	if ipc != nil {
		go p.readIPC(w, ipc)
	}
	go func() {
		e, err := proc.Wait()
		p.exits <- exitEvent{w, e, err}
	}()
	if group != nil {
		p.opts.Logf("%s: started in cgroup %s", w, group.Name())
	} else {
		p.opts.Logf("%s: started", w)
	}
	if spec.Ready != ReadyExec {
		w.readyTimer = p.after(spec.ReadyTimeout, timerEvent{kind: readyTimeout, w: w})
	}
	return w, nil
}

// startSlot starts the worker that serves s, or schedules a retry.
func (p *Pool) startSlot(s *slot) {
	w, err := p.start(s.index, s.spec, s.gen, false)
	if err != nil {
		p.failed(s, p.startFailed(s.index, s.gen, err), time.Time{})
		return
	}
	s.cur = w
	if s.spec.Ready == ReadyExec {
		p.online(w)
	}
}

// startFailed logs that a worker could not be started and returns why, as
// a slot's last exit and a reload's reason give it.
func (p *Pool) startFailed(slot, gen int, err error) string {
	why := "could not be started: " + err.Error()
	p.opts.Warnf("worker %d (generation %d) %s", slot, gen, why)
	return why
}

// stop sends w the stop signal and arms SIGKILL at its stop timeout.
func (p *Pool) stop(w *worker, why string) {
	if w.state == stopping {
		return
	}
	w.state, w.why = stopping, why
	w.stopTimers()
	w.killTimer = p.after(w.spec.StopTimeout, timerEvent{kind: killNow, w: w})
	if w.ipc != nil && w.ipc.Shutdown() {
		grace := shutdownGrace(w.spec)
		p.opts.Logf("%s: stopping (%s): sent 'shutdown'; %s follows in %v", w, why, sigName(w.spec.StopSignal), grace)
		w.signalTimer = p.after(grace, timerEvent{kind: signalNow, w: w})
		p.wake(w)
		return
	}
	p.opts.Logf("%s: stopping (%s): sending %s", w, why, sigName(w.spec.StopSignal))
	p.sendStop(w)
}

// sendStop sends w its stop signal, then SIGCONT (see wake).
func (p *Pool) sendStop(w *worker) {
	if err := w.signal(w.spec.StopSignal); err != nil {
		p.opts.Warnf("%s: send %s: %v", w, sigName(w.spec.StopSignal), err)
	}
	p.wake(w)
}

// wake sends w SIGCONT, as systemd does after a stop signal: a worker
// stopped by SIGSTOP, a debugger or job control would otherwise act on
// its stop request only at the stop timeout's SIGKILL. A worker that runs
// ignores it.
func (p *Pool) wake(w *worker) {
	if err := w.signal(syscall.SIGCONT); err != nil {
		p.opts.Warnf("%s: send SIGCONT: %v", w, err)
	}
}

func (p *Pool) killAll() {
	for _, w := range p.workers {
		w.state = stopping
		if err := w.kill(); err != nil {
			p.opts.Warnf("%s: kill: %v", w, err)
		}
	}
}

// beginStop stops every worker and refuses further work.
func (p *Pool) beginStop(why string) {
	if p.stopping {
		return
	}
	p.stopping = true
	p.herald.send(upMsg{kind: upStopping, status: fmt.Sprintf("stopping: draining %d workers", len(p.workers))})
	if p.roll != nil {
		p.endRollout(false, "reload aborted: "+why)
	}
	p.replyQueued(ReloadResult{Message: "reload aborted: " + why})
	p.rec = nil // its candidate stops with every other worker
	for _, s := range p.slots {
		if s.timer != nil {
			s.timer.Stop()
		}
	}
	for _, w := range p.sortedWorkers() {
		p.stop(w, why)
	}
}

func (p *Pool) sortedWorkers() []*worker {
	ws := make([]*worker, 0, len(p.workers))
	for _, w := range p.workers {
		ws = append(ws, w)
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].pid < ws[j].pid })
	return ws
}

func (p *Pool) healthy() bool {
	return !p.ready || p.onlineCount() > 0
}

func (p *Pool) onlineCount() int {
	n := 0
	for _, s := range p.slots {
		if s.cur != nil && s.cur.state == online {
			n++
		}
	}
	return n
}

func sigName(s syscall.Signal) string {
	return unix.SignalName(s)
}
