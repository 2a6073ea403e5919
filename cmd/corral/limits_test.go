package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/control"
	"github.com/corraldev/corral/internal/proc"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/workers"
)

// limitedCorral returns `corral run ARGS -- TESTBINARY` (echo workers)
// under an open file limit of n, soft and hard, as `ulimit -n` or
// LimitNOFILE= set it.
func limitedCorral(t *testing.T, n int, ctl string, args ...string) *exec.Cmd {
	t.Helper()
	prlimit := testenv.Need(t, "prlimit", "util-linux")
	run := append([]string{"--nofile=" + strconv.Itoa(n) + ":" + strconv.Itoa(n), "--", testExe(t),
		"run", "--control", ctl}, append(args, "--", testExe(t))...)
	cmd := exec.Command(prlimit, run...)
	cmd.Env = append(os.Environ(), "CORRAL_TEST_MAIN=1", "CORRAL_TEST_WORKER=echo", "NOTIFY_SOCKET=")
	return cmd
}

var atLeast = regexp.MustCompile(`raise it to at least (\d+)`)

// TestFileLimitTooLow is the first half of the resource limits row: an
// open file limit too low for the workers and sockets is a clear error at
// start, before any worker starts, and names the limit that works: with
// it corral runs and reloads, one below it refuses to start. A reload to
// more workers than the limit allows fails before any worker is touched.
func TestFileLimitTooLow(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "api.toml")
	addrs := []string{testenv.FreeAddr(t), testenv.FreeAddr(t)}
	config := func(instances int) {
		testenv.WriteFile(t, conf, fmt.Sprintf("command = [%q]\ninstances = %d\nlisten = [%q, %q]\n",
			testExe(t), instances, addrs[0], addrs[1]))
	}
	config(2)
	args := []string{"--config", conf}
	refuse := func(n int) (string, int) {
		ctl := filepath.Join(t.TempDir(), "control.sock")
		out, code := runBounded(t, limitedCorral(t, n, ctl, args...))
		if _, err := os.Stat(ctl); !os.IsNotExist(err) {
			t.Errorf("limit %d: the control socket is left behind: %v", n, err)
		}
		return out, code
	}
	out, code := refuse(16)
	m := atLeast.FindStringSubmatch(out)
	if code != 1 || m == nil || !strings.Contains(out, "open file limit (RLIMIT_NOFILE) is 16") || !strings.Contains(out, "LimitNOFILE=") {
		t.Fatalf("corral under a limit of 16: exit %d:\n%s\nwant 1, the limit, the number that works and how to raise it", code, out)
	}
	if strings.Contains(out, "): started") {
		t.Errorf("a worker was started under a limit too low:\n%s", out)
	}
	need, _ := strconv.Atoi(m[1])
	t.Logf("under a limit of 16: %s", lastLine(out))
	if out, code := refuse(need - 1); code != 1 || !strings.Contains(out, "raise it to at least "+m[1]) {
		t.Errorf("corral under a limit of %d, one below what it asked for: exit %d:\n%s", need-1, code, out)
	}

	ctl := filepath.Join(t.TempDir(), "control.sock")
	in := startInstance(t, limitedCorral(t, need, ctl, args...), ctl)
	in.waitRunning(2)
	reload := func() workers.ReloadResult {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		r, err := control.Reload(ctx, ctl)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for i := range 5 {
		if r := reload(); !r.OK {
			t.Fatalf("reload %d under the limit corral asked for (%d): %s", i+1, need, r.Message)
		}
	}
	before := in.waitSettled(2)
	config(20)
	r := reload()
	t.Logf("reload to 20 workers under a limit of %d: %s", need, r.Message)
	if r.OK || !strings.Contains(r.Message, "open file limit") || !strings.Contains(r.Message, "no worker was touched") {
		t.Errorf("reload to 20 workers under a limit of %d: %+v, want a failure before any worker is touched", need, r)
	}
	if after := in.waitSettled(2); pidsOf(after) != pidsOf(before) {
		t.Errorf("the failed reload changed the workers: %v -> %v", pidsOf(before), pidsOf(after))
	}
}

// TestControlSocketOutlivesEMFILE: clients that hold the control socket's
// connections until corral has no descriptor left make its accept fail
// with EMFILE. corral keeps accepting once they have gone.
func TestControlSocketOutlivesEMFILE(t *testing.T) {
	ctl := filepath.Join(t.TempDir(), "control.sock")
	args := []string{"-i", "1", "--listen", testenv.FreeAddr(t)}
	out, _ := runBounded(t, limitedCorral(t, 16, ctl, args...))
	need := 64 // what a corral without the limit check runs with
	if m := atLeast.FindStringSubmatch(out); m != nil {
		need, _ = strconv.Atoi(m[1])
	}
	in := startInstance(t, limitedCorral(t, need, ctl, args...), ctl)
	in.waitRunning(1)
	var silent []net.Conn
	for range need {
		c, err := net.Dial("unix", ctl)
		if err != nil {
			break // the listen queue is full too
		}
		silent = append(silent, c)
	}
	testenv.WaitFor(t, 30*time.Second, "corral to run out of descriptors", func() bool {
		n, err := proc.FDs(in.cmd.Process.Pid)
		return err == nil && n >= need-1
	})
	for _, c := range silent {
		c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := control.Status(ctx, ctl); err != nil {
		t.Fatalf("status after %d silent clients left, under a limit of %d: %v", len(silent), need, err)
	}
	line := firstLine(in.stderr.String(), "too many open files")
	t.Logf("%d silent clients under a limit of %d: %s", len(silent), need, line)
	if !strings.Contains(line, "control socket: accept") {
		t.Errorf("corral did not log that it ran out of descriptors:\n%s", in.stderr)
	}
}

// runBounded runs cmd, a corral expected to exit by itself, and returns
// its output and exit code. If it still runs after 20 s, it gets SIGTERM
// and the test fails.
func runBounded(t *testing.T, cmd *exec.Cmd) (string, int) {
	t.Helper()
	var out testenv.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Signal(syscall.SIGTERM)
		<-done
		t.Errorf("corral still ran 20s after it started, though it should have refused to:\n%s", out.String())
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func firstLine(s, substr string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}

// inFullDir returns a command that runs corral (this test binary) with
// args in a private mount namespace, on whose directory dir a small tmpfs
// is mounted first, filled with files by fill, a shell command ($0 is
// dir). The directory holds corral's runtime files.
func inFullDir(t *testing.T, dir, fill string, env []string, args ...string) *exec.Cmd {
	t.Helper()
	testenv.NeedRoot(t, "mounting a tmpfs")
	unshare := testenv.Need(t, "unshare", "util-linux")
	script := `set -e; mount -t tmpfs -o size=256k,nr_inodes=64,mode=0700 corral-full "$0"; ` + fill + `; exec "$@"`
	cmd := exec.Command(unshare, append([]string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, dir, testExe(t)}, args...)...)
	cmd.Env = append(append(os.Environ(), "CORRAL_TEST_MAIN=1", "NOTIFY_SOCKET="), env...)
	return cmd
}

// Shell commands that fill the tmpfs at $0: every inode, every block.
const (
	fillInodes = `i=0; while touch "$0/inode-$i" 2>/dev/null; do i=$((i+1)); done`
	fillBlocks = `dd if=/dev/zero of="$0/blocks" bs=4k 2>/dev/null || true`
)

// TestFullRuntimeDirectory is the second half of the resource limits row:
// a full file system under corral's runtime directory (a tmpfs in a
// private mount namespace). Full before the start, corral says which file
// it could not create and exits 1 before any worker starts. Once it runs,
// it writes nothing there: reloads and status work on a full file system.
func TestFullRuntimeDirectory(t *testing.T) {
	t.Run("no inode at start", func(t *testing.T) {
		dir := t.TempDir()
		out, code := runBounded(t, inFullDir(t, dir, fillInodes, []string{"CORRAL_TEST_WORKER=echo"},
			"run", "-i", "2", "--listen", testenv.FreeAddr(t), "--control", filepath.Join(dir, "control.sock"), "--", testExe(t)))
		t.Logf("no inode left: exit %d: %s", code, lastLine(out))
		if code != 1 || !strings.Contains(out, filepath.Join(dir, "control.sock")) || !strings.Contains(out, "no space left on device") || strings.Contains(out, "): started") {
			t.Errorf("corral with no inode left for its runtime files: exit %d:\n%s\nwant 1, the file it could not create, and no worker started", code, out)
		}
	})
	t.Run("no block at start, Node", func(t *testing.T) {
		node := testenv.Need(t, "node", "nodejs")
		dir := t.TempDir()
		out, code := runBounded(t, inFullDir(t, dir, fillBlocks, nil,
			"run", "-i", "2", "--listen", testenv.FreeAddr(t), "--control", filepath.Join(dir, "control.sock"), "--", node, "-e", "0"))
		t.Logf("no block left, Node: exit %d: %s", code, lastLine(out))
		if code != 1 || !strings.Contains(out, "write the Node preload") || !strings.Contains(out, "no space left on device") || strings.Contains(out, "): started") {
			t.Errorf("corral with no block left for the Node preload: exit %d:\n%s\nwant 1, the preload it could not write, and no worker started", code, out)
		}
	})
	t.Run("full after start", func(t *testing.T) {
		dir := t.TempDir()
		addr := testenv.FreeAddr(t)
		in := startInstance(t, inFullDir(t, dir, "true", []string{"CORRAL_TEST_WORKER=echo"},
			"run", "-i", "2", "--listen", addr, "--control", filepath.Join(dir, "control.sock"), "--", testExe(t)), "")
		// The tmpfs is seen through corral's own root, in its namespace.
		mounted := fmt.Sprintf("/proc/%d/root%s", in.cmd.Process.Pid, dir)
		in.control = filepath.Join(mounted, "control.sock")
		before := in.waitRunning(2)
		fillDir(t, mounted)
		for i := range 3 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			r, err := control.Reload(ctx, in.control)
			cancel()
			if err != nil || !r.OK {
				t.Fatalf("reload %d on a full runtime directory: %v %s", i+1, err, r.Message)
			}
		}
		after := in.waitSettled(2)
		if after.Generation != before.Generation+3 {
			t.Errorf("generation %d after 3 reloads from %d", after.Generation, before.Generation)
		}
		if got, err := ask("tcp", addr); err != nil || !strings.HasSuffix(got, " unknown 4") {
			t.Errorf("the workers answer %q, %v", got, err)
		}
		in.cmd.Process.Signal(syscall.SIGTERM)
		if code := in.wait(); code != 0 {
			t.Errorf("corral exited %d after SIGTERM on a full runtime directory", code)
		}
	})
}

// fillDir fills the file system of dir: every inode, then every block.
func fillDir(t *testing.T, dir string) {
	t.Helper()
	for i := 0; ; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("inode-%d", i)), nil, 0o600); err != nil {
			break
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Ffree != 0 {
		t.Fatalf("%d inodes free after filling %s", st.Ffree, dir)
	}
}
