package readiness

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// maxProcs bounds the processes one call inspects: the worker and its
// descendants, nearest first.
const maxProcs = 256

// Listening reports whether process pid, or one of its descendants, is
// waiting for connections or datagrams on one of the sockets s, and if so a
// short reason for logs such as "pid 123 polls socket:[4567] through epoll
// fd 9".
//
// A process waits when an epoll instance it holds watches one of the
// sockets for input, or when one of its threads is blocked in accept or
// accept4 on a descriptor of one of the sockets, or in recvfrom, recvmsg,
// recvmmsg or read on one (a datagram socket), or in poll, ppoll, select
// or pselect6 with such a descriptor in its read set. A process that holds
// a connection it accepted from one of the sockets (a connected TCP socket
// whose local address is a listener's, or a connected unix socket named as
// a listener is) has served, and counts too: a busy server is rarely seen
// waiting. A process that merely holds the sockets, as every worker does
// from its first instruction, is not listening.
//
// A process that has exited, or exits while it is inspected, is not
// listening: Listening returns (false, "", nil). Errors report an unexpected
// failure to read /proc, such as a descendant that changed its user ID.
// Listening is safe for concurrent use.
func Listening(pid int, s Sockets) (bool, string, error) {
	if len(s.ids) == 0 {
		return false, "", nil
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	sc.acceptedLoaded, sc.noPidfd, sc.diagFD = false, false, -1
	defer sc.closeDiag()
	sc.queue = append(sc.queue[:0], pid)
	for i := 0; i < len(sc.queue) && i < maxProcs; i++ {
		reason, err := sc.inspect(sc.queue[i], s)
		if err != nil || reason != "" {
			return reason != "", reason, err
		}
	}
	return false, "", nil
}

// scratch holds the buffers of one Listening call, reused through
// scratchPool so that polling a starting worker allocates nothing.
type scratch struct {
	path   []byte   // the NUL-terminated path being opened
	link   []byte   // the target of a /proc/PID/fd link
	dents  []byte   // directory entries
	data   []byte   // file contents and process memory
	queue  []int    // processes to inspect: the worker, then descendants
	fds    []sockFD // the sockets' descriptors in the process inspected
	conns  []sockFD // its other sockets
	epolls []int    // its epoll descriptors

	msg            []byte   // a sock_diag request
	diagFD         int      // the call's sock_diag socket, or -1
	accepted       []uint64 // inodes of TCP connections accepted from the sockets, sorted
	acceptedLoaded bool     // whether accepted is filled in for this call
	noPidfd        bool     // pidfd_getfd was refused during this call
	sa             unix.RawSockaddrAny
}

// closeDiag closes the call's sock_diag socket, if it opened one.
func (sc *scratch) closeDiag() {
	if sc.diagFD >= 0 {
		unix.Close(sc.diagFD)
		sc.diagFD = -1
	}
}

// sockFD is a descriptor of one of the sockets in the process inspected.
type sockFD struct {
	fd  int
	ino uint64
}

var scratchPool = sync.Pool{New: func() any {
	return &scratch{
		path:  make([]byte, 0, 64),
		link:  make([]byte, 64),
		dents: make([]byte, 8192),
		data:  make([]byte, 8192),
		msg:   make([]byte, 128),
	}
}}

// proc is the process being inspected.
type proc struct {
	*scratch
	pid int
	set Sockets
	dir int // /proc/PID: a PID reused meanwhile is another directory
	mem int // /proc/PID/mem, opened when first needed, or -1
}

// inspect returns the reason process pid is listening, or "" when it is
// not, and queues its children for inspection.
func (sc *scratch) inspect(pid int, s Sockets) (string, error) {
	dir, err := openat(unix.AT_FDCWD, cpathNum(sc.path, "/proc/", pid, ""))
	if err != nil {
		return "", failed(pid, "open /proc entry", err)
	}
	p := proc{scratch: sc, pid: pid, set: s, dir: dir, mem: -1}
	defer p.close()
	if err := p.scanFDs(); err != nil {
		return "", failed(pid, "list descriptors", err)
	}
	for _, epfd := range p.epolls {
		reason, err := p.epollWatches(epfd)
		if err != nil || reason != "" {
			return reason, failed(pid, "read epoll fdinfo", err)
		}
	}
	if reason, err := p.acceptedFrom(); err != nil || reason != "" {
		return reason, failed(pid, "look for accepted connections", err)
	}
	reason, err := p.scanThreads()
	return reason, failed(pid, "inspect threads", err)
}

// close closes the descriptors inspect opened.
func (p *proc) close() {
	unix.Close(p.dir)
	if p.mem >= 0 {
		unix.Close(p.mem)
	}
}

// failed wraps err, which is nil or a failure of op on process pid; a
// process that has exited is no failure.
func failed(pid int, op string, err error) error {
	if err == nil || gone(err) {
		return nil
	}
	return fmt.Errorf("readiness: pid %d: %s: %w", pid, op, err)
}
