package proc

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// line is a real stat line (a bash of Debian 12) with its command name
// replaced by comm.
func line(comm string) string {
	return "4242 (" + comm + ") S 4100 4242 4100 34816 4242 4194560 1043 3180 0 1 2 3 4 5 20 0 1 0 123456 8990720 1285 18446744073709551615 1 1 0 0 0 0 65536 3686404 1266761467 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
}

func TestParseStat(t *testing.T) {
	want := Stat{PID: 4242, State: 'S', PPID: 4100, PGRP: 4242, UTime: 2, STime: 3, CUTime: 4, CSTime: 5, Threads: 1, StartTime: 123456}
	tests := []struct {
		name, in string
		want     Stat
		err      string
	}{
		{name: "plain", in: line("bash"), want: want},
		{name: "spaces", in: line("tmux: server"), want: want},
		{name: "parentheses", in: line("a) R 1 (b"), want: want},
		{name: "only parentheses", in: line(")))"), want: want},
		{name: "empty name", in: line(""), want: want},
		{name: "no newline", in: strings.TrimSuffix(line("x"), "\n"), want: want},
		{name: "cut short", in: "4242 (bash) S 4100 4242", err: "3 fields after the command name, want 20"},
		{name: "up to starttime", in: strings.Join(strings.Fields(line("bash"))[:22], " "), want: want},
		{name: "no name", in: "4242 bash S 4100", err: "no command name"},
		{name: "bad pid", in: "x (bash) S 4100", err: "pid"},
		{name: "bad field", in: strings.Replace(line("bash"), " 4100 4242 ", " 4100 zz ", 1), err: `field 5 is "zz"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tt.in))
			switch {
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Errorf("ParseStat: %v, want an error with %q", err, tt.err)
			case tt.err == "" && err != nil:
				t.Errorf("ParseStat: %v", err)
			case got != tt.want:
				t.Errorf("ParseStat = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadStatOfSelf(t *testing.T) {
	s, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// The state is the main thread's, which may sleep while another runs
	// this test.
	if s.PID != os.Getpid() || s.PPID != os.Getppid() || s.PGRP != unix.Getpgrp() || (s.State != 'R' && s.State != 'S') {
		t.Errorf("ReadStat(self) = %+v; want pid %d, parent %d, group %d, running or sleeping", s, os.Getpid(), os.Getppid(), unix.Getpgrp())
	}
	if s.StartTime == 0 {
		t.Errorf("ReadStat(self): started at tick 0")
	}
	if rss, err := RSS(os.Getpid()); err != nil || rss < 1<<20 {
		t.Errorf("RSS(self) = %d, %v; want at least 1 MiB", rss, err)
	}
}

// TestReadStatOfChild starts sleep under a name made to confuse a parser,
// reads it sleeping, then as a zombie, before it is reaped.
func TestReadStatOfChild(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skipf("no sleep: %v", err)
	}
	name := filepath.Join(t.TempDir(), "z) Z 1 (x")
	if err := os.Symlink(sleep, name); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, "60")
	stdin, err := cmd.StdinPipe() // keeps it from being a process that reads a terminal
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	reaped := false
	defer func() {
		if !reaped {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	if kids, err := Children(os.Getpid()); err != nil || !slices.Contains(kids, pid) {
		t.Errorf("Children(self) = %v, %v; want it to hold %d", kids, err, pid)
	}
	if line, err := Cmdline(pid); err != nil || line != name+" 60" {
		t.Errorf("Cmdline = %q, %v; want %q", line, err, name+" 60")
	}
	if s, err := ReadStat(pid); err != nil || s.PPID != os.Getpid() || s.PID != pid || s.Zombie() {
		t.Errorf("ReadStat(child) = %+v, %v; want pid %d, parent %d, alive", s, err, pid, os.Getpid())
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var info unix.Siginfo // wait for the exit, leaving the zombie in place
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if s, err := ReadStat(pid); err != nil || s.State != 'Z' || !s.Zombie() || s.PPID != os.Getpid() {
		t.Errorf("ReadStat(exited child) = %+v, %v; want a zombie of %d", s, err, os.Getpid())
	}
	cmd.Wait()
	reaped = true
	if _, err := ReadStat(pid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadStat(reaped child): %v, want ErrNotExist", err)
	}
}

func TestPIDs(t *testing.T) {
	pids, err := PIDs()
	if err != nil || !slices.Contains(pids, os.Getpid()) || !slices.Contains(pids, 1) {
		t.Errorf("PIDs() = %d pids, %v; want this process and 1 among them", len(pids), err)
	}
}

// TestReadStatAllocatesNothing: notify calls it for every datagram.
func TestReadStatAllocatesNothing(t *testing.T) {
	pid := os.Getpid()
	if n := testing.AllocsPerRun(100, func() { ReadStat(pid) }); n != 0 {
		t.Errorf("ReadStat allocates %v times a call, want 0", n)
	}
}

func BenchmarkReadStat(b *testing.B) {
	b.ReportAllocs()
	pid := os.Getpid()
	for b.Loop() {
		if _, err := ReadStat(pid); err != nil {
			b.Fatal(err)
		}
	}
}

// TestUDPDrops fills a UDP socket's receive buffer that nobody reads and
// counts the datagrams the kernel dropped.
func TestUDPDrops(t *testing.T) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	if n, err := UDPDrops(port); err != nil || n != 0 {
		t.Fatalf("UDPDrops of a new socket = %d, %v; want 0", n, err)
	}
	c.(*net.UDPConn).SetReadBuffer(4096) // the kernel's least
	s, err := net.Dial("udp", c.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 1000 {
		s.Write(make([]byte, 1000))
	}
	if n, err := UDPDrops(port); err != nil || n < 900 {
		t.Fatalf("UDPDrops after 1000 datagrams into a 4 KiB buffer = %d, %v; want at least 900", n, err)
	}
}

// TestThreadsAndFDsOfSelf: the counts match the kernel's lists of this
// process's threads and descriptors, and a descriptor opened shows.
func TestThreadsAndFDsOfSelf(t *testing.T) {
	runtime.LockOSThread() // keeps the thread count from changing under the test
	defer runtime.UnlockOSThread()
	s, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	if s.Threads < 1 || s.Threads > len(tasks)+1 || s.Threads < len(tasks)-1 {
		t.Errorf("Threads = %d, /proc/self/task lists %d", s.Threads, len(tasks))
	}
	before, err := FDs(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if after, err := FDs(os.Getpid()); err != nil || after != before+1 {
		t.Errorf("FDs with one more file open = %d, %v; want %d", after, err, before+1)
	}
}
