// Package httpworker runs a net/http server as a corral worker, or as any
// service started by systemd socket activation.
//
// The supervisor opens the listening sockets once and hands the same ones to
// every worker as fds 3 and up (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID), so
// all workers accept from one kernel queue. A worker says it is serving by
// sending READY=1 to NOTIFY_SOCKET. To replace a worker, the supervisor starts
// the new one, waits for its READY=1, then sends the old one SIGTERM and, after
// its stop timeout, SIGKILL. No connection is refused while any worker still
// accepts, so a request can be lost only by a worker that drains in the wrong
// order. Calling http.Server.Shutdown on SIGTERM is that wrong order: Shutdown
// closes idle keep-alive connections at once, and the server drops without an
// answer any request it reads after shutdown began (golang/go#65802), so a
// client that has just sent a request on a kept-alive connection gets EOF.
//
// Serve drains in the order that loses nothing:
//
//  1. It closes its own fds of the listening sockets. The sockets stay open
//     in the other workers, which accept whatever is queued or still to come.
//  2. For up to Options.Grace it keeps serving the connections it has already
//     accepted, and answers every request with "Connection: close". A client
//     that connected just before step 1 gets its first request answered; a
//     keep-alive client gets its next one answered and then reconnects, to
//     another worker. This step ends early once no connection is open.
//  3. It calls Shutdown, which closes whatever is idle and waits up to
//     Options.ShutdownTimeout for the requests still running.
//
// Another process holding the socket can switch it to blocking mode (the
// flag is shared; corral does it each time it starts a worker), and then an
// accept(2) in progress blocks in the kernel and holds up step 1. Serve then
// connects to its own sockets until the accept returns; another worker may
// get such a connection, and sees a client that hangs up without a request.
//
// What remains is the race every HTTP/1.1 server has: a keep-alive client
// that sends nothing during the whole grace period, then sends a request
// just as step 3 closes its idle connection. Clients retry such a request
// when it is idempotent. Serve does not wait for hijacked connections such
// as WebSockets; close them from srv.RegisterOnShutdown.
//
// Serve speaks plain HTTP/1.1 on the sockets it is given; terminate TLS in
// front of the workers.
package httpworker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// ErrNoListeners is returned by Serve when the process inherited no listening
// sockets and Options.FallbackAddr is empty.
var ErrNoListeners = errors.New("no inherited listening sockets (LISTEN_FDS): " +
	"start the process under corral or systemd socket activation, or set Options.FallbackAddr")

// Options configures Serve. The zero value is ready to use.
type Options struct {
	// Grace is the longest Serve keeps serving the connections it has
	// already accepted, with "Connection: close", after it stops accepting.
	// Default 1s: a client that connected just before the listener closed
	// needs about one round trip to send its first request, and a busy
	// keep-alive client one request; 1s covers both with room on a loaded
	// machine (the project's reload benchmark lost nothing with 500ms). The
	// wait ends as soon as no connection is open, so only a worker holding
	// idle keep-alive connections waits the whole second.
	Grace time.Duration

	// ShutdownTimeout is the longest Shutdown waits for requests still
	// running after the grace period. Default 10s. Keep Grace plus
	// ShutdownTimeout below the supervisor's stop timeout (corral's
	// --stop-timeout), after which it sends SIGKILL.
	ShutdownTimeout time.Duration

	// Signals start the drain. Default SIGTERM and SIGINT. Serve catches
	// only the first: a second one has its default effect and ends the
	// process at once, like a second Ctrl-C.
	Signals []os.Signal

	// FallbackAddr is a TCP address Serve listens on itself when the process
	// inherited no sockets, for `go run` during development. Empty (the
	// default) makes Serve return ErrNoListeners instead.
	FallbackAddr string

	// Logf logs the drain's progress. Default: no logging; pass log.Printf
	// to log to stderr, which corral and systemd send to the journal.
	Logf func(format string, args ...any)
}

func (o Options) withDefaults() Options {
	if o.Grace <= 0 {
		o.Grace = time.Second
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if len(o.Signals) == 0 {
		o.Signals = []os.Signal{syscall.SIGTERM, syscall.SIGINT}
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// Serve serves srv.Handler on every inherited listening socket, sends READY=1
// to NOTIFY_SOCKET, and drains as the package doc describes on the first of
// opts.Signals or when ctx is done; it sends STOPPING=1 once it has stopped
// accepting.
//
// Serve consumes the process's socket-activation environment, so call it
// once. It reads NOTIFY_SOCKET and unsets it before any handler runs, so the
// app's child processes cannot report for it. It wraps srv.Handler (nil
// means http.DefaultServeMux) and srv.ConnState, and owns srv: do not call
// srv.Shutdown or srv.Close, cancel ctx instead. srv.Addr is ignored.
//
// Serve returns:
//   - nil after a clean drain, whether a signal or ctx started it;
//   - ErrNoListeners, or a wrapped error from the inherited fds or
//     FallbackAddr, before serving anything;
//   - an error from sending READY=1, after draining;
//   - the first error from http.Server.Serve other than the listener closed
//     by the drain, after draining the other listeners;
//   - a wrapped context.DeadlineExceeded when requests were still running
//     after ShutdownTimeout; their connections are then closed.
func Serve(ctx context.Context, srv *http.Server, opts Options) error {
	opts = opts.withDefaults()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, opts.Signals...)
	defer signal.Stop(sigs)

	notifyAddr := os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
	lns, err := listeners(opts)
	if err != nil {
		return err
	}
	w := &worker{srv: srv, lns: lns, conns: track(srv), errc: make(chan error, len(lns)), notifyAddr: notifyAddr, opts: opts}
	for _, ln := range lns {
		go func() { w.errc <- serve(srv, ln) }()
	}
	running := len(lns)
	if err = notify(notifyAddr, "READY=1"); err == nil {
		opts.Logf("httpworker: serving on %v", addrs(lns))
		select {
		case sig := <-sigs:
			opts.Logf("httpworker: %v: draining", sig)
		case <-ctx.Done():
			opts.Logf("httpworker: %v: draining", context.Cause(ctx))
		case err = <-w.errc:
			running--
		}
	}
	signal.Stop(sigs) // a second signal now has its default effect
	return w.drain(ctx, running, err)
}

// worker is one call of Serve: a server, the listeners it serves, and the
// goroutines serving them, each of which sends exactly one value on errc.
type worker struct {
	srv        *http.Server
	lns        []net.Listener // closed by drain (and again by http.Server.Serve)
	conns      *conns
	errc       chan error
	notifyAddr string // NOTIFY_SOCKET as it was when Serve started
	opts       Options
}

// drain stops the worker in the order of the package doc. running is the
// number of serve goroutines that have not yet sent on errc; err is the
// error that made Serve stop, if any. drain returns err, or else the first
// error from the remaining serve goroutines or from Shutdown.
func (w *worker) drain(ctx context.Context, running int, err error) error {
	w.conns.draining.Store(true)
	if e := w.stopAccepting(running); err == nil {
		err = e
	}
	if e := notify(w.notifyAddr, "STOPPING=1"); e != nil {
		w.opts.Logf("httpworker: %v", e)
	}
	closed, open := w.conns.allClosed()
	w.opts.Logf("httpworker: stopped accepting; %d connections open, answering with Connection: close for up to %v", open, w.opts.Grace)
	grace := time.NewTimer(w.opts.Grace)
	defer grace.Stop()
	select {
	case <-closed:
	case <-grace.C:
		w.opts.Logf("httpworker: grace over with connections open; shutting down")
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.opts.ShutdownTimeout)
	defer cancel()
	if e := w.srv.Shutdown(sctx); e != nil {
		w.srv.Close()
		if err == nil {
			err = fmt.Errorf("shutdown: requests still running after %v: %w", w.opts.ShutdownTimeout, e)
		}
	}
	return err
}

// stopAccepting closes the listeners and waits for the running serve
// goroutines to return, so that no connection can be added; it returns the
// first error they report. A listener's Close waits for an accept(2) in
// progress, which blocks in the kernel if the socket has been switched to
// blocking mode: every 100ms until the goroutines are done, stopAccepting
// connects to the listeners to wake such an accept (see wakeAccept).
func (w *worker) stopAccepting(running int) error {
	for _, ln := range w.lns {
		go ln.Close() // returns once no accept(2) on ln is in progress
	}
	wake := time.NewTicker(100 * time.Millisecond)
	defer wake.Stop()
	var err error
	for woken := false; running > 0; {
		select {
		case e := <-w.errc:
			running--
			if err == nil {
				err = e
			}
		case <-wake.C:
			if !woken {
				w.opts.Logf("httpworker: accept(2) blocked in the kernel (socket in blocking mode); waking it")
				woken = true
			}
			for _, ln := range w.lns {
				wakeAccept(ln.Addr())
			}
		}
	}
	return err
}

// serve runs srv.Serve(ln) and returns nil when it ends because the drain
// closed ln.
func serve(srv *http.Server, ln net.Listener) error {
	err := srv.Serve(ln)
	if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve %v: %w", ln.Addr(), err)
}

func addrs(lns []net.Listener) []net.Addr {
	a := make([]net.Addr, len(lns))
	for i, ln := range lns {
		a[i] = ln.Addr()
	}
	return a
}
