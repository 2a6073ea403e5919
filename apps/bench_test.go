package apps_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corraldev/corral/internal/testenv"
)

// The benchmarks run on the booted Debian: go test -run '^$' -bench . ./apps/
// Each command runs in the machine through nsenter; the time nsenter takes
// to run `true` there is measured alongside and taken off.

// nsenterCost returns how long running `true` in the machine takes.
func nsenterCost(b *testing.B, m *machine) time.Duration {
	const n = 10
	start := time.Now()
	for range n {
		m.must(b, "", "/", "true")
	}
	return time.Since(start) / n
}

// BenchmarkList20 is `corral ls` with 20 apps running, CPU sample
// included. Target: under 200 ms.
func BenchmarkList20(b *testing.B) {
	m := boot(b)
	m.must(b, "", "/", "mkdir", "-p", "/srv/bench")
	for i := range 20 {
		name := fmt.Sprintf("ls%02d", i)
		m.mustCorral(b, "", "/srv/bench", "start", "/usr/local/bin/hello", "-n", name, "-i", "1", "--port", port(testenv.FreeAddr(b)), "--no-enable")
		b.Cleanup(func() { m.corral("", "/", "delete", name) })
	}
	if n := len(m.ls(b, "")); n != 20 {
		b.Fatalf("corral ls shows %d apps, want 20", n)
	}
	cost := nsenterCost(b, m)
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		m.mustCorral(b, "", "/", "ls")
	}
	per := time.Since(start)/time.Duration(b.N) - cost
	b.ReportMetric(float64(per.Microseconds())/1000, "ms/ls")
}

// BenchmarkStartOverhead is what `corral start` takes beyond the app's
// own start-up (systemd's InactiveExit to ActiveEnter of the service):
// writing the files, enable, daemon-reload, the socket, the D-Bus round
// trips. Target: under 300 ms.
func BenchmarkStartOverhead(b *testing.B) {
	m := boot(b)
	m.must(b, "", "/", "mkdir", "-p", "/srv/bench")
	cost := nsenterCost(b, m)
	var total, own time.Duration
	i := 0
	for b.Loop() {
		name := fmt.Sprintf("st%03d", i)
		i++
		start := time.Now()
		m.mustCorral(b, "", "/srv/bench", "start", "/usr/local/bin/hello", "-n", name, "-i", "1", "--port", port(testenv.FreeAddr(b)))
		total += time.Since(start) - cost
		b.StopTimer()
		own += activation(b, m, "corral@"+name+".service")
		m.mustCorral(b, "", "/", "delete", name)
		b.StartTimer()
	}
	b.ReportMetric(float64((total-own).Microseconds())/1000/float64(b.N), "ms-overhead/start")
	b.ReportMetric(float64(own.Microseconds())/1000/float64(b.N), "ms-app/start")
}

// activation returns how long unit took from leaving inactive to active.
func activation(b *testing.B, m *machine, unit string) time.Duration {
	out := m.must(b, "", "/", "systemctl", "show", unit, "-p", "InactiveExitTimestampMonotonic", "-p", "ActiveEnterTimestampMonotonic")
	v := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, val, _ := strings.Cut(line, "=")
		v[k], _ = strconv.ParseInt(val, 10, 64)
	}
	return time.Duration(v["ActiveEnterTimestampMonotonic"]-v["InactiveExitTimestampMonotonic"]) * time.Microsecond
}
