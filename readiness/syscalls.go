package readiness

import (
	"bytes"
	"strconv"

	"golang.org/x/sys/unix"
)

// The system calls in which a thread waits for connections, or for a
// datagram. sysAccept, sysPoll and sysSelect are defined per architecture:
// arm64 has no poll or select, only ppoll and pselect6.
const (
	sysAccept4  = unix.SYS_ACCEPT4
	sysPPoll    = unix.SYS_PPOLL
	sysPSelect6 = unix.SYS_PSELECT6
	sysRecvfrom = unix.SYS_RECVFROM
	sysRecvmsg  = unix.SYS_RECVMSG
	sysRecvmmsg = unix.SYS_RECVMMSG
	sysRead     = unix.SYS_READ
)

// noSyscall stands for a system call an architecture does not have.
const noSyscall = -1000

// syscallState is a thread's /proc/PID/task/TID/syscall: the number of the
// system call it is blocked in and the call's arguments.
type syscallState struct {
	nr   int
	args [6]uint64
}

// parseSyscall parses a syscall file, "NR ARG0 ... ARG5 SP PC" with the
// arguments in hexadecimal. A thread running ("running") or blocked outside
// a system call ("-1 SP PC") yields false.
func parseSyscall(b []byte) (syscallState, bool) {
	var sc syscallState
	i := 0
	for f := range bytes.FieldsSeq(b) {
		switch {
		case i == 0:
			nr, ok := atoi(f)
			if !ok {
				return sc, false
			}
			sc.nr = nr
		case i <= len(sc.args):
			v, err := strconv.ParseUint(string(bytes.TrimPrefix(f, []byte("0x"))), 16, 64)
			if err != nil {
				return sc, false
			}
			sc.args[i-1] = v
		}
		i++
	}
	return sc, i > len(sc.args)
}

// syscallName names system call nr for reasons.
func syscallName(nr int) string {
	switch nr {
	case sysAccept:
		return "accept"
	case sysAccept4:
		return "accept4"
	case sysPoll:
		return "poll"
	case sysPPoll:
		return "ppoll"
	case sysSelect:
		return "select"
	case sysPSelect6:
		return "pselect6"
	case sysRecvfrom:
		return "recvfrom"
	case sysRecvmsg:
		return "recvmsg"
	case sysRecvmmsg:
		return "recvmmsg"
	case sysRead:
		return "read"
	}
	return "system call " + strconv.Itoa(nr)
}
