package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/corraldev/corral/activation"
	"github.com/corraldev/corral/config"
	"github.com/corraldev/corral/control"
	"github.com/corraldev/corral/node"
	"github.com/corraldev/corral/notify"
	"github.com/corraldev/corral/workers"
	"github.com/spf13/pflag"
)

const runHelp = `Usage: corral run [flags] -- COMMAND [ARG...]

Runs COMMAND as N workers that all get the same sockets (listening TCP and unix
sockets, UDP and unix datagram sockets), exactly as systemd passes them: fds 3..,
LISTEN_FDS, LISTEN_FDNAMES, and LISTEN_PID set to the worker's own PID. A worker is online when it sends READY=1 (or "online") to
$NOTIFY_SOCKET, which corral owns. Each worker also gets CORRAL_WORKER_INDEX
(its slot, 0..N-1, also as NODE_APP_INSTANCE), CORRAL_WORKERS and
CORRAL_GENERATION.

Under systemd the sockets come from a socket unit; without it, give --listen.
SIGHUP or 'corral reload' replaces the workers one slot at a time: a new worker
starts, comes online, and only then is the old one sent the stop signal.
SIGTERM or SIGINT drains every worker and exits; a second one kills them at once.
`

// runCommand is `corral run`.
func runCommand(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", runHelp, stdout)
	var pl place
	flagCfg := config.Default()
	bindRun(fs, &pl, &flagCfg)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// systemd's sockets come first: a socket unit of a kind corral refuses
	// is the mistake to report, before the config it leads to (with
	// Accept=yes systemd starts a service per connection, under a name no
	// config has).
	inherited, err := inheritedSockets()
	if err != nil {
		return err
	}
	fail := func(err error) error {
		activation.Close(inherited)
		return err
	}
	command := fs.Args()
	load := func() (config.Config, error) { return loadConfig(pl.config, &flagCfg, fs, command) }
	cfg, err := load()
	if err != nil {
		return fail(err)
	}
	dir, err := pl.makeDir()
	if err != nil {
		return fail(err)
	}
	spec, err := buildSpec(cfg, dir)
	if err != nil {
		return fail(err)
	}
	log := newLogger(stderr)
	socks, err := sockets(cfg, inherited, log)
	if err != nil {
		return err
	}
	defer activation.Close(socks)
	cg := openCgroups(log)
	if err := cg.check(cfg); err != nil {
		return err
	}
	log.infof("%s", cfg.Describe(spec.Instances))
	return supervise(pl, dir, spec, socks, log, cg, func() (workers.Spec, error) {
		c, err := load()
		if err != nil {
			return workers.Spec{}, err
		}
		log.infof("reload: %s", c.Describe(c.Instances.Resolve(config.AvailableCPUs())))
		if err := cg.check(c); err != nil {
			return workers.Spec{}, err
		}
		return buildSpec(c, dir)
	})
}

// bindRun defines the flags of `corral run` on fs: where the app's files
// live, then every setting, bound to flagCfg (a Default()).
func bindRun(fs *pflag.FlagSet, pl *place, flagCfg *config.Config) {
	fs.SetInterspersed(false) // the command's own flags stay its own
	pl.bind(fs)
	config.BindFlags(fs, flagCfg)
}

// loadConfig reads the settings: defaults, the file, then the flags given.
func loadConfig(path string, flagCfg *config.Config, fs *pflag.FlagSet, command []string) (config.Config, error) {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return cfg, usageError{err}
		}
	}
	config.Overlay(&cfg, flagCfg, fs)
	if len(command) > 0 {
		cfg.Command = command
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// buildSpec turns settings into what the workers run, resolving the
// command and the working directory now, so that a reload of a broken
// release fails before any worker is touched.
func buildSpec(cfg config.Config, runtimeDir string) (workers.Spec, error) {
	dir := cfg.WorkingDirectory
	if dir != "" {
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return workers.Spec{}, usagef("working directory %q: not a directory that exists", dir)
		}
	}
	path, err := activation.LookCommand(cfg.Command[0], dir)
	if err != nil {
		return workers.Spec{}, usageError{err}
	}
	env := cfg.Env(os.Environ())
	if cfg.NodeIPC() {
		if env, err = node.WithPreload(env, runtimeDir); err != nil {
			return workers.Spec{}, err
		}
	}
	return workers.Spec{
		NodeIPC:       cfg.NodeIPC(),
		Path:          path,
		Args:          cfg.Command[1:],
		Env:           env,
		Dir:           dir,
		Instances:     cfg.Instances.Resolve(config.AvailableCPUs()),
		Ready:         workers.ReadyMode(cfg.ReadyMode()),
		ReadyTimeout:  time.Duration(cfg.ReadyTimeout),
		StopTimeout:   time.Duration(cfg.StopTimeout),
		StopSignal:    syscall.Signal(cfg.StopSignal),
		MaxSurge:      cfg.MaxSurge,
		ReloadFailure: workers.FailurePolicy(cfg.ReloadFailure),
		MaxMemory:     cfg.MaxMemory.Bytes(),
		MemoryLimit:   cfg.MemoryLimit.Bytes(),
	}, nil
}

// inheritedSockets returns the sockets systemd passed, if it did. A socket
// unit that passes a kind corral refuses is a usage error (exit 2).
func inheritedSockets() ([]activation.Socket, error) {
	inherited, err := activation.Inherited()
	if err != nil {
		err = fmt.Errorf("sockets from systemd: %w", err)
		if errors.As(err, new(*activation.KindError)) {
			err = usageError{err} // the socket unit is wrong: exit 2
		}
		return nil, err
	}
	return inherited, nil
}

// sockets returns the sockets systemd passed (inherited), or opens the
// --listen ones.
func sockets(cfg config.Config, inherited []activation.Socket, log *logger) ([]activation.Socket, error) {
	if len(inherited) > 0 {
		if len(cfg.Listen) > 0 {
			log.infof("systemd passed %d sockets; ignoring the listen setting (%d addresses)", len(inherited), len(cfg.Listen))
		}
		if cfg.ReceiveBuffer.Bytes() > 0 {
			log.infof("systemd passed the sockets; ignoring receive_buffer (%v): set ReceiveBuffer= in the socket unit", &cfg.ReceiveBuffer)
		}
		return inherited, nil
	}
	if len(cfg.Listen) == 0 {
		return nil, usagef("no sockets for the workers: give --listen ADDR (for example --listen 127.0.0.1:8080), set listen = [\"127.0.0.1:8080\"] in the config file, or start corral from a systemd socket unit")
	}
	specs := make([]activation.ListenSpec, 0, len(cfg.Listen))
	udp := false
	for _, l := range cfg.Listen {
		s, err := activation.ParseListen(l)
		if err != nil {
			return nil, usageError{err}
		}
		specs = append(specs, s)
		udp = udp || s.Network == "udp"
	}
	if cfg.ReceiveBuffer.Bytes() > 0 && !udp {
		return nil, usagef("receive_buffer %v: it sizes the UDP sockets corral opens, and listen names none: remove it, or add a udp:HOST:PORT address", &cfg.ReceiveBuffer)
	}
	socks, err := activation.Open(specs, activation.OpenOptions{ReceiveBuffer: int(cfg.ReceiveBuffer.Bytes())})
	if err != nil {
		return nil, err
	}
	checkReceiveBuffers(socks, int(cfg.ReceiveBuffer.Bytes()), log)
	return socks, nil
}

// checkReceiveBuffers warns about each UDP socket whose receive buffer the
// kernel made smaller than the want bytes asked for.
func checkReceiveBuffers(socks []activation.Socket, want int, log *logger) {
	for _, s := range socks {
		if want == 0 || s.Network() != "udp" {
			continue
		}
		if got, err := s.ReceiveBuffer(); err == nil && got < 2*want {
			log.warnf("socket %s: receive_buffer %d bytes, but the kernel capped it at net.core.rmem_max (SO_RCVBUF %d, which counts twice the bytes): raise it (sysctl -w net.core.rmem_max=%d) or run corral with CAP_NET_ADMIN", s.Addr, want, got, want)
		}
	}
}

// socketLine describes a socket for the log at start: its address, its
// name, and for a UDP socket its receive buffer as the kernel reports it.
func socketLine(s activation.Socket) string {
	line := fmt.Sprintf("socket %s (%s) goes to every worker", s.Addr, s.Name)
	if s.Network() == "udp" {
		if n, err := s.ReceiveBuffer(); err == nil {
			line += fmt.Sprintf("; receive buffer %d bytes (SO_RCVBUF)", n)
		}
	}
	return line
}

// supervise runs the pool until a signal stops it.
func supervise(pl place, dir string, spec workers.Spec, socks []activation.Socket, log *logger, cg cgroups, load func() (workers.Spec, error)) error {
	ctl, err := control.Listen(pl.controlPath(), log.warnf)
	if err != nil {
		return err
	}
	defer ctl.Close()
	ns, err := notify.Listen(filepath.Join(dir, "notify.sock"))
	if err != nil {
		return err
	}
	defer ns.Close()
	ns.SetLogf(log.warnf)

	pool, err := workers.New(workers.Options{
		Spec: spec, Load: load, Sockets: socks, Notify: ns, Up: notify.NewUpstream(),
		App: pl.appName(), Cgroups: cg.tree, Journal: log.journal,
		OutputHint: outputHint(), Logf: log.infof, Warnf: log.warnf,
	})
	if err != nil {
		return err // the settings were checked already: a run-time failure, exit 1
	}
	for _, s := range socks {
		log.infof("%s", socketLine(s))
	}
	log.infof("starting %d workers of %s; control socket %s (corral reload %s)",
		spec.Instances, spec.Path, ctl.Path(), reloadHint(pl))

	// The pool runs until ctx is cancelled; signals are handled until
	// supervise returns, so a second SIGTERM during the drain still kills.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigCtx, sigDone := context.WithCancel(context.Background())
	defer sigDone()
	go ctl.Serve(sigCtx, pool)
	go handleSignals(sigCtx, pool, cancel, log)
	if err := pool.Run(ctx); err != nil {
		return err
	}
	log.infof("all workers stopped; exiting")
	return nil
}

// handleSignals is corral's signal policy: HUP reloads; the first TERM or
// INT drains and exits, the second kills every worker at once.
func handleSignals(ctx context.Context, pool *workers.Pool, stop context.CancelFunc, log *logger) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	terms := 0
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				log.infof("SIGHUP: rolling reload")
				go pool.Reload(ctx) // the pool logs the result
				continue
			}
			terms++
			if terms == 1 {
				log.infof("%v: draining the workers (send it again to kill them at once)", sig)
				stop()
				continue
			}
			log.warnf("%v again: killing every worker now", sig)
			pool.Kill()
		}
	}
}

// outputHint says where workers' output goes, for failure messages.
func outputHint() string {
	if name := instanceName(); name != "" {
		return "corral logs " + name
	}
	if unit := os.Getenv("CORRAL_UNIT"); unit != "" {
		return "journalctl -u " + unit
	}
	if os.Getenv("INVOCATION_ID") != "" {
		return "the journal of this unit (systemctl status shows its last lines)"
	}
	return "corral's standard error"
}

func reloadHint(pl place) string {
	if name := instanceName(); name != "" {
		return name
	}
	switch {
	case pl.control != "":
		return "--control " + pl.control
	case pl.config != "" && pl.name == "":
		return "--config " + pl.config
	}
	return "--name " + pl.appName()
}

// instanceName returns the app's name when corral runs as the instance
// of a template unit, TEMPLATE@NAME.service, so that its messages name the
// app as corral start, corral reload NAME and corral logs NAME do.
func instanceName() string {
	unit, ok := strings.CutSuffix(os.Getenv("CORRAL_UNIT"), ".service")
	if _, name, found := strings.Cut(unit, "@"); ok && found && name != "" {
		return name
	}
	return ""
}
