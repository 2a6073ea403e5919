package notify

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corraldev/corral/internal/proc"
)

// maxFDs is how many passed file descriptors the control buffer has room
// for. The kernel closes any that do not fit and sets MSG_CTRUNC; the ones
// that fit are closed by parseControl. Either way none stay open.
const maxFDs = 16

// Reasons a datagram is refused before its payload is parsed.
var (
	errNoCreds = errors.New("no sender credentials")
	errFDs     = errors.New("file descriptors attached (closed them)")
	errCtrunc  = errors.New("control data truncated")

	// errBarrier marks sd_notify_barrier(3)'s BARRIER=1 datagram: its one
	// fd is closed, which is the answer the sender waits for, and nothing
	// is delivered or counted. systemd-notify sends one after each message.
	errBarrier = errors.New("barrier")
)

// reader holds the buffers for one Serve loop.
type reader struct {
	s   *Socket
	buf []byte // one byte more than maxPayload, to see an oversized payload
	oob []byte
}

func newReader(s *Socket) *reader {
	return &reader{
		s:   s,
		buf: make([]byte, maxPayload+1),
		oob: make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(maxFDs*4)),
	}
}

// next returns the next valid message, counting and logging each invalid
// datagram it skips on the way. Its error is a read error.
func (r *reader) next() (Message, error) {
	for {
		n, oobn, flags, err := r.recv()
		if err != nil {
			return Message{}, err
		}
		m, err := decode(r.buf[:n], r.oob[:oobn], flags)
		if err == nil {
			return m, nil
		}
		if err == errBarrier {
			continue
		}
		r.s.dropped.Add(1)
		r.s.log.report(m.PID, err)
	}
}

// recv reads one datagram into r.buf and its control data into r.oob,
// waiting in the runtime's poller so that Close and deadlines interrupt it.
// Descriptors passed with the datagram arrive close-on-exec, so a worker
// started meanwhile cannot inherit them.
func (r *reader) recv() (n, oobn, flags int, err error) {
	rerr := r.s.raw.Read(func(fd uintptr) bool {
		for {
			n, oobn, flags, _, err = unix.Recvmsg(int(fd), r.buf, r.oob, unix.MSG_CMSG_CLOEXEC)
			if err != unix.EINTR {
				return err != unix.EAGAIN
			}
		}
	})
	if rerr != nil {
		return 0, 0, 0, rerr
	}
	if err != nil {
		return 0, 0, 0, fmt.Errorf("recvmsg: %w", err)
	}
	return n, oobn, flags, nil
}

// decode turns one received datagram into a Message, closing any passed
// file descriptors. It returns (m, nil) for a valid datagram, or an error
// saying why it must be dropped together with a Message that holds only the
// sender's credentials, if known.
func decode(p, oob []byte, flags int) (Message, error) {
	cred, fds, err := parseControl(oob)
	var who Message
	if cred != nil {
		who.PID, who.UID, who.GID = int(cred.Pid), int(cred.Uid), int(cred.Gid)
	}
	if err == nil {
		err = checkDatagram(len(p), flags, who.PID)
	}
	if err == nil && fds > 0 {
		err = errFDs
		if fds == 1 && strings.TrimSpace(string(p)) == "BARRIER=1" {
			err = errBarrier
		}
	}
	if err != nil {
		return who, err
	}
	m, err := Parse(p)
	m.PID, m.UID, m.GID = who.PID, who.UID, who.GID
	if err == nil {
		// Now, while the sender still runs: systemd-notify exits as
		// soon as its barrier is answered, and then its parent is lost.
		m.Ancestors = ancestors(m.PID)
	}
	return m, err
}

// maxAncestors bounds how far up the process tree a sender is traced.
const maxAncestors = 16

// ancestors returns pid's parent, grandparent and so on, up to but not
// including PID 1, read from /proc; as many as could be read. It allocates
// nothing but the slice it returns.
func ancestors(pid int) []int {
	var up []int
	for range maxAncestors {
		st, err := proc.ReadStat(pid)
		if err != nil || st.PPID <= 1 {
			break
		}
		up = append(up, st.PPID)
		pid = st.PPID
	}
	return up
}

// checkDatagram applies systemd's checks to a received datagram of n bytes
// with recvmsg flags from sender pid: nothing truncated, a known sender.
func checkDatagram(n, flags, pid int) error {
	switch {
	case flags&unix.MSG_CTRUNC != 0:
		return errCtrunc
	case flags&unix.MSG_TRUNC != 0 || n > maxPayload:
		return errTooLarge
	case pid <= 0:
		return errNoCreds
	}
	return nil
}

// parseControl returns the credentials in oob, or nil if there are none,
// and how many file descriptors came with them, all of which it closes.
func parseControl(oob []byte) (*unix.Ucred, int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, 0, fmt.Errorf("parse control data: %w", err)
	}
	var cred *unix.Ucred
	n := 0
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Level != unix.SOL_SOCKET {
			continue
		}
		switch m.Header.Type {
		case unix.SCM_CREDENTIALS:
			cred, _ = unix.ParseUnixCredentials(m) // nil if malformed
		case unix.SCM_RIGHTS:
			n += closeRights(m)
		}
	}
	return cred, n, nil
}

// closeRights closes the file descriptors carried by an SCM_RIGHTS message
// and returns how many there were.
func closeRights(m *unix.SocketControlMessage) int {
	fds, _ := unix.ParseUnixRights(m)
	for _, fd := range fds {
		unix.Close(fd)
	}
	return len(fds)
}

// dropLog reports dropped datagrams through logf, at most once a second.
type dropLog struct {
	mu         sync.Mutex
	logf       func(format string, args ...any)
	now        func() time.Time // time.Now, replaced in tests
	last       time.Time        // when the last line was logged
	suppressed int              // drops not logged since then
}

func (l *dropLog) setLogf(logf func(format string, args ...any)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.logf = logf
}

// report logs one dropped datagram unless a line was logged less than a
// second ago, in which case it only counts it for the next line.
func (l *dropLog) report(pid int, reason error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.logf == nil {
		return
	}
	now := l.now()
	if !l.last.IsZero() && now.Sub(l.last) < time.Second {
		l.suppressed++
		return
	}
	more := ""
	if l.suppressed > 0 {
		more = fmt.Sprintf(" (%d more dropped since the last report)", l.suppressed)
	}
	l.logf("notify socket: dropped datagram from %s: %v%s", sender(pid), reason, more)
	l.last, l.suppressed = now, 0
}

// sender names the process that sent a datagram.
func sender(pid int) string {
	if pid <= 0 {
		return "unknown sender"
	}
	return "pid " + strconv.Itoa(pid)
}
