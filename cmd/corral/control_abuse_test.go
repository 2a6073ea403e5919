package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/control"
	"github.com/corraldev/corral/internal/testenv"
)

// TestControlAbuse is the control socket abuse row.
func TestControlAbuse(t *testing.T) {
	// Another user cannot reach the control socket, mode 0600 in a
	// directory of corral's. Even with the socket opened to all, corral
	// checks the peer's credentials and refuses it. No reload happens.
	t.Run("another user", func(t *testing.T) {
		t.Parallel()
		testenv.NeedRoot(t, "running a client as another user")
		corral, _ := builtBinaries(t)
		open, err := os.MkdirTemp("", "corral-open-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(open) })
		if err := os.Chmod(open, 0o755); err != nil {
			t.Fatal(err)
		}
		in := startInstance(t, corralCmd(t, []string{"NOTIFY_SOCKET=", "CORRAL_TEST_WORKER=echo"},
			"run", "-i", "1", "--listen", testenv.FreeAddr(t), "--control", filepath.Join(open, "control.sock"), "--", testExe(t)),
			filepath.Join(open, "control.sock"))
		in.waitRunning(1)
		asNobody := func() (string, int) {
			cmd := exec.Command(corral, "reload", "--control", in.control)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			out, _ := cmd.CombinedOutput()
			return strings.TrimSpace(string(out)), cmd.ProcessState.ExitCode()
		}
		denied, code := asNobody()
		if code != 1 || !strings.Contains(denied, "permission denied") {
			t.Errorf("corral reload as uid 65534: exit %d: %s; want 1, permission denied", code, denied)
		}
		if err := os.Chmod(in.control, 0o666); err != nil {
			t.Fatal(err)
		}
		refused, code := asNobody()
		if code != 1 || !strings.Contains(refused, "uid 65534 may not use the control socket of uid 0") {
			t.Errorf("corral reload as uid 65534, socket mode 0666: exit %d: %s; want 1, refused by corral", code, refused)
		}
		st := in.waitRunning(1)
		t.Logf("another user: %q; with the socket opened to all: %q", denied, refused)
		if st.Generation != 1 || st.LastReload != nil || !strings.Contains(in.stderr.String(), "control socket: refused a connection: uid 65534") {
			t.Errorf("after another user's reloads: generation %d, last reload %v; corral's log:\n%s", st.Generation, st.LastReload, in.stderr)
		}
	})

	// Clients that connect and send nothing hold a goroutine each, not
	// corral: others are answered at once, and corral closes the silent
	// ones after 10 s with an error.
	t.Run("silent clients", func(t *testing.T) {
		t.Parallel()
		in := startCorral(t, "echo", "-i", "1", "--listen", testenv.FreeAddr(t))
		in.waitRunning(1)
		const silent = 100
		var conns []net.Conn
		for range silent {
			c, err := net.Dial("unix", in.control)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			conns = append(conns, c)
		}
		start := time.Now()
		if _, err := control.Status(context.Background(), in.control); err != nil {
			t.Fatalf("status with %d silent clients: %v", silent, err)
		}
		answered := time.Since(start)
		var wg sync.WaitGroup
		answers := make([]string, silent)
		for i, c := range conns {
			wg.Go(func() {
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				answers[i], _ = bufio.NewReader(c).ReadString('\n')
			})
		}
		wg.Wait()
		closed := time.Since(start)
		t.Logf("%d silent clients: status answered in %v; corral closed them after %v", silent, answered.Round(time.Microsecond), closed.Round(time.Millisecond))
		for i, a := range answers {
			if !strings.Contains(a, "bad request: want one line") {
				t.Fatalf("silent client %d got %q, want corral's error", i, a)
			}
		}
		if closed < 9*time.Second {
			t.Errorf("silent clients closed after %v, want the 10s deadline", closed)
		}
	})

	// A client that sends megabytes gets an error after 256 bytes and is
	// hung up on; corral reads no more of it.
	t.Run("megabytes", func(t *testing.T) {
		t.Parallel()
		in := startCorral(t, "echo", "-i", "1", "--listen", testenv.FreeAddr(t))
		before := in.waitRunning(1)
		c, err := net.Dial("unix", in.control)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		answer := make(chan string, 1)
		go func() {
			a, _ := bufio.NewReader(c).ReadString('\n')
			answer <- a
		}()
		chunk := []byte(strings.Repeat("x", 64<<10))
		sent := 0
		var werr error
		for sent < 8<<20 && werr == nil {
			var n int
			n, werr = c.Write(chunk)
			sent += n
		}
		a := <-answer
		after := in.waitRunning(1)
		t.Logf("a client that sends 8 MiB: got %q after %d bytes, then %v; corral's RSS %.1f -> %.1f MiB",
			strings.TrimSpace(a), sent, werr, mib(before.Corral.RSSBytes), mib(after.Corral.RSSBytes))
		if !strings.Contains(a, "bad request") || werr == nil || sent >= 8<<20 {
			t.Errorf("8 MiB client: answer %q, wrote %d bytes, %v; want an error and a hang-up", a, sent, werr)
		}
		if after.Generation != 1 || after.LastReload != nil {
			t.Errorf("the client changed something: %+v", after)
		}
	})

	// 50 `corral reload`s at once: the first runs, the 49 others wait
	// in one queued reload that runs after it, and every client gets its
	// result. Each generation's worker waits at a gate, so that all 50
	// are in before the first reload ends.
	t.Run("50 concurrent reloads", func(t *testing.T) {
		t.Parallel()
		gates := t.TempDir()
		testenv.Gate(t, filepath.Join(gates, "gen-2"))
		testenv.Gate(t, filepath.Join(gates, "gen-3"))
		in := runCorral(t, []string{"CORRAL_TEST_WORKER=http", "CORRAL_TEST_GATES=" + gates},
			"-i", "1", "--listen", testenv.FreeAddr(t), "--", testExe(t))
		in.waitRunning(1)
		const clients = 50
		outs := make([]string, clients)
		codes := make([]int, clients)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Go(func() {
				cmd := corralCmd(t, nil, "reload", "--control", in.control)
				out, _ := cmd.CombinedOutput()
				outs[i], codes[i] = strings.TrimSpace(string(out)), cmd.ProcessState.ExitCode()
			})
		}
		waitLogCount(t, in, "queued to run after it", clients-1)
		testenv.OpenGate(t, filepath.Join(gates, "gen-2"))
		waitLogCount(t, in, "reload: generation 3 replaces generation 2", 1)
		testenv.OpenGate(t, filepath.Join(gates, "gen-3"))
		wg.Wait()
		gens := map[string]int{}
		for i, out := range outs {
			if codes[i] != 0 || !strings.HasPrefix(out, "reload done: generation ") {
				t.Fatalf("client %d: exit %d: %s", i, codes[i], out)
			}
			gens[strings.Fields(out)[3]]++
		}
		rollouts := strings.Count(in.stderr.String(), "corral: reload: generation ")
		t.Logf("%d concurrent corral reloads: results by generation %v; %d reloads ran", clients, gens, rollouts)
		if gens["2"] != 1 || gens["3"] != clients-1 || rollouts != 2 {
			t.Errorf("results by generation %v and %d reloads, want 1 of generation 2, %d of 3, and 2 reloads", gens, rollouts, clients-1)
		}
	})
}

// waitLogCount waits until corral's log holds n lines with substr.
func waitLogCount(t *testing.T, in *instance, substr string, n int) {
	t.Helper()
	testenv.WaitFor(t, time.Minute, fmt.Sprintf("%d log lines with %q", n, substr), func() bool {
		return strings.Count(in.stderr.String(), substr) >= n
	})
}
