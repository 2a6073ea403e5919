package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/corraldev/corral/control"
	"github.com/corraldev/corral/internal/proc"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/workers"
)

// The reliability suite (docs/reliability.md) is a set of tests on real
// processes, one or more per row of its table: the soak, the crash storm,
// hung workers, corral killed mid-reload, notify and control socket abuse,
// config faults on reload and resource limits. `make test` runs the short
// version of every row, so that none rots; `make soak` (CORRAL_SOAK=long)
// runs the long version of the rows that have one.

// soakLong reports whether the long version of the suite runs.
func soakLong() bool { return os.Getenv("CORRAL_SOAK") == "long" }

// built holds corral and the example app built without the race detector,
// once per run of the test binary, for the rows that measure corral's own
// memory: the race detector's shadow memory would swamp it. The directory
// is readable by every user, so that a test can run a binary as another.
var built struct {
	once          sync.Once
	dir           string
	corral, hello string
	err           error
}

// builtBinaries returns the paths of the built corral and examples/hello.
func builtBinaries(t *testing.T) (corral, hello string) {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "corral-suite-bin-")
		if built.err != nil {
			return
		}
		if built.err = os.Chmod(built.dir, 0o755); built.err != nil {
			return
		}
		built.corral, built.hello = filepath.Join(built.dir, "corral"), filepath.Join(built.dir, "hello")
		for bin, pkg := range map[string]string{built.corral: ".", built.hello: "../../examples/hello"} {
			if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
				built.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.corral, built.hello
}

// removeBuilt removes what builtBinaries built; TestMain calls it.
func removeBuilt() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// zombiesOf returns the children of pid that have exited and wait to be
// reaped.
func zombiesOf(pid int) []int {
	kids, _ := proc.Children(pid)
	var z []int
	for _, kid := range kids {
		if st, err := proc.ReadStat(kid); err == nil && st.Zombie() && st.PPID == pid {
			z = append(z, kid)
		}
	}
	return z
}

// checkNoZombie fails t if a child of pid stays a zombie. A child seen in
// the moment between its exit and corral's wait is not a leak, so each one
// seen must be gone within 5 s. It returns how many were seen.
func checkNoZombie(t *testing.T, pid int) int {
	t.Helper()
	z := zombiesOf(pid)
	for _, kid := range z {
		testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("zombie %d of corral (%d) to be reaped", kid, pid), func() bool {
			st, err := proc.ReadStat(kid)
			return err != nil || !st.Zombie() || st.PPID != pid
		})
	}
	return len(z)
}

// testExe returns this test binary, which plays corral and its workers.
func testExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// reloadAsync asks corral for a reload; the result comes on the channel.
func (in *instance) reloadAsync() <-chan workers.ReloadResult {
	c := make(chan workers.ReloadResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r, err := control.Reload(ctx, in.control)
		if err != nil {
			r.Message = err.Error()
		}
		c <- r
	}()
	return c
}

// candidate returns the PID of the reload's candidate, once there is one.
func (in *instance) candidate(t *testing.T) int {
	t.Helper()
	var pid int
	testenv.WaitFor(t, 30*time.Second, "a candidate", func() bool {
		st, err := control.Status(context.Background(), in.control)
		for _, w := range st.Workers {
			if err == nil && w.State == "candidate" {
				pid = w.PID
			}
		}
		return pid != 0
	})
	return pid
}

// waitGone waits until none of pids runs any more: each is gone, or a
// zombie (an orphan waits as one for the process that inherited it to
// reap it).
func waitGone(t *testing.T, timeout time.Duration, pids ...int) time.Duration {
	t.Helper()
	start := time.Now()
	testenv.WaitFor(t, timeout, fmt.Sprintf("pids %v to exit", pids), func() bool {
		for _, pid := range pids {
			if st, err := proc.ReadStat(pid); err == nil && !st.Zombie() {
				return false
			}
		}
		return true
	})
	return time.Since(start)
}
