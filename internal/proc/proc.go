// Package proc reads processes from Linux's /proc: the stat line of one
// (state, parent, group, CPU time, threads), its resident memory, its
// children, its command line, its open descriptors, and the list of all.
// It is corral's one parser of /proc/PID/stat: notify traces the ancestors
// of a datagram's sender with it, bench measures process trees, corral
// reports its own figures in its status, tests look for zombies and a
// machine's PID 1. UDPDrops reads /proc/net/udp, for the datagram tests.
//
// ReadStat allocates nothing unless it fails, so that notify can call it
// for every datagram.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Stat is the part of /proc/PID/stat (proc(5)) that corral reads.
type Stat struct {
	PID   int
	State byte // 'R' running, 'S' sleeping, 'D' disk sleep, 'Z' zombie, 'T' stopped, ...
	PPID  int  // the parent; 0 for PID 1 of a namespace as seen from it
	PGRP  int  // the process group
	// UTime and STime are the CPU time spent in user and kernel mode, in
	// clock ticks (USER_HZ, 100 a second on Linux).
	UTime, STime uint64
	// CUTime and CSTime are those of the children it has waited for.
	CUTime, CSTime uint64
	Threads        int    // the process's threads (num_threads)
	StartTime      uint64 // clock ticks after boot when the process started
}

// ticksPerSecond is USER_HZ, which the kernel fixes at 100 for userspace.
const ticksPerSecond = 100

// Zombie reports whether the process has exited and waits to be reaped.
func (s Stat) Zombie() bool { return s.State == 'Z' || s.State == 'X' }

// CPU returns the CPU time the process has used, user and kernel.
func (s Stat) CPU() time.Duration {
	return time.Duration(s.UTime+s.STime) * (time.Second / ticksPerSecond)
}

// ReapedCPU returns the CPU time of the children it has waited for.
func (s Stat) ReapedCPU() time.Duration {
	return time.Duration(s.CUTime+s.CSTime) * (time.Second / ticksPerSecond)
}

// statFields is how many fields after the command name ParseStat reads:
// state (field 3 of proc(5)) to starttime (field 22).
const statFields = 20

// ParseStat parses the contents of a /proc/PID/stat file. The command
// name, field 2, is in parentheses and may hold anything, spaces and
// parentheses included, so the other fields are counted from the last ')'.
func ParseStat(b []byte) (Stat, error) {
	var s Stat
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return s, errors.New("parse stat: no command name in parentheses")
	}
	pid, ok := atoi(bytes.TrimSpace(b[:open]))
	if !ok {
		return s, fmt.Errorf("parse stat: pid %q", string(b[:open])) // a copy: b stays on the caller's stack
	}
	s.PID = pid
	rest := b[end+1:]
	for i := 0; i < statFields; i++ {
		rest = bytes.TrimLeft(rest, " ")
		n := bytes.IndexAny(rest, " \n")
		if n < 0 {
			n = len(rest)
		}
		f := rest[:n]
		rest = rest[n:]
		if len(f) == 0 {
			return Stat{}, fmt.Errorf("parse stat of %d: %d fields after the command name, want %d", pid, i, statFields)
		}
		if i == 0 {
			s.State = f[0]
			continue
		}
		v, ok := atoi(bytes.TrimPrefix(f, []byte("-")))
		if !ok {
			return Stat{}, fmt.Errorf("parse stat of %d: field %d is %q, want a number", pid, i+3, string(f))
		}
		switch i + 3 { // the field's number in proc(5)
		case 4:
			s.PPID = v
		case 5:
			s.PGRP = v
		case 14:
			s.UTime = uint64(v)
		case 15:
			s.STime = uint64(v)
		case 16:
			s.CUTime = uint64(v)
		case 17:
			s.CSTime = uint64(v)
		case 20:
			s.Threads = v
		case 22:
			s.StartTime = uint64(v)
		}
	}
	return s, nil
}

// atoi parses a decimal number that is all of b.
func atoi(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// statMax bounds a stat line: 52 fields of at most 20 digits and a
// 16-byte command name.
const statMax = 1200

// ReadStat reads and parses /proc/PID/stat. The error of a process that
// has gone is a *os.PathError that matches os.ErrNotExist (or ESRCH).
func ReadStat(pid int) (Stat, error) {
	var pathBuf [32]byte
	path := append(pathBuf[:0], "/proc/"...)
	path = strconv.AppendInt(path, int64(pid), 10)
	path = append(path, "/stat\x00"...)
	var buf [statMax]byte
	n, err := readFile(path, buf[:])
	if err != nil {
		return Stat{}, &os.PathError{Op: "read", Path: string(path[:len(path)-1]), Err: err}
	}
	return ParseStat(buf[:n])
}

// readFile reads the file at the NUL-terminated path into buf with one
// read, which /proc answers whole for a stat line. It makes the system
// calls itself: package unix would copy the path to the heap, and its
// Read, built with the race detector, moves buf there.
func readFile(path, buf []byte) (int, error) {
	cwd := unix.AT_FDCWD // a variable: the constant is negative
	fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(cwd),
		uintptr(unsafe.Pointer(&path[0])), unix.O_RDONLY|unix.O_CLOEXEC, 0, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	defer unix.Close(int(fd))
	for {
		n, _, errno := unix.Syscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
		if errno != unix.EINTR {
			if errno != 0 {
				return 0, errno
			}
			return int(n), nil
		}
	}
}

// PIDs returns the PID of every process now, in /proc's order.
func PIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range ents {
		if pid, ok := atoi([]byte(e.Name())); ok {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Children returns the children of pid, those of each of its threads, from
// /proc/PID/task/TID/children. A process that has gone has none.
func Children(pid int) ([]int, error) {
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			continue // the thread has exited; its children moved to another
		}
		for f := range bytes.FieldsSeq(b) {
			if kid, ok := atoi(f); ok && !slices.Contains(kids, kid) {
				kids = append(kids, kid)
			}
		}
	}
	return kids, nil
}

// RSS returns the resident set size of pid in bytes: VmRSS from
// /proc/PID/status. (The rss field of the stat line is the kernel's cheaper
// estimate, off by a few hundred KiB on Linux 6.)
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read /proc/%d/status: VmRSS %q: %w", pid, v, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, nil // a zombie or a kernel thread has no memory of its own
}

// FDs returns how many file descriptors pid has open. For this process the
// descriptor that lists them is not counted.
func FDs(pid int) (int, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, fmt.Errorf("list the descriptors of %d: %w", pid, err)
	}
	n := len(names)
	if pid == os.Getpid() {
		n-- // f itself
	}
	return n, nil
}

// Cmdline returns the command line of pid, its arguments joined by spaces.
// A kernel thread or a zombie has none.
func Cmdline(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " ")), nil
}

// UDPDrops returns how many datagrams the kernel has dropped at the UDP
// sockets of this network namespace bound to port, most often for a full
// receive buffer: the sum of the drops column of /proc/net/udp and udp6
// over the sockets whose local port is port.
func UDPDrops(port int) (int64, error) {
	var drops int64
	for _, file := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(file)
		if errors.Is(err, os.ErrNotExist) {
			continue // no IPv6
		}
		if err != nil {
			return 0, err
		}
		// "sl local_address rem_address st ... inode ref pointer drops",
		// local_address "ADDR:PORT" in hexadecimal.
		lines := strings.Split(string(b), "\n")
		for _, line := range lines[min(1, len(lines)):] {
			f := strings.Fields(line)
			if len(f) < 13 {
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err != nil || int(p) != port {
				continue
			}
			n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: drops %q: %w", file, f[len(f)-1], err)
			}
			drops += n
		}
	}
	return drops, nil
}
