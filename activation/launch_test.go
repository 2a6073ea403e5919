package activation

import (
	"bytes"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLaunchFdTable checks the descriptors a worker gets: stdin from
// /dev/null, stdout and stderr as given, the sockets from 3, then the extra
// files, each announced by its variable, and nothing that corral holds
// without close-on-exec.
func TestLaunchFdTable(t *testing.T) {
	socks := mustOpen(t, ListenSpec{Name: "web", Network: "tcp", Address: "127.0.0.1:0"})
	extraR, extraW := pipe(t)
	leaked, err := unix.Open("/dev/zero", unix.O_RDONLY, 0) // no O_CLOEXEC: a leak from corral's parent
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(leaked) })

	c := startChild(t, launchChild(t, &Worker{
		Path:    testBinary(t),
		Sockets: socks,
		Extra:   []ExtraFile{{File: extraR, FdEnv: "TEST_EXTRA_FD", Env: []string{"TEST_EXTRA_MODE=json"}}},
		// The helper's Go runtime then keeps no cgroup files of its own open.
		Env: childEnv(helperEnv+"=fds", "GODEBUG=containermaxprocs=0", "CORRAL_TEST_SHOW=TEST_EXTRA_FD,TEST_EXTRA_MODE,LISTEN_FDS,LISTEN_FDNAMES",
			"TEST_EXTRA_FD=99", "TEST_EXTRA_MODE=v8", "LISTEN_FDS=7"),
	}))
	c.mustSucceed(t)
	want := []string{
		"fd 0 /dev/null",
		"fd 1 pipe:[*]",
		"fd 2 pipe:[*]",
		"fd 3 socket:[" + inode(t, socks[0].File) + "]",
		"fd 4 pipe:[" + inode(t, extraR) + "]",
		"env TEST_EXTRA_FD=4",
		"env TEST_EXTRA_MODE=json",
		"env LISTEN_FDS=1",
		"env LISTEN_FDNAMES=web",
	}
	if len(c.report) != len(want) {
		t.Fatalf("worker reported\n%s\nwant\n%s", strings.Join(c.report, "\n"), strings.Join(want, "\n"))
	}
	for i, line := range c.report {
		if w := want[i]; line != w && !(strings.HasSuffix(w, "[*]") && strings.HasPrefix(line, strings.TrimSuffix(w, "*]"))) {
			t.Errorf("line %d: %q, want %q", i, line, w)
		}
	}
	extraW.Close()
}

// inode returns the inode number of f's file, as /proc/PID/fd shows it.
func inode(t *testing.T, f *os.File) string {
	t.Helper()
	var st unix.Stat_t
	var statErr error
	if err := withFd(f, func(fd int) { statErr = unix.Fstat(fd, &st) }); err != nil || statErr != nil {
		t.Fatal(err, statErr)
	}
	return strconv.FormatUint(st.Ino, 10)
}

// TestWaitHoldsNoThread starts many workers and waits for each from a
// goroutine of its own. The waits park in the network poller, on each
// process' pidfd: none holds an OS thread in wait4, so corral's thread
// count does not grow with its workers or its reloads.
func TestWaitHoldsNoThread(t *testing.T) {
	const n = 40
	l, err := NewLauncher()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	before := threads(t)
	procs := make([]*Process, n)
	exits := make(chan Exit, n)
	for i := range procs {
		p, err := l.Start(&Worker{Path: testBinary(t), Env: childEnv(helperEnv + "=hold")})
		if err != nil {
			t.Fatal(err)
		}
		procs[i] = p
		go func() {
			e, err := p.Wait()
			if err != nil {
				t.Errorf("wait: %v", err)
			}
			exits <- e
		}()
	}
	defer func() {
		for _, p := range procs {
			p.Signal(unix.SIGKILL)
		}
		for range procs {
			<-exits
		}
	}()
	states := waitersParked(t, n)
	after := threads(t)
	t.Logf("%d waiting workers: threads %d before, %d after; waits: %v", n, before, after, states)
	if states["IO wait"] != n {
		t.Errorf("waits in states %v, want all %d in IO wait (parked in the poller, no thread each)", states, n)
	}
	if after > before+8 {
		t.Errorf("threads grew from %d to %d with %d waiting workers", before, after, n)
	}
}

// waitersParked waits until n goroutines are blocked in Process.Wait and
// returns how many are in each scheduler state ("IO wait", "syscall").
func waitersParked(t *testing.T, n int) map[string]int {
	t.Helper()
	header := regexp.MustCompile(`^goroutine \d+ \[([^,\]]+)`)
	deadline := time.Now().Add(testTimeout)
	buf := make([]byte, 1<<20)
	for {
		states := map[string]int{}
		for _, g := range bytes.Split(buf[:runtime.Stack(buf, true)], []byte("\n\n")) {
			if !bytes.Contains(g, []byte("activation.(*Process).Wait")) {
				continue
			}
			if m := header.FindSubmatch(g); m != nil && string(m[1]) != "running" && string(m[1]) != "runnable" {
				states[string(m[1])]++
			}
		}
		total := 0
		for _, c := range states {
			total += c
		}
		if total == n {
			return states
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, %d of %d waits blocked: %v", testTimeout, total, n, states)
		}
		runtime.Gosched() // a look at the scheduler, not a wait for the workers
	}
}

// threads returns the number of OS threads of this process.
func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads: line in /proc/self/status")
	return 0
}

// TestSignalAfterWait checks that a reaped process is not signalled: its
// PID may be another process' by then.
func TestSignalAfterWait(t *testing.T) {
	l, err := NewLauncher()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p, err := l.Start(&Worker{Path: testBinary(t), Env: childEnv(helperEnv + "=env")})
	if err != nil {
		t.Fatal(err)
	}
	e, err := p.Wait()
	if err != nil || e.Code() != 0 || e.String() != "exited with status 0" {
		t.Fatalf("Wait = %v (%s), %v; want status 0", e.Status, e, err)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Errorf("Signal after Wait: %v, want nil", err)
	}
}

// TestProcessGroupSignal checks that a worker leads a process group of its
// own and that Signal reaches it.
func TestProcessGroupSignal(t *testing.T) {
	l, err := NewLauncher()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	outR, outW := pipe(t)
	p, err := l.Start(&Worker{Path: testBinary(t), Env: childEnv(helperEnv + "=hold"), Stdout: outW})
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 6)
	if _, err := outR.Read(line); err != nil || string(line) != "ready\n" {
		t.Fatalf("hold helper said %q, %v", line, err)
	}
	if pgid, err := unix.Getpgid(p.Pid); err != nil || pgid != p.Pid {
		t.Errorf("worker %d in process group %d (%v), want its own", p.Pid, pgid, err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	e, err := p.Wait()
	if err != nil || e.Code() != 0 {
		t.Errorf("after SIGTERM: %s, %v; want status 0", e, err)
	}
}

func TestExitString(t *testing.T) {
	tests := []struct {
		status unix.WaitStatus
		want   string
	}{
		{0, "exited with status 0"},
		{3 << 8, "exited with status 3"},
		{unix.WaitStatus(syscall.SIGKILL), "was killed by signal 9 (SIGKILL)"},
		{unix.WaitStatus(syscall.SIGSEGV) | 0x80, "was killed by signal 11 (SIGSEGV)"},
	}
	for _, tt := range tests {
		if got := (Exit{Status: tt.status}).String(); got != tt.want {
			t.Errorf("Exit{%#x}.String() = %q, want %q", uint32(tt.status), got, tt.want)
		}
	}
}

// TestTrampolineKeepsDeathSignal starts many workers and checks that each
// runs with SIGKILL as its parent-death signal. Linux keeps the setting per
// thread: the trampoline, a Go program with several threads, must exec
// from its main thread, the one the launch set it on, or the app starts
// with none and outlives a SIGKILLed corral. Without the trampoline's
// LockOSThread, TestWorkerContract saw a worker without it in 1 run of 4
// under load: a look at 20 workers here is cheap, not proof.
func TestTrampolineKeepsDeathSignal(t *testing.T) {
	for i := range 20 {
		c := startChild(t, trampolineHelper(t, "pdeathsig", nil))
		c.mustSucceed(t)
		if want := "pdeathsig 9"; len(c.report) != 1 || c.report[0] != want {
			t.Fatalf("worker %d reported %q, want %q", i, c.report, want)
		}
	}
}
