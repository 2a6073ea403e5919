package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/workers"
	"golang.org/x/sys/unix"
)

// contractReport is what a worker of kind "contract" found itself started
// with, before it opened anything of its own.
type contractReport struct {
	PID       int          `json:"pid"`
	PGID      int          `json:"pgid"`
	Pdeathsig int          `json:"pdeathsig"`
	Env       []string     `json:"env"`
	Fds       []contractFd `json:"fds"`
}

type contractFd struct {
	Fd        int    `json:"fd"`
	Target    string `json:"target"` // the /proc/self/fd link
	Addr      string `json:"addr,omitempty"`
	Type      int    `json:"type,omitempty"` // SO_TYPE of a socket
	Listening bool   `json:"listening,omitempty"`
	Nonblock  bool   `json:"nonblock"`
}

// init keeps the contract worker's main goroutine on its main thread, so
// that it reads the parent-death signal where the launch set it: Linux keeps
// it per thread, and only the main thread's is set.
func init() {
	if os.Getenv("CORRAL_TEST_WORKER") == "contract" {
		runtime.LockOSThread()
	}
}

// contractWorker writes a contractReport to $CORRAL_TEST_OUT/contract-PID,
// sends READY=1 and waits for SIGTERM.
func contractWorker() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 4
	}
	r := contractReport{PID: os.Getpid(), Env: os.Environ()}
	r.PGID, _ = unix.Getpgid(0)
	var sig int
	if err := unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&sig)), 0, 0, 0); err == nil {
		r.Pdeathsig = sig
	}
	for _, e := range ents {
		fd, _ := strconv.Atoi(e.Name())
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own descriptor, closed by now
		}
		f := contractFd{Fd: fd, Target: target}
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil {
			f.Nonblock = fl&unix.O_NONBLOCK != 0
		}
		if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err == nil {
			f.Type = typ
			acc, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
			f.Listening = acc == 1
			if sa, err := unix.Getsockname(fd); err == nil {
				switch a := sa.(type) {
				case *unix.SockaddrInet4:
					f.Addr = fmt.Sprintf("%s:%d", net.IP(a.Addr[:]), a.Port)
				case *unix.SockaddrUnix:
					f.Addr = "unix:" + a.Name
				}
				if typ == unix.SOCK_DGRAM { // as --listen writes them
					f.Addr = strings.Replace("udp:"+f.Addr, "udp:unix:", "unixgram:", 1)
				}
			}
		}
		r.Fds = append(r.Fds, f)
	}
	b, _ := json.Marshal(r)
	out := filepath.Join(os.Getenv("CORRAL_TEST_OUT"), "contract-"+strconv.Itoa(os.Getpid()))
	if err := os.WriteFile(out, b, 0o600); err != nil {
		return 4
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	daemon.SdNotify(false, daemon.SdNotifyReady)
	<-sigs
	return 0
}

// contractVars are the variables of the worker contract: set by corral for
// every worker, or removed from what corral passes on. The README's worker
// contract must name each one, and name no other variable.
// JOURNAL_STREAM is set only under the journal (a booted Debian's test,
// in package cgroup, checks it); elsewhere it passes through.
var contractVars = struct{ set, node, journal, removed []string }{
	set: []string{"LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", "NOTIFY_SOCKET",
		"CORRAL_WORKER_INDEX", "NODE_APP_INSTANCE", "CORRAL_WORKERS", "CORRAL_GENERATION"},
	node:    []string{"NODE_CHANNEL_FD", "NODE_CHANNEL_SERIALIZATION_MODE", "NODE_OPTIONS"},
	journal: []string{"JOURNAL_STREAM"},
	removed: []string{"WATCHDOG_PID", "WATCHDOG_USEC", "LISTEN_PIDFDID"},
}

// TestWorkerContract runs `corral run` the way a user does, from an
// environment that holds what must not reach a worker (systemd's
// NOTIFY_SOCKET and watchdog, stale contract variables, a descriptor leaked
// without close-on-exec), and checks every descriptor and every variable
// each worker gets against the README's worker contract, across a reload.
func TestWorkerContract(t *testing.T) {
	for _, nodeIPC := range []bool{false, true} {
		t.Run(fmt.Sprintf("node ipc %t", nodeIPC), func(t *testing.T) { testWorkerContract(t, nodeIPC) })
	}
}

func testWorkerContract(t *testing.T, nodeIPC bool) {
	out := t.TempDir()
	runDir := t.TempDir()
	control := filepath.Join(runDir, "control.sock")
	addr := testenv.FreeAddr(t)
	unixPath := filepath.Join(t.TempDir(), "admin.sock")
	udpAddr := testenv.FreeUDPAddr(t)
	gramPath := filepath.Join(t.TempDir(), "log.sock")
	// A manager for corral to notify, so that NOTIFY_SOCKET is set in its
	// environment as under systemd; nothing reads it.
	sysPath := filepath.Join(t.TempDir(), "systemd-notify.sock")
	sys, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sysPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	exe, _ := os.Executable()

	leak, err := os.Open(os.DevNull) // passed to corral as its fd 3, not close-on-exec there
	if err != nil {
		t.Fatal(err)
	}
	defer leak.Close()
	env := append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(contractVars.set, k) || slices.Contains(contractVars.node, k) ||
			slices.Contains(contractVars.journal, k) || slices.Contains(contractVars.removed, k) || strings.HasPrefix(k, "CORRAL_")
	}),
		"CORRAL_TEST_WORKER=contract", "CORRAL_TEST_OUT="+out,
		"GODEBUG=containermaxprocs=0", // the worker's Go runtime then holds no cgroup files open
		"NOTIFY_SOCKET="+sysPath, "WATCHDOG_PID=1", "WATCHDOG_USEC=30000000", "LISTEN_PIDFDID=42",
		"CORRAL_WORKER_INDEX=9", "NODE_APP_INSTANCE=9", "CORRAL_GENERATION=9", "APP_KEEP=from the shell",
		// Not corral's stderr: no journal here, and it passes through as is.
		"JOURNAL_STREAM=8:12345",
	)
	args := []string{"run", "--control", control, "-i", "2", "--stop-timeout", "2s", "-e", "APP_SETTING=from -e",
		"--listen", "http=" + addr, "--listen", "admin=unix:" + unixPath,
		"--listen", "dns=udp:" + udpAddr, "--listen", "log=unixgram:" + gramPath}
	if nodeIPC {
		env = append(env, "NODE_OPTIONS=--max-old-space-size=64")
		args = append(args, "--ipc", "node")
	}
	cmd := corralCmd(t, nil, append(args, "--", exe)...)
	cmd.Env = append(env, "CORRAL_TEST_MAIN=1")
	cmd.ExtraFiles = []*os.File{leak}
	in := startInstance(t, cmd, control)
	first := in.waitRunning(2)
	if out, err := corralCmd(t, nil, "reload", "--control", control).CombinedOutput(); err != nil {
		t.Fatalf("reload: %v: %s", err, out)
	}
	second := in.waitRunning(2)

	// What every worker must see, apart from its slot and generation.
	base := slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(contractVars.removed, k) || slices.Contains(contractVars.set, k) ||
			k == "CORRAL_WORKER_INDEX" || k == "NODE_APP_INSTANCE" || k == "CORRAL_GENERATION" || k == "NODE_OPTIONS"
	})
	base = append(base, "APP_SETTING=from -e", "LISTEN_FDS=4", "LISTEN_FDNAMES=http:admin:dns:log", "CORRAL_WORKERS=2")
	if nodeIPC {
		preload := filepath.Join(runDir, "corral-preload.js")
		base = append(base, "NODE_CHANNEL_FD=7", "NODE_CHANNEL_SERIALIZATION_MODE=json",
			"NODE_OPTIONS=--require "+preload+" --max-old-space-size=64")
	}
	for _, st := range []struct {
		gen  int
		pids []int
	}{{1, pidList(first)}, {2, pidList(second)}} {
		for slot, pid := range st.pids {
			r := readContract(t, out, pid)
			checkContractProcess(t, r)
			want := append(slices.Clone(base),
				"LISTEN_PID="+strconv.Itoa(pid), "NOTIFY_SOCKET="+filepath.Join(runDir, "notify.sock"),
				"CORRAL_WORKER_INDEX="+strconv.Itoa(slot), "NODE_APP_INSTANCE="+strconv.Itoa(slot),
				"CORRAL_GENERATION="+strconv.Itoa(st.gen))
			checkEnv(t, fmt.Sprintf("worker %d of generation %d", slot, st.gen), r.Env, want)
			checkFds(t, r, []contractFd{
				{Addr: addr, Type: unix.SOCK_STREAM, Listening: true},
				{Addr: "unix:" + unixPath, Type: unix.SOCK_STREAM, Listening: true},
				{Addr: "udp:" + udpAddr, Type: unix.SOCK_DGRAM},
				{Addr: "unixgram:" + gramPath, Type: unix.SOCK_DGRAM},
			}, nodeIPC)
		}
	}
}

// pidList returns the PIDs of st's workers, by slot.
func pidList(st workers.Status) []int {
	pids := make([]int, len(st.Workers))
	for _, w := range st.Workers {
		pids[w.Slot] = w.PID
	}
	return pids
}

func readContract(t *testing.T, dir string, pid int) contractReport {
	t.Helper()
	var r contractReport
	if err := json.Unmarshal([]byte(mustRead(t, filepath.Join(dir, "contract-"+strconv.Itoa(pid)))), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func checkContractProcess(t *testing.T, r contractReport) {
	t.Helper()
	if r.PGID != r.PID {
		t.Errorf("worker %d in process group %d, want a group of its own", r.PID, r.PGID)
	}
	if r.Pdeathsig != int(syscall.SIGKILL) {
		t.Errorf("worker %d has death signal %d, want SIGKILL (%d)", r.PID, r.Pdeathsig, syscall.SIGKILL)
	}
}

// checkEnv compares two environments as sets and names every difference.
func checkEnv(t *testing.T, who string, got, want []string) {
	t.Helper()
	for _, kv := range want {
		if !slices.Contains(got, kv) {
			t.Errorf("%s: missing %s", who, kv)
		}
	}
	for _, kv := range got {
		if !slices.Contains(want, kv) {
			t.Errorf("%s: has %s, which the contract does not give", who, kv)
		}
	}
}

// checkFds checks the fd table: /dev/null, corral's stdout and stderr, the
// sockets in blocking mode (the listening stream sockets, then the
// datagram ones: want's Addr, Type and Listening), Node's channel, nothing
// else.
func checkFds(t *testing.T, r contractReport, want []contractFd, nodeIPC bool) {
	t.Helper()
	n := 3 + len(want)
	if nodeIPC {
		n++
	}
	if len(r.Fds) != n {
		t.Errorf("worker %d has %d fds, want %d: %+v", r.PID, len(r.Fds), n, r.Fds)
		return
	}
	if f := r.Fds[0]; f.Fd != 0 || f.Target != "/dev/null" {
		t.Errorf("worker %d stdin is %+v, want /dev/null", r.PID, f)
	}
	for i, w := range want {
		f := r.Fds[3+i]
		w.Fd, w.Target = 3+i, f.Target
		if f != w || !strings.HasPrefix(f.Target, "socket:") {
			t.Errorf("worker %d fd %d is %+v, want the blocking socket %+v", r.PID, 3+i, f, w)
		}
	}
	if ipc := 3 + len(want); nodeIPC {
		if f := r.Fds[ipc]; f.Fd != ipc || f.Type != unix.SOCK_STREAM || f.Listening || !strings.HasPrefix(f.Target, "socket:") {
			t.Errorf("worker %d fd %d is %+v, want Node's IPC channel, a connected unix stream socket", r.PID, ipc, f)
		}
	}
}

// TestReadmeNamesTheContractVariables checks that the README's worker
// contract names every variable the contract sets or removes, and no
// other variable.
func TestReadmeNamesTheContractVariables(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	sec := section(t, string(b), "## The worker contract")
	named := map[string]bool{}
	for _, m := range regexp.MustCompile("`([A-Z][A-Z0-9_]*[A-Z0-9])(?:=[^`]*)?`").FindAllStringSubmatch(sec, -1) {
		named[m[1]] = true
	}
	all := slices.Concat(contractVars.set, contractVars.node, contractVars.journal, contractVars.removed)
	for _, v := range all {
		if !named[v] {
			t.Errorf("the README's worker contract does not name %s", v)
		}
	}
	// Words in code spans that are not variables: messages, signals, calls.
	notVars := []string{"READY", "STATUS", "STOPPING", "WATCHDOG", "BARRIER", "SCM_CREDENTIALS",
		"PR_SET_PDEATHSIG", "SIGKILL", "SIGTERM", "NAME", "SOCK_SEQPACKET"}
	for v := range named {
		if !slices.Contains(all, v) && !slices.Contains(notVars, v) {
			t.Errorf("the README's worker contract names %s, which is not a contract variable: add it to contractVars, or to notVars if it is no variable", v)
		}
	}
}

// section returns the README section under heading, to the next heading of
// the same level.
func section(t *testing.T, text, heading string) string {
	t.Helper()
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README has no %q", heading)
	}
	rest := text[i+len(heading)+2:]
	if j := strings.Index(rest, "\n## "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}
