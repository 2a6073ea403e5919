package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corraldev/corral/control"
	"github.com/corraldev/corral/internal/testenv"
	"github.com/corraldev/corral/workers"
	"golang.org/x/sys/unix"
)

// badDatagrams are what an abusing worker sends before it comes online,
// each with READY=1 in it, and each to be dropped: none may bring it online.
var badDatagrams = []struct {
	name    string
	payload string
	withFD  bool
}{
	{"oversized (4,105 bytes)", "READY=1\nSTATUS=" + strings.Repeat("x", 4090), false},
	{"64 KiB", "READY=1\nSTATUS=" + strings.Repeat("x", 64<<10), false},
	{"NUL byte", "READY=1\x00X", false},
	{"not KEY=VALUE", "READY=1\nnot a key and a value", false},
	{"carrying an fd", "READY=1", true},
}

// floodReport is what the abusing worker's flood did.
type floodReport struct {
	Attempts  int           `json:"attempts"`
	Valid     int           `json:"valid"`   // WATCHDOG=1 and READY=1 that the kernel took
	Invalid   int           `json:"invalid"` // NUL-containing ones it took
	Refused   int           `json:"refused"` // EAGAIN: corral's queue was full
	Took      time.Duration `json:"took"`
	FirstFail string        `json:"first_fail,omitempty"`
}

// abuserWorker abuses corral's notify socket in three steps, each after
// its gate (a FIFO in $CORRAL_TEST_GATES) opens: the badDatagrams at
// start; then READY=1; then a flood of up to 100,000 datagrams in a
// second, half valid and half not, sent without waiting (MSG_DONTWAIT),
// whose floodReport it writes to $CORRAL_TEST_GATES/flood.json. Then it
// waits for SIGTERM.
func abuserWorker() int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 4
	}
	to := &unix.SockaddrUnix{Name: os.Getenv("NOTIFY_SOCKET")}
	dir := os.Getenv("CORRAL_TEST_GATES")
	for _, d := range badDatagrams {
		var oob []byte
		if d.withFD {
			oob = unix.UnixRights(0)
		}
		if err := unix.Sendmsg(fd, []byte(d.payload), oob, to, 0); err != nil && !errors.Is(err, unix.EMSGSIZE) {
			fmt.Fprintf(os.Stderr, "test worker: send %s: %v\n", d.name, err)
			return 5
		}
	}
	for _, step := range []string{"ready", "flood"} {
		if _, err := os.ReadFile(filepath.Join(dir, step)); err != nil {
			return 6
		}
		if step == "ready" {
			if err := unix.Sendmsg(fd, []byte("READY=1"), nil, to, 0); err != nil {
				return 5
			}
		}
	}
	r := flood(fd, to)
	b, _ := json.Marshal(r)
	if err := os.WriteFile(filepath.Join(dir, "flood.json.tmp"), b, 0o600); err != nil {
		return 4
	}
	os.Rename(filepath.Join(dir, "flood.json.tmp"), filepath.Join(dir, "flood.json"))
	<-sigs
	return 0
}

// flood sends up to 100,000 datagrams to to for at most a second.
func flood(fd int, to unix.Sockaddr) floodReport {
	msgs := [][]byte{[]byte("WATCHDOG=1"), []byte("READY=1\x00"), []byte("READY=1"), []byte("STOPPING=1\x00")}
	var r floodReport
	start := time.Now()
	for ; r.Attempts < 100_000 && time.Since(start) < time.Second; r.Attempts++ {
		m := msgs[r.Attempts%len(msgs)]
		err := unix.Sendmsg(fd, m, nil, to, unix.MSG_DONTWAIT)
		switch {
		case err == nil && r.Attempts%2 == 0:
			r.Valid++
		case err == nil:
			r.Invalid++
		case errors.Is(err, unix.EAGAIN):
			r.Refused++
		case r.FirstFail == "":
			r.FirstFail = err.Error()
		}
	}
	r.Took = time.Since(start)
	return r
}

// TestNotifyAbuse is the notify abuse row. A worker sends corral
// datagrams that each say READY=1 but are oversized, hold a NUL byte, are
// malformed or carry a descriptor; this process, which is no worker, sends
// READY=1; another user cannot reach the socket at all. None of it brings
// the worker online, and each is counted. Then the worker floods corral
// with up to 100,000 datagrams in a second: corral answers status all
// along, counts every datagram it read, and changes nothing.
func TestNotifyAbuse(t *testing.T) {
	gates := t.TempDir()
	for _, g := range []string{"ready", "flood"} {
		testenv.Gate(t, filepath.Join(gates, g))
	}
	in := runCorral(t, []string{"CORRAL_TEST_WORKER=abuser", "CORRAL_TEST_GATES=" + gates},
		"-i", "1", "--listen", testenv.FreeAddr(t), "--", testExe(t))
	status := func() (workers.Status, error) { return control.Status(context.Background(), in.control) }
	st := waitStatus(t, status, "the bad datagrams dropped", func(st workers.Status) bool {
		return st.Dropped >= uint64(len(badDatagrams))
	})
	sock := filepath.Join(filepath.Dir(in.control), "notify.sock")
	if err := sendAs(t, 0, sock, "READY=1"); err != nil {
		t.Fatalf("READY=1 from this process: %v", err)
	}
	st = waitStatus(t, status, "the stranger's READY=1 ignored", func(st workers.Status) bool { return st.Ignored == 1 })
	if st.Dropped != uint64(len(badDatagrams)) || st.Online != 0 || st.Workers[0].State != "starting" {
		t.Fatalf("after %d bad datagrams and a stranger's READY=1: %d dropped, %d online, worker %s; want %d, 0, starting",
			len(badDatagrams), st.Dropped, st.Online, st.Workers[0].State, len(badDatagrams))
	}
	other := sendAs(t, 65534, sock, "READY=1")
	if !errors.Is(other, unix.EACCES) {
		t.Errorf("READY=1 from uid 65534: %v, want permission denied", other)
	}
	pid := st.Workers[0].PID

	testenv.OpenGate(t, filepath.Join(gates, "ready"))
	online := in.waitRunning(1)
	testenv.OpenGate(t, filepath.Join(gates, "flood"))
	answers, slowest := 0, time.Duration(0)
	report := filepath.Join(gates, "flood.json")
	for {
		start := time.Now()
		if _, err := control.Status(context.Background(), in.control); err != nil {
			t.Fatalf("status during the flood: %v", err)
		}
		answers++
		slowest = max(slowest, time.Since(start))
		if _, err := os.Stat(report); err == nil {
			break
		}
	}
	var r floodReport
	if b, err := os.ReadFile(report); err != nil || json.Unmarshal(b, &r) != nil {
		t.Fatalf("flood report: %v %s", err, b)
	}
	// Every datagram the kernel took is read and counted.
	wantDropped := uint64(len(badDatagrams) + r.Invalid)
	wantReceived := online.Received + uint64(r.Valid)
	st = waitStatus(t, status, "every datagram of the flood counted", func(st workers.Status) bool {
		return st.Dropped == wantDropped && st.Received == wantReceived
	})
	dropLines := strings.Count(in.stderr.String(), "notify socket: dropped datagram")
	t.Logf("flood: %d datagrams sent in %v, %d taken by the kernel (%d valid, %d invalid), %d refused with EAGAIN (corral's queue full), first other error %q; corral counted %d dropped and %d handled, and logged %d lines about them; status answered %d times during it, the slowest in %v; another user's READY=1: %v",
		r.Attempts, r.Took.Round(time.Millisecond), r.Valid+r.Invalid, r.Valid, r.Invalid, r.Refused, r.FirstFail,
		st.Dropped, st.Received-online.Received, dropLines, answers, slowest.Round(time.Microsecond), other)
	// The flood happened, and corral read it while it ran: the socket's
	// queue holds 10, so more than 100 taken means corral kept reading.
	// (How many depends on the machine's load: 971 to 5,564 seen here.)
	if r.Attempts < 10000 {
		t.Errorf("the worker sent only %d datagrams in %v; no flood", r.Attempts, r.Took)
	}
	if r.Valid+r.Invalid < 100 {
		t.Errorf("only %d datagrams of the flood reached corral", r.Valid+r.Invalid)
	}
	if answers < 5 {
		t.Errorf("status answered %d times during a flood of %v", answers, r.Took)
	}
	if st.State != "running" || st.Online != 1 || st.Restarts != 0 || st.Workers[0].PID != pid || st.Ignored != 1 || st.Generation != 1 {
		t.Errorf("the flood changed corral: %+v", st)
	}
	if dropLines > 5 {
		t.Errorf("%d log lines for the dropped datagrams, want at most one a second", dropLines)
	}
}

// waitStatus polls status until it answers and ok holds.
func waitStatus(t *testing.T, status func() (workers.Status, error), what string, ok func(workers.Status) bool) workers.Status {
	t.Helper()
	var st workers.Status
	testenv.WaitFor(t, 30*time.Second, what, func() bool {
		var err error
		st, err = status()
		return err == nil && ok(st)
	})
	return st
}

// sendAs sends payload to the unixgram socket at path, from this process
// (uid 0) or, with systemd-notify, from a process of user uid; it returns
// the error the send met.
func sendAs(t *testing.T, uid int, path, payload string) error {
	if uid == 0 {
		c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(c)
		return unix.Sendto(c, []byte(payload), 0, &unix.SockaddrUnix{Name: path})
	}
	tool := testenv.Need(t, "systemd-notify", "systemd")
	cmd := exec.Command(tool, payload)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "Permission denied") {
		return unix.EACCES
	}
	if err != nil {
		return fmt.Errorf("systemd-notify as uid %d: %v: %s", uid, err, out)
	}
	return nil
}
