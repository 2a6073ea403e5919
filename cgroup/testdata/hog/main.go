// Command hog is the worker of package cgroup's end-to-end tests: an
// httpworker app that answers "/" with "PID SLOT GENERATION" and, on
// request, does what a worker's cgroup is there to measure and contain:
//
//	/grow?mb=N    take N MiB more and write to every page (a leak)
//	/spin?ms=N    keep a CPU busy for N ms
//	/daemon       start a sleep in a session of its own, which outlives the
//	              worker unless its cgroup is killed; answers its PID
//	/log?msg=M    print M on stdout, as one line
//	/journal      answer JOURNAL_STREAM and fd 2's device:inode
//
// Each answer starts with the worker's PID.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/corraldev/corral/httpworker"
)

func main() {
	pid := os.Getpid()
	id := fmt.Sprintf("%d %s %s", pid, os.Getenv("CORRAL_WORKER_INDEX"), os.Getenv("CORRAL_GENERATION"))
	var mu sync.Mutex
	var hoard [][]byte
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, id) })
	mux.HandleFunc("/grow", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.FormValue("mb"))
		mu.Lock()
		for range mb {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			hoard = append(hoard, b)
		}
		n := len(hoard)
		mu.Unlock()
		fmt.Fprintf(w, "%d grew to %d MiB\n", pid, n)
	})
	mux.HandleFunc("/spin", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.FormValue("ms"))
		end := time.Now().Add(time.Duration(ms) * time.Millisecond)
		x := 0
		for time.Now().Before(end) {
			x++
		}
		fmt.Fprintf(w, "%d spun %d\n", pid, x&1)
	})
	mux.HandleFunc("/daemon", func(w http.ResponseWriter, r *http.Request) {
		p, err := os.StartProcess("/bin/sleep", []string{"sleep", "3600"}, &os.ProcAttr{
			Sys: &syscall.SysProcAttr{Setsid: true},
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%d daemon %d\n", pid, p.Pid)
		p.Release() // not waited for: it is to outlive the worker
	})
	mux.HandleFunc("/log", func(w http.ResponseWriter, r *http.Request) {
		fmt.Println(r.FormValue("msg"))
		fmt.Fprintf(w, "%d logged\n", pid)
	})
	mux.HandleFunc("/journal", func(w http.ResponseWriter, r *http.Request) {
		var st syscall.Stat_t
		if err := syscall.Fstat(2, &st); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%d %q %d:%d\n", pid, os.Getenv("JOURNAL_STREAM"), st.Dev, st.Ino)
	})
	srv := &http.Server{Handler: mux}
	if err := httpworker.Serve(context.Background(), srv, httpworker.Options{Grace: 500 * time.Millisecond}); err != nil {
		fmt.Fprintln(os.Stderr, "hog:", err)
		os.Exit(1)
	}
}
