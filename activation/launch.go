package activation

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// Worker is everything one worker process starts with: the worker contract
// of corral's README, built in one place. Launcher.Start starts it.
//
// The worker gets, and nothing else:
//   - fd 0 /dev/null, fds 1 and 2 Stdout and Stderr;
//   - Sockets as fds 3, 4, ... in order, with LISTEN_FDS, LISTEN_FDNAMES
//     and LISTEN_PID set to its own PID by the trampoline (see
//     MaybeRunTrampoline);
//   - Extra as the fds after the sockets, in order, each announced by its
//     FdEnv variable;
//   - Env without the variables the contract owns (contractVars, and each
//     Extra's variables), plus NOTIFY_SOCKET, CORRAL_WORKER_INDEX and
//     NODE_APP_INSTANCE (Slot), CORRAL_WORKERS (Slots), CORRAL_GENERATION,
//     and each Extra's variables;
//   - a process group of its own, and SIGKILL when corral dies
//     (PR_SET_PDEATHSIG, set from a thread that lives as long as the
//     Launcher);
//   - with Cgroup, a cgroup of its own, which the trampoline moves it into
//     before it runs the app, so that the app and its children are there;
//   - with Journal, stdout and stderr connected to journald as a stream of
//     its own, by the worker's own process before it runs the app, so that
//     journald records the worker's PID and cgroup, and JOURNAL_STREAM
//     naming that stream (see MaybeRunTrampoline).
type Worker struct {
	Path string   // the command, absolute (see LookCommand)
	Args []string // its arguments, without the command
	Dir  string   // working directory; "" is corral's
	Env  []string // the app's environment, before the contract's variables

	Sockets []Socket    // fds 3..
	Extra   []ExtraFile // fds after the sockets

	NotifySocket string // NOTIFY_SOCKET: corral's socket that workers notify
	Slot         int    // CORRAL_WORKER_INDEX and NODE_APP_INSTANCE
	Slots        int    // CORRAL_WORKERS
	Generation   int    // CORRAL_GENERATION

	// Stdout and Stderr are the worker's fds 1 and 2; nil means corral's.
	Stdout, Stderr *os.File

	// Cgroup is the directory of a cgroup v2 that the worker moves into
	// before it runs the app; "" means corral's. (Not clone3's
	// CLONE_INTO_CGROUP: systemd's RestrictNamespaces= makes clone3 fail
	// with ENOSYS, and the shipped unit sets it.)
	Cgroup string

	// Journal, when set, is the identifier (SYSLOG_IDENTIFIER) of a journal
	// stream that becomes the worker's stdout and stderr, with <N>
	// priority prefixes read per line. Where the journal cannot be reached,
	// the worker keeps Stdout and Stderr.
	Journal string
}

// ExtraFile is a descriptor a worker gets after the sockets, for a runtime
// that expects one (Node's IPC channel, for example). The launch sets FdEnv
// to its fd number and adds Env. The caller keeps File and closes it once
// Start returns: the worker has its own copy.
type ExtraFile struct {
	File  *os.File
	FdEnv string   // variable that gets the fd number, e.g. NODE_CHANNEL_FD
	Env   []string // more KEY=VALUE variables that go with it
}

// contractVars are the variables the launch sets for each worker, or that
// describe corral's own relation to its service manager and must not reach
// a worker (WATCHDOG_*, LISTEN_PIDFDID, systemd's NOTIFY_SOCKET).
var contractVars = []string{
	"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PIDFDID",
	"NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC",
	"CORRAL_WORKER_INDEX", "NODE_APP_INSTANCE", "CORRAL_WORKERS", "CORRAL_GENERATION",
}

// environ returns the worker's environment, without LISTEN_PID, which the
// trampoline alone can know.
func (w *Worker) environ() []string {
	drop := map[string]bool{}
	for _, k := range contractVars {
		drop[k] = true
	}
	var added []string
	for i, x := range w.Extra {
		drop[x.FdEnv] = true
		added = append(added, x.FdEnv+"="+strconv.Itoa(3+len(w.Sockets)+i))
		for _, kv := range x.Env {
			k, _, _ := strings.Cut(kv, "=")
			drop[k] = true
			added = append(added, kv)
		}
	}
	env := make([]string, 0, len(w.Env)+len(added)+7)
	for _, kv := range w.Env {
		if k, _, _ := strings.Cut(kv, "="); !drop[k] {
			env = append(env, kv)
		}
	}
	env = append(env, listenEnv(w.Sockets)...)
	slot := strconv.Itoa(w.Slot)
	env = append(env,
		"NOTIFY_SOCKET="+w.NotifySocket,
		"CORRAL_WORKER_INDEX="+slot,
		"NODE_APP_INSTANCE="+slot,
		"CORRAL_WORKERS="+strconv.Itoa(w.Slots),
		"CORRAL_GENERATION="+strconv.Itoa(w.Generation),
	)
	return append(env, added...)
}

// listenEnv returns LISTEN_FDS and LISTEN_FDNAMES for socks, nil for none.
// A socket without a Name is named "unknown", systemd's convention.
func listenEnv(socks []Socket) []string {
	if len(socks) == 0 {
		return nil
	}
	names := make([]string, len(socks))
	for i, s := range socks {
		names[i] = s.Name
		if names[i] == "" {
			names[i] = unknownName
		}
	}
	return []string{
		"LISTEN_FDS=" + strconv.Itoa(len(socks)),
		"LISTEN_FDNAMES=" + strings.Join(names, ":"),
	}
}

// argv returns the trampoline's command line for w (see MaybeRunTrampoline):
// argv[0] is the app's path, so that ps shows the app during the trampoline's
// few milliseconds too.
func (w *Worker) argv() []string {
	argv := make([]string, 0, 7+len(w.Args))
	argv = append(argv, w.Path, TrampolineArg, "fds="+strconv.Itoa(len(w.Sockets)+len(w.Extra)))
	if w.Cgroup != "" {
		argv = append(argv, "cgroup="+w.Cgroup)
	}
	if w.Journal != "" {
		argv = append(argv, "journal="+w.Journal)
	}
	argv = append(argv, "--", w.Path)
	return append(argv, w.Args...)
}

// files returns the fd table of w: stdin, stdout, stderr, the sockets, the
// extra files. Calling Fd on them is safe: the sockets come from
// stableFile, whose descriptors Fd leaves in their mode.
func (w *Worker) files(devNull *os.File) []*os.File {
	out, errOut := w.Stdout, w.Stderr
	if out == nil {
		out = os.Stdout
	}
	if errOut == nil {
		errOut = os.Stderr
	}
	fs := []*os.File{devNull, out, errOut}
	for _, s := range w.Sockets {
		fs = append(fs, s.File)
	}
	for _, x := range w.Extra {
		fs = append(fs, x.File)
	}
	return fs
}

// Launcher starts workers. It forks every one from a single OS thread that
// stays locked for the Launcher's life: PR_SET_PDEATHSIG fires when the
// thread that forked a child ends, not the process (golang/go#27505), so
// forking from a thread the Go runtime may retire would kill workers at
// random. Close it once every process it started has been waited for.
type Launcher struct {
	reqs    chan launchReq
	quit    chan struct{}
	done    chan struct{}
	devNull *os.File
}

type launchReq struct {
	w     *Worker
	reply chan launchReply
}

type launchReply struct {
	p   *Process
	err error
}

// NewLauncher starts the launch thread.
func NewLauncher() (*Launcher, error) {
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, fmt.Errorf("open %s for the workers' stdin: %w", os.DevNull, err)
	}
	l := &Launcher{reqs: make(chan launchReq), quit: make(chan struct{}), done: make(chan struct{}), devNull: devNull}
	go l.run()
	return l, nil
}

func (l *Launcher) run() {
	defer close(l.done)
	// Never unlocked: the thread exits with the goroutine, and the
	// workers it forked are gone by then.
	runtime.LockOSThread()
	for {
		select {
		case r := <-l.reqs:
			p, err := l.fork(r.w)
			r.reply <- launchReply{p, err}
		case <-l.quit:
			return
		}
	}
}

// Start starts w through the trampoline and returns the running process.
// The error names the command.
func (l *Launcher) Start(w *Worker) (*Process, error) {
	reply := make(chan launchReply, 1)
	select {
	case l.reqs <- launchReq{w, reply}:
	case <-l.done:
		return nil, errors.New("start " + w.Path + ": the launcher is closed")
	}
	r := <-reply
	return r.p, r.err
}

// Close ends the launch thread. Processes it started must have exited: a
// live one would get SIGKILL from its death signal.
func (l *Launcher) Close() {
	select {
	case <-l.quit:
	default:
		close(l.quit)
	}
	<-l.done
	l.devNull.Close()
}

// fork runs on the launch thread.
func (l *Launcher) fork(w *Worker) (*Process, error) {
	files := w.files(l.devNull)
	fds := make([]uintptr, len(files))
	for i, f := range files {
		fds[i] = f.Fd()
	}
	pidfd := -1
	attr := &syscall.ProcAttr{
		Dir:   w.Dir,
		Env:   w.environ(),
		Files: fds,
		Sys: &syscall.SysProcAttr{
			Setpgid:   true,
			Pdeathsig: syscall.SIGKILL,
			PidFD:     &pidfd,
		},
	}
	pid, err := syscall.ForkExec("/proc/self/exe", w.argv(), attr)
	runtime.KeepAlive(files)
	if err != nil {
		if _, derr := os.Stat(w.Dir); w.Dir != "" && derr != nil {
			err = fmt.Errorf("working directory: %w", derr) // the child's chdir failed
		}
		return nil, fmt.Errorf("start %s: %w", w.Path, err)
	}
	return newProcess(pid, pidfd), nil
}
