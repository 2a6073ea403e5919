package workers

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/activation"
	"github.com/corraldev/corral/httpworker"
)

// The test binary is also every worker the tests run: corral's trampoline
// first, then the helper that CORRAL_TEST_WORKER names.
func TestMain(m *testing.M) {
	activation.MaybeRunTrampoline()
	if name := os.Getenv("CORRAL_TEST_WORKER"); name != "" {
		h, ok := helpers[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "no test worker %q\n", name)
			os.Exit(3)
		}
		os.Exit(h())
	}
	os.Exit(m.Run())
}

var helpers = map[string]func() int{
	"http":      httpHelper,
	"gated":     gatedHelper,
	"ready":     readyHelper,
	"plainhttp": plainHTTPHelper,
	"never":     neverHelper,
	"crash":     func() int { fmt.Fprintln(os.Stderr, "test worker: crashing on start"); return 1 },
	"flaky":     flakyHelper,
	"stubborn":  stubbornHelper,
	"fds":       fdsHelper,
	"child":     childHelper,
	"pinger":    pingerHelper,
}

// httpHelper serves its identity: "pid slot generation", draining the way
// httpworker does.
func httpHelper() int {
	if gate := os.Getenv("CORRAL_TEST_GATE"); gate != "" {
		waitGate(gate)
	}
	id := fmt.Sprintf("%d %s %s\n", os.Getpid(), os.Getenv("CORRAL_WORKER_INDEX"), os.Getenv("CORRAL_GENERATION"))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(id))
	})}
	if err := httpworker.Serve(context.Background(), srv, httpworker.Options{Grace: time.Second}); err != nil {
		fmt.Fprintln(os.Stderr, "test worker:", err)
		return 1
	}
	return 0
}

// plainHTTPHelper never notifies: after its gate it serves plain
// net/http on fd 3, as many apps do.
func plainHTTPHelper() int {
	waitGate(os.Getenv("CORRAL_TEST_GATE"))
	ln, err := net.FileListener(os.NewFile(3, "listener"))
	if err != nil {
		return 4
	}
	http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("plain\n")) }))
	return 0
}

// gatedHelper comes online only once the test opens its gate (a FIFO
// named by CORRAL_TEST_GATE plus its slot), then waits for SIGTERM.
func gatedHelper() int {
	waitGate(os.Getenv("CORRAL_TEST_GATE") + os.Getenv("CORRAL_WORKER_INDEX"))
	return notifyAndWait("READY=1")
}

// readyHelper comes online after CORRAL_TEST_STARTUP (a duration), which
// stands for an app's own start-up work.
func readyHelper() int {
	if d, err := time.ParseDuration(os.Getenv("CORRAL_TEST_STARTUP")); err == nil {
		time.Sleep(d) // simulated start-up work, not a wait for state
	}
	return notifyAndWait("READY=1")
}

// pingerHelper sends WATCHDOG=1 three times, then READY=1.
func pingerHelper() int {
	for range 3 {
		send("WATCHDOG=1")
	}
	return notifyAndWait("READY=1")
}

func neverHelper() int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	<-sigs
	return 0
}

// flakyHelper comes online, then exits 1 when its gate opens.
func flakyHelper() int {
	send("READY=1")
	waitGate(os.Getenv("CORRAL_TEST_GATE") + os.Getenv("CORRAL_WORKER_INDEX"))
	return 1
}

func stubbornHelper() int {
	signal.Ignore(syscall.SIGTERM)
	send("READY=1")
	select {}
}

// fdsHelper writes the fds it was started with to $CORRAL_TEST_OUT/fds-PID,
// before anything of its own is opened, then comes online.
func fdsHelper() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 4
	}
	var fds []string
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own fd, closed by now
		}
		fds = append(fds, e.Name()+" "+target)
	}
	out := filepath.Join(os.Getenv("CORRAL_TEST_OUT"), "fds-"+strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(out, []byte(strings.Join(fds, "\n")), 0o600); err != nil {
		return 4
	}
	return notifyAndWait("READY=1")
}

// childHelper's READY=1 comes from a child process, as with npm start.
func childHelper() int {
	if os.Getenv("CORRAL_TEST_CHILD") == "" {
		exe, _ := os.Executable()
		p, err := os.StartProcess(exe, []string{exe}, &os.ProcAttr{
			Env:   append(os.Environ(), "CORRAL_TEST_CHILD=1"),
			Files: []*os.File{nil, os.Stdout, os.Stderr},
		})
		if err != nil {
			return 4
		}
		st, _ := p.Wait()
		return st.ExitCode()
	}
	return notifyAndWait("READY=1\nSTATUS=child ready")
}

func notifyAndWait(state string) int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	send(state)
	<-sigs
	return 0
}

func send(state string) {
	c, err := net.Dial("unixgram", os.Getenv("NOTIFY_SOCKET"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "test worker: notify:", err)
		os.Exit(5)
	}
	defer c.Close()
	c.Write([]byte(state))
}

// waitGate blocks until the test writes to the FIFO at path.
func waitGate(path string) {
	if _, err := os.ReadFile(path); err != nil {
		fmt.Fprintln(os.Stderr, "test worker: gate:", err)
		os.Exit(6)
	}
}
