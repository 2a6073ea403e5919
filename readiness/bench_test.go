package readiness

import (
	"os"
	"strconv"
	"testing"

	"github.com/corraldev/corral/internal/testenv"
)

// BenchmarkListening measures one check of a worker. "holding" is a Go
// worker with about 50 descriptors and 10 threads that has not started
// serving: the pool's common case, and the most work, as every descriptor,
// thread and child list is read. "holding-connected" also holds a
// connected socket, so the check asks sock_diag for accepted connections. "serving" is found through epoll; the
// others are real runtimes, where installed.
func BenchmarkListening(b *testing.B) {
	for _, bb := range []struct {
		name string
		argv func(b *testing.B) []string
		env  []string
		want bool
	}{
		{name: "holding", argv: self, env: []string{helperEnv + "=busy"}},
		{name: "holding-connected", argv: self, env: []string{helperEnv + "=busy-connected"}},
		{name: "serving", argv: self, env: []string{helperEnv + "=serve"}, want: true},
		{name: "node-holding", argv: func(b *testing.B) []string {
			return []string{testenv.Need(b, "node", "nodejs"), "-e", `console.log("holding"); process.stdin.resume()`}
		}},
		{name: "gunicorn-serving", argv: func(b *testing.B) []string {
			return []string{testenv.Need(b, "gunicorn", "gunicorn"), "--bind", "fd://3", "--chdir", appDir(b, wsgiApp), "app:app"}
		}, want: true},
	} {
		b.Run(bb.name, func(b *testing.B) {
			f, _ := listener(b)
			s := sockets(b, f)
			c := start(b, f, bb.env, bb.argv(b)...)
			if bb.want {
				waitListening(b, c, s)
			} else {
				c.waitLine(b, "holding")
			}
			b.Logf("%d descriptors, %d threads", count(b, c.pid(), "fd"), count(b, c.pid(), "task"))
			b.ReportAllocs()
			for b.Loop() {
				if ok, reason, err := Listening(c.pid(), s); ok != bb.want || err != nil {
					b.Fatalf("Listening = %t, %q, %v; want %t", ok, reason, err, bb.want)
				}
			}
		})
	}
}

// self returns the command that runs this test binary.
func self(*testing.B) []string { return []string{os.Args[0]} }

// count returns the number of entries in /proc/PID/dir.
func count(tb testing.TB, pid int, dir string) int {
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/" + dir)
	if err != nil {
		tb.Fatal(err)
	}
	return len(entries)
}
