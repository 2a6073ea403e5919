// Command nethttp is a corral worker written with plain net/http, no
// corral package, that drains by the rule in corral's README ("Draining
// without dropping a request"): on SIGTERM it stops accepting, answers
// for up to a second every request with Connection: close, then closes
// what is idle and waits for what runs, and exits.
//
//	corral run --listen 127.0.0.1:8080 -- ./nethttp
//
// With -drain=shutdown it drains the common way instead, http.Server's
// Shutdown at SIGTERM, which loses requests under reloads: docs/servers.md
// measures both. Package httpworker does the rule's work for you.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

// grace is how long the drain keeps answering the connections it has.
const grace = time.Second

func main() {
	drain := flag.String("drain", "rule", "how to drain at SIGTERM: rule (the README's) or shutdown (http.Server.Shutdown at once)")
	flag.Parse()
	if *drain != "rule" && *drain != "shutdown" {
		log.Fatalf("nethttp: -drain=%q: want rule or shutdown", *drain)
	}
	lns, err := activation.Listeners()
	if err != nil || len(lns) == 0 {
		log.Fatalf("nethttp: no inherited listening sockets (run it under corral or systemd): %v", err)
	}
	var draining atomic.Bool
	var conns sync.WaitGroup // open connections
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			if draining.Load() {
				// Per response, not SetKeepAlivesEnabled(false), which
				// also closes every idle connection at once.
				w.Header().Set("Connection", "close")
			}
			fmt.Fprintf(w, "hello from worker %s (pid %d)\n", os.Getenv("CORRAL_WORKER_INDEX"), os.Getpid())
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				conns.Done()
			}
		},
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	var serving sync.WaitGroup // the accept loops
	for _, ln := range lns {
		serving.Go(func() { srv.Serve(ln) })
	}
	daemon.SdNotify(false, daemon.SdNotifyReady)
	<-sigs
	signal.Stop(sigs) // a second signal kills at once
	if *drain == "shutdown" {
		srv.Shutdown(context.Background())
		return
	}
	// 1. Stop accepting: close this worker's copies of the sockets; the
	// other workers keep accepting on them. Close waits for an accept in
	// progress, which blocks in the kernel if another process has made the
	// shared socket blocking; until the accept loops have returned, connect
	// to the sockets to wake it (another worker may get such a connection:
	// a client that hangs up at once). Only then is no connection accepted
	// that Shutdown, below, would close unanswered.
	draining.Store(true)
	for _, ln := range lns {
		go ln.Close()
	}
	stopped := make(chan struct{})
	go func() { serving.Wait(); close(stopped) }()
	wake := time.NewTicker(100 * time.Millisecond)
	for done := false; !done; {
		select {
		case <-stopped:
			done = true
		case <-wake.C:
			for _, ln := range lns {
				if c, err := net.Dial(ln.Addr().Network(), ln.Addr().String()); err == nil {
					c.Close()
				}
			}
		}
	}
	wake.Stop()
	// 2. For the grace, or until no connection is left, keep serving what
	// is open, every answer with Connection: close.
	done := make(chan struct{})
	go func() { conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
	}
	// 3. Close what is idle, wait for the requests still running, exit.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		log.Printf("nethttp: %v", err)
	}
}
