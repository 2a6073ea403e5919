// Command hello is the smallest useful corral worker: an HTTP server that
// serves on the sockets corral hands it and drains without losing a request
// when it is replaced.
//
// Under corral, one worker per CPU (what `make run` does):
//
//	corral run --listen 127.0.0.1:8080 -- bin/hello
//
// On its own, for development:
//
//	go run ./examples/hello -addr 127.0.0.1:8080
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/corraldev/corral/httpworker"
)

func main() {
	startupDelay := flag.Duration("startup-delay", 0, "simulated start-up work before serving")
	fail := flag.Bool("fail", false, "exit 1 at start, like a broken release")
	addr := flag.String("addr", "", "address to listen on when not started by corral or systemd")
	flag.Parse()

	if *fail {
		log.Fatal("hello: -fail given: exiting as a broken release would")
	}
	// Stands in for real start-up work (loading config, warming caches),
	// so benchmarks can model an app with a known start-up time. Sleeping
	// is the point here; it waits for nothing.
	time.Sleep(*startupDelay)

	srv := &http.Server{
		Handler:           newHandler(os.Getenv("CORRAL_WORKER_INDEX"), os.Getenv("CORRAL_GENERATION"), os.Getpid()),
		ReadHeaderTimeout: 10 * time.Second,
	}
	opts := httpworker.Options{FallbackAddr: *addr, Logf: log.Printf}
	if err := httpworker.Serve(context.Background(), srv, opts); err != nil {
		log.Fatalf("hello: %v", err)
	}
}

// newHandler serves the greeting on / and "ok" on /healthz.
func newHandler(index, generation string, pid int) http.Handler {
	greeting := fmt.Sprintf("hello from worker %s (pid %d, generation %s)\n", index, pid, generation)
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, greeting)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	return mux
}
