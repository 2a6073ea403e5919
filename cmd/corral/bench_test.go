package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/proc"
	"github.com/corraldev/corral/internal/testenv"
)

// BenchmarkStartToReady runs the real corral binary with N workers of the
// example app and measures the time from exec to systemd's READY=1 (on a
// fake NOTIFY_SOCKET), and corral's own resident memory once ready.
func BenchmarkStartToReady(b *testing.B) {
	bin := b.TempDir()
	build(b, filepath.Join(bin, "corral"), "./")
	build(b, filepath.Join(bin, "hello"), "../../examples/hello")
	for _, n := range []int{2, 16} {
		b.Run("workers="+strconv.Itoa(n), func(b *testing.B) {
			var total time.Duration
			var rss int
			for range b.N {
				d, kb := startOnce(b, bin, n)
				total += d
				rss = max(rss, kb)
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms-to-READY")
			b.ReportMetric(float64(rss), "KB-corral-RSS")
		})
	}
}

// build builds the package pkg (a directory) into out.
func build(tb testing.TB, out, pkg string) {
	tb.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if msg, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, msg)
	}
}

// BenchmarkIdle runs the real corral binary with N idle workers of the
// example app and counts corral's context switches (every thread's,
// voluntary and not) over idleWindow once every worker is online: how
// often an idle corral wakes up. It also reports corral's resident memory.
// With max_memory, and no memory controller to notify (here), corral
// samples the workers' memory every 2s.
func BenchmarkIdle(b *testing.B) {
	bin := b.TempDir()
	build(b, filepath.Join(bin, "corral"), "./")
	build(b, filepath.Join(bin, "hello"), "../../examples/hello")
	const idleWindow = 10 * time.Second
	for _, v := range []struct {
		name string
		n    int
		args []string
	}{
		{"workers=2", 2, nil}, {"workers=16", 16, nil},
		{"workers=2/max_memory", 2, []string{"--max-memory", "1G"}}, {"workers=16/max_memory", 16, []string{"--max-memory", "1G"}},
	} {
		n := v.n
		b.Run(v.name, func(b *testing.B) {
			var switches, rss int
			for range b.N {
				pid, stop := startReady(b, bin, n, v.args...)
				before := contextSwitches(b, pid)
				time.Sleep(idleWindow) // the measurement window, not a wait for state
				switches += contextSwitches(b, pid) - before
				rss = max(rss, vmRSS(b, pid))
				stop()
			}
			b.ReportMetric(float64(switches)/idleWindow.Seconds()/float64(b.N), "wakeups/s")
			b.ReportMetric(float64(rss), "KB-corral-RSS")
		})
	}
}

// contextSwitches sums the context switches of every thread of pid.
func contextSwitches(b *testing.B, pid int) int {
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/status")
	if err != nil || len(tasks) == 0 {
		b.Fatalf("no threads of pid %d: %v", pid, err)
	}
	n := 0
	for _, task := range tasks {
		s, err := os.ReadFile(task)
		if err != nil {
			continue // a thread that ended
		}
		for _, line := range strings.Split(string(s), "\n") {
			k, v, _ := strings.Cut(line, ":")
			if k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches" {
				c, _ := strconv.Atoi(strings.TrimSpace(v))
				n += c
			}
		}
	}
	return n
}

// startOnce starts corral, waits for READY=1, reads its RSS, and stops it.
func startOnce(b *testing.B, bin string, n int) (time.Duration, int) {
	start := time.Now()
	pid, stop := startReady(b, bin, n)
	defer stop()
	return time.Since(start), vmRSS(b, pid)
}

// startReady starts corral with n workers, and args, and returns its PID
// once it has sent READY=1, and a function that stops it.
func startReady(b *testing.B, bin string, n int, args ...string) (int, func()) {
	dir := b.TempDir()
	sockPath := filepath.Join(dir, "systemd.sock")
	sys, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		b.Fatal(err)
	}
	defer sys.Close()
	argv := append([]string{"run", "-i", strconv.Itoa(n), "--listen", "127.0.0.1:0", "--control", filepath.Join(dir, "control.sock")}, args...)
	cmd := exec.Command(filepath.Join(bin, "corral"), append(argv, "--", filepath.Join(bin, "hello"))...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath)
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	buf := make([]byte, 4096)
	sys.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		k, err := sys.Read(buf)
		if err != nil {
			stop()
			b.Fatalf("no READY=1 from corral: %v; its log:\n%s", err, stderr)
		}
		if strings.Contains(string(buf[:k]), "READY=1") {
			break
		}
	}
	return cmd.Process.Pid, func() { sys.Close(); stop() }
}

func vmRSS(b *testing.B, pid int) int {
	rss, err := proc.RSS(pid)
	if err != nil {
		b.Fatal(err)
	}
	return int(rss / 1024)
}
