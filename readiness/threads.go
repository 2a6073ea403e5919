package readiness

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"golang.org/x/sys/unix"
)

// maxPollFDs bounds the poll array read from a process' memory.
const maxPollFDs = 1 << 16

// scanThreads returns why a thread of the process shows it listening, or
// "", and queues the children of every thread for inspection.
func (p *proc) scanThreads() (string, error) {
	task, err := openat(p.dir, cpath(p.path, "task"))
	if err != nil {
		return "", err
	}
	defer unix.Close(task)
	var reason string
	var threadErr error
	err = eachNumber(task, p.dents, func(tid int) bool {
		reason, threadErr = p.thread(task, tid)
		return reason == "" && threadErr == nil
	})
	if err != nil {
		return "", err
	}
	return reason, threadErr
}

// thread inspects thread tid: what it is blocked in, when the process holds
// one of the sockets, and which children it has forked.
func (p *proc) thread(task, tid int) (string, error) {
	if len(p.fds) > 0 {
		call, err := readAt(task, cpathNum(p.path, "", tid, "/syscall"), p.data)
		if err != nil {
			return "", ignoreGone(err)
		}
		if sc, ok := parseSyscall(call); ok {
			if reason, err := p.blocked(task, tid, sc); err != nil || reason != "" {
				return reason, err
			}
		}
	}
	children, err := readAt(task, cpathNum(p.path, "", tid, "/children"), p.data)
	if err != nil {
		return "", ignoreGone(err)
	}
	for f := range bytes.FieldsSeq(children) {
		if pid, ok := atoi(f); ok && len(p.queue) < maxProcs {
			p.queue = append(p.queue, pid)
		}
	}
	return "", nil
}

// blocked returns why thread tid, blocked in system call sc, shows the
// process listening, or "".
func (p *proc) blocked(task, tid int, sc syscallState) (string, error) {
	var s sockFD
	var found bool
	var err error
	switch sc.nr {
	case sysAccept, sysAccept4, sysRecvfrom, sysRecvmsg, sysRecvmmsg, sysRead:
		// On a listening socket, a read returns at once (ENOTCONN): a
		// thread blocked in one waits for a datagram.
		s, found = p.sockFD(int(int32(sc.args[0])))
	case sysPoll, sysPPoll:
		s, found, err = p.pollReads(sc.args[0], sc.args[1])
	case sysSelect, sysPSelect6:
		s, found, err = p.selectReads(sc.args[0], sc.args[1])
	}
	if err != nil || !found {
		return "", err
	}
	if found, err = p.stillIn(task, tid, sc); err != nil || !found {
		return "", err
	}
	return fmt.Sprintf("pid %d thread %d waits in %s on fd %d (socket:[%d])",
		p.pid, tid, syscallName(sc.nr), s.fd, s.ino), nil
}

// stillIn reports whether thread tid is still in system call sc, so that
// memory read meanwhile was the call's own.
func (p *proc) stillIn(task, tid int, sc syscallState) (bool, error) {
	call, err := readAt(task, cpathNum(p.path, "", tid, "/syscall"), p.data)
	if err != nil {
		return false, ignoreGone(err)
	}
	now, ok := parseSyscall(call)
	return ok && now == sc, nil
}

// pollReads looks for one of the sockets polled for input in the array of
// nfds struct pollfd {int fd; short events; short revents} at addr.
func (p *proc) pollReads(addr, nfds uint64) (sockFD, bool, error) {
	const size = 8
	buf := p.data[:len(p.data)/size*size]
	for left := min(nfds, maxPollFDs) * size; left > 0; {
		n, err := p.readMem(buf[:min(uint64(len(buf)), left)], addr)
		if err != nil || n == 0 {
			return sockFD{}, false, err
		}
		for b := buf[:n/size*size]; len(b) > 0; b = b[size:] {
			fd := int32(binary.NativeEndian.Uint32(b))
			events := binary.NativeEndian.Uint16(b[4:])
			if s, ok := p.sockFD(int(fd)); ok && events&unix.POLLIN != 0 {
				return s, true, nil
			}
		}
		addr, left = addr+uint64(n), left-uint64(n)
	}
	return sockFD{}, false, nil
}

// selectReads looks for one of the sockets among the first nfds bits of
// the fd_set at addr, an array of C longs.
func (p *proc) selectReads(nfds, addr uint64) (sockFD, bool, error) {
	const wordBytes = bits.UintSize / 8
	for _, s := range p.fds {
		if addr == 0 || uint64(s.fd) >= nfds {
			continue
		}
		word := p.data[:wordBytes]
		n, err := p.readMem(word, addr+uint64(s.fd/bits.UintSize*wordBytes))
		if err != nil || n < wordBytes {
			return sockFD{}, false, err
		}
		if bitSet(word, s.fd%bits.UintSize) {
			return s, true, nil
		}
	}
	return sockFD{}, false, nil
}

// bitSet reports whether bit i of the C long in b is set.
func bitSet(b []byte, i int) bool {
	var w uint64
	if len(b) == 8 {
		w = binary.NativeEndian.Uint64(b)
	} else {
		w = uint64(binary.NativeEndian.Uint32(b))
	}
	return w>>i&1 != 0
}

// readMem reads the process' memory at addr into buf. Memory that is no
// longer mapped, as when the thread has returned and freed it, reads
// nothing.
func (p *proc) readMem(buf []byte, addr uint64) (int, error) {
	if p.mem < 0 {
		fd, err := openat(p.dir, cpath(p.path, "mem"))
		if gone(err) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("open memory: %w", err)
		}
		p.mem = fd
	}
	n, err := unix.Pread(p.mem, buf, int64(addr))
	if errors.Is(err, unix.EIO) || errors.Is(err, unix.EFAULT) {
		return 0, nil
	}
	return n, ignoreGone(err)
}

// ignoreGone returns err unless it means the process or thread exited.
func ignoreGone(err error) error {
	if gone(err) {
		return nil
	}
	return err
}
