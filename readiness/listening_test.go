package readiness

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pollEvery is how often the tests ask Listening, as the pool does.
const pollEvery = 10 * time.Millisecond

// waitListening polls Listening for c until it reports true, and returns
// the reason.
func waitListening(t testing.TB, c *child, s Sockets) string {
	t.Helper()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	deadline := time.After(testTimeout)
	for {
		ok, reason, err := Listening(c.pid(), s)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			t.Logf("listening: %s", reason)
			return reason
		}
		select {
		case <-tick.C:
		case <-c.done:
			t.Fatal("exited before listening")
		case <-deadline:
			t.Fatalf("not listening within %v", testTimeout)
		}
	}
}

// neverListening polls Listening for c during period, which must report
// false every time while c keeps running.
func neverListening(t *testing.T, c *child, s Sockets, period time.Duration) {
	t.Helper()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	end := time.After(period)
	for n := 1; ; n++ {
		ok, reason, err := Listening(c.pid(), s)
		if err != nil || ok {
			t.Fatalf("Listening = %t, %q, %v; want false for a process that never polls", ok, reason, err)
		}
		select {
		case <-tick.C:
		case <-c.done:
			t.Fatal("exited while holding")
		case <-end:
			t.Logf("not listening, %d checks over %v", n, period)
			return
		}
	}
}

// served checks that a request to addr gets the answer "ok".
func served(t *testing.T, addr string) {
	t.Helper()
	client := http.Client{Timeout: testTimeout}
	resp, err := client.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("listening but not serving: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Fatalf("got %s %q, %v; want 200 \"ok\"", resp.Status, body, err)
	}
}

// expect runs the check every runtime test makes: a child that serves is
// eventually listening, and then answers; one that holds the socket
// without polling it prints "holding" and stays not listening.
func expect(t *testing.T, c *child, s Sockets, addr string, serves bool) {
	t.Helper()
	if !serves {
		c.waitLine(t, "holding")
		neverListening(t, c, s, 500*time.Millisecond)
		return
	}
	waitListening(t, c, s)
	served(t, addr)
}

func TestGo(t *testing.T) {
	tests := []struct {
		name   string
		helper string
		serves bool
		reason string // a part of the reason given
		child  bool   // whether a child of the helper serves
	}{
		{name: "http.Serve", helper: "serve", serves: true, reason: "through epoll fd"},
		{name: "blocking accept loop", helper: "accept", serves: true, reason: "waits in accept"},
		{name: "a child serves", helper: "fork", serves: true, reason: "through epoll fd", child: true},
		{name: "holds the socket, never serves", helper: "hold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, addr := listener(t)
			s := sockets(t, f)
			c := startHelper(t, f, tt.helper)
			if !tt.serves {
				expect(t, c, s, addr, false)
				return
			}
			reason := waitListening(t, c, s)
			served(t, addr)
			if !strings.Contains(reason, tt.reason) {
				t.Errorf("reason %q does not mention %q", reason, tt.reason)
			}
			if tt.child {
				byChild(t, c, reason)
			}
		})
	}
}

// byChild checks that reason names a process other than c, which holds
// the socket without polling it.
func byChild(t *testing.T, c *child, reason string) {
	t.Helper()
	if strings.HasPrefix(reason, fmt.Sprintf("pid %d ", c.pid())) {
		t.Errorf("reason %q names pid %d, which never polls", reason, c.pid())
	}
}

// TestGoListenerCountsFromCreation shows a limit of the method: Go's net
// package registers a listener with epoll when it creates it, so a Go app
// counts as listening from net.FileListener on, even before it accepts.
func TestGoListenerCountsFromCreation(t *testing.T) {
	f, _ := listener(t)
	s := sockets(t, f)
	c := startHelper(t, f, "listen-only")
	c.waitLine(t, "holding")
	waitListening(t, c, s)
}

// TestExited checks that a worker that died is not listening, neither as
// a zombie its parent has yet to reap nor after.
func TestExited(t *testing.T) {
	f, _ := listener(t)
	s := sockets(t, f)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=serve")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid, reaped := cmd.Process.Pid, false
	t.Cleanup(func() {
		if !reaped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	waitListening(t, &child{cmd: cmd}, s)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var info unix.Siginfo // wait for the exit, leaving a zombie
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if ok, reason, err := Listening(pid, s); ok || err != nil {
		t.Errorf("zombie: Listening = %t, %q, %v; want false, nil", ok, reason, err)
	}
	cmd.Wait()
	reaped = true
	if ok, reason, err := Listening(pid, s); ok || err != nil {
		t.Errorf("reaped: Listening = %t, %q, %v; want false, nil", ok, reason, err)
	}
}

func TestNoSockets(t *testing.T) {
	f, _ := listener(t)
	c := startHelper(t, f, "serve")
	waitListening(t, c, sockets(t, f))
	if ok, _, err := Listening(c.pid(), Sockets{}); ok || err != nil {
		t.Errorf("Listening(zero Sockets) = %t, %v; want false, nil", ok, err)
	}
}

func TestSocketsOfNotASocket(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := SocketsOf([]*os.File{f}); err == nil {
		t.Error("SocketsOf(/dev/null) succeeded")
	}
}
