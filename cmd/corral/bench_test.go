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

func build(b *testing.B, out, pkg string) {
	b.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build %s: %v\n%s", pkg, err, msg)
	}
}

// startOnce starts corral, waits for READY=1, reads its RSS, and stops it.
func startOnce(b *testing.B, bin string, n int) (time.Duration, int) {
	dir := b.TempDir()
	sockPath := filepath.Join(dir, "systemd.sock")
	sys, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		b.Fatal(err)
	}
	defer sys.Close()
	cmd := exec.Command(filepath.Join(bin, "corral"), "run", "-i", strconv.Itoa(n),
		"--listen", "127.0.0.1:0", "--control", filepath.Join(dir, "control.sock"), "--", filepath.Join(bin, "hello"))
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	buf := make([]byte, 4096)
	sys.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		k, err := sys.Read(buf)
		if err != nil {
			b.Fatalf("no READY=1 from corral: %v; its log:\n%s", err, stderr)
		}
		if strings.Contains(string(buf[:k]), "READY=1") {
			break
		}
	}
	took := time.Since(start)
	sys.Close() // corral's later STATUS lines then fail fast, and are logged
	return took, vmRSS(b, cmd.Process.Pid)
}

func vmRSS(b *testing.B, pid int) int {
	rss, err := proc.RSS(pid)
	if err != nil {
		b.Fatal(err)
	}
	return int(rss / 1024)
}
