package workers

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkReload measures whole rolling reloads of N workers whose own
// start-up takes a known 50ms, and reports corral's overhead per slot: the
// reload's duration beyond the workers' start-up (spawn, exec and the
// app's init, measured in the same run without corral), divided by N.
func BenchmarkReload(b *testing.B) {
	const startup = 50 * time.Millisecond
	for _, tc := range []struct{ n, surge int }{{2, 1}, {4, 1}, {16, 1}, {2, 2}, {4, 4}, {16, 16}} {
		b.Run(fmt.Sprintf("workers=%d/surge=%d", tc.n, tc.surge), func(b *testing.B) {
			app := appStartup(b, startup)
			spec := testSpec(b, "ready", tc.n, "CORRAL_TEST_STARTUP="+startup.String())
			spec.MaxSurge = tc.surge
			h := startPoolB(b, spec)
			var total time.Duration
			b.ResetTimer()
			for range b.N {
				r := h.pool.Reload(context.Background())
				if !r.OK {
					b.Fatal(r.Message)
				}
				total += r.Duration
			}
			b.StopTimer()
			mean := total / time.Duration(b.N)
			rounds := (tc.n + tc.surge - 1) / tc.surge
			overhead := (mean - time.Duration(rounds)*app) / time.Duration(tc.n)
			b.ReportMetric(float64(mean.Microseconds())/1000, "ms/reload")
			b.ReportMetric(float64(app.Microseconds())/1000, "ms-app-startup")
			b.ReportMetric(float64(overhead.Microseconds())/1000, "ms-overhead/slot")
		})
	}
}

// appStartup returns the mean time from spawning the worker directly, with
// no corral, to its READY=1.
func appStartup(b *testing.B, startup time.Duration) time.Duration {
	b.Helper()
	dir := b.TempDir()
	path := filepath.Join(dir, "n.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	exe, _ := os.Executable()
	var total time.Duration
	const runs = 10
	buf := make([]byte, 4096)
	for range runs {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), "CORRAL_TEST_WORKER=ready", "CORRAL_TEST_STARTUP="+startup.String(), "NOTIFY_SOCKET="+path)
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Read(buf); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
		cmd.Process.Kill()
		cmd.Wait()
	}
	return total / runs
}

func startPoolB(b *testing.B, spec Spec) *harness {
	h := startPool(b, spec)
	h.waitOnline(spec.Instances)
	return h
}
