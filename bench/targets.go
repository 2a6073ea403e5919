package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// A target is one way of running N workers of an app on one port.
type target interface {
	// start launches the workers and returns; the caller waits for the
	// first response.
	start(ctx context.Context) error
	// supervisor is the supervisor's PID, 0 when there is none.
	supervisor() int
	// roots are the processes whose trees make up the whole deployment.
	roots() []int
	// reload replaces every worker and returns when the reload command does.
	reload(ctx context.Context) error
	// stop ends every process the target started.
	stop() error
}

// env is what every target needs: the built binaries and the scratch dir.
type env struct {
	root    string // corral's repository
	scratch string
	corral  string // built corral binary
	hello   string // built examples/hello binary
	pm2     string // installed pm2 CLI
	app     string // examples/pm2-app/app.js
	preload string // node/corral-preload.js
	workers int
}

// command returns a Cmd in its own process group with output to a log file.
func (e *env) command(dir, log string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = e.root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if f, err := os.OpenFile(filepath.Join(dir, log), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		cmd.Stdout, cmd.Stderr = f, f
	}
	return cmd
}

// corralTarget runs the workers under `corral run`.
type corralTarget struct {
	e       *env
	dir     string
	port    int
	argv    []string // the worker command
	flags   []string // corral run's flags beyond the listen address and the control socket
	cmd     *exec.Cmd
	waited  chan struct{}
	control string
}

func newCorral(e *env, dir string, port int, argv ...string) *corralTarget {
	return &corralTarget{e: e, dir: dir, port: port, argv: argv, control: filepath.Join(dir, "control.sock"),
		flags: []string{"--stop-timeout", "5s"}}
}

func (t *corralTarget) start(ctx context.Context) error {
	p := strconv.Itoa(t.port)
	args := append([]string{"run", "-i", strconv.Itoa(t.e.workers), "--listen", "127.0.0.1:" + p,
		"--control", t.control, "-e", "PORT=" + p}, t.flags...)
	t.cmd = t.e.command(t.dir, "corral.log", t.e.corral, append(append(args, "--"), t.argv...)...)
	if err := t.cmd.Start(); err != nil {
		return fmt.Errorf("start corral: %w", err)
	}
	t.waited = make(chan struct{})
	go func() { t.cmd.Wait(); close(t.waited) }()
	return nil
}

func (t *corralTarget) supervisor() int { return t.cmd.Process.Pid }
func (t *corralTarget) roots() []int    { return []int{t.cmd.Process.Pid} }

func (t *corralTarget) reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, t.e.corral, "reload", "--control", t.control).CombinedOutput()
	if err != nil {
		return fmt.Errorf("corral reload: %w: %s", err, out)
	}
	return nil
}

func (t *corralTarget) stop() error {
	if t.cmd == nil || t.cmd.Process == nil {
		return nil
	}
	pids := tree(t.cmd.Process.Pid)
	t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.waited:
	case <-time.After(40 * time.Second): // above corral's default stop timeout, 30s
	}
	if !waitGone(pids, 2*time.Second) {
		return killAll(pids)
	}
	return nil
}

// pm2Target runs the workers under PM2 cluster mode, with its own PM2_HOME.
type pm2Target struct {
	e     *env
	dir   string
	port  int
	god   int
	known []int // every PID seen in the tree, for the final sweep
}

func (t *pm2Target) pm2(ctx context.Context, args ...string) error {
	cmd := t.e.command(t.dir, "pm2-cli.log", t.e.pm2, args...)
	cmd.Env = append(os.Environ(), "PM2_HOME="+filepath.Join(t.dir, "pm2home"), "PORT="+strconv.Itoa(t.port))
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pm2 %s: %w", args[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("pm2 %s: %w (see %s)", args[0], err, filepath.Join(t.dir, "pm2-cli.log"))
		}
		return nil
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("pm2 %s: %w", args[0], ctx.Err())
	}
}

func (t *pm2Target) start(ctx context.Context) error {
	err := t.pm2(ctx, "start", t.e.app, "--name", "bench", "-i", strconv.Itoa(t.e.workers),
		"--wait-ready", "--listen-timeout", "10000", "--kill-timeout", "5000")
	if pid, perr := readPIDFile(filepath.Join(t.dir, "pm2home", "pm2.pid")); perr == nil {
		t.god = pid
		t.known = tree(pid)
	}
	return err
}

func (t *pm2Target) supervisor() int { return t.god }
func (t *pm2Target) roots() []int    { return []int{t.god} }

func (t *pm2Target) reload(ctx context.Context) error {
	t.known = append(t.known, tree(t.god)...)
	return t.pm2(ctx, "reload", "bench")
}

func (t *pm2Target) stop() error {
	pids := append(t.known, tree(t.god)...)
	err := t.pm2(context.Background(), "kill")
	if !waitGone(pids, 5*time.Second) {
		if kerr := killAll(pids); kerr != nil {
			return kerr
		}
	}
	return err
}

// bareTarget is the ceiling: the same workers on the same shared socket,
// started by hand with no supervisor, as systemd would start them.
type bareTarget struct {
	e    *env
	dir  string
	port int
	cmds []*exec.Cmd
}

func (t *bareTarget) start(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(t.port))
	if err != nil {
		return fmt.Errorf("bare: listen: %w", err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		return fmt.Errorf("bare: listener fd: %w", err)
	}
	defer f.Close()
	for i := range t.e.workers {
		// LISTEN_PID must be the worker's own PID: the shell sets it, then
		// execs node in its place.
		cmd := t.e.command(t.dir, "bare.log", "sh", "-c", `LISTEN_PID=$$ exec node "$0"`, t.e.app)
		cmd.ExtraFiles = []*os.File{f}
		cmd.Env = append(os.Environ(), "LISTEN_FDS=1", "PORT="+strconv.Itoa(t.port),
			"NODE_OPTIONS=--require "+t.e.preload, "NODE_APP_INSTANCE="+strconv.Itoa(i))
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("bare: start worker %d: %w", i, err)
		}
		t.cmds = append(t.cmds, cmd)
		go cmd.Wait()
	}
	return nil
}

func (t *bareTarget) supervisor() int { return 0 }

func (t *bareTarget) roots() []int {
	var out []int
	for _, c := range t.cmds {
		out = append(out, c.Process.Pid)
	}
	return out
}

func (t *bareTarget) reload(context.Context) error { return nil }

func (t *bareTarget) stop() error {
	pids := tree(t.roots()...)
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGTERM)
	}
	if !waitGone(pids, 5*time.Second) {
		return killAll(pids)
	}
	return nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
