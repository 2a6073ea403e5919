package readiness

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// A process that holds a connection accepted from one of the sockets has
// served, whatever its threads are doing when looked at: a busy server is
// rarely seen blocked in accept or select (Puma under load), but it holds
// connections. A connection accepted from a listener has the listener's
// local address (a TCP port and address, or a unix socket's name), which
// no other connected socket has. Two ways to read it, both without the
// whole of /proc/net/tcp, which under load lists every TIME_WAIT
// connection of the host:
//
//   - pidfd_getfd(2) copies one of the process' descriptors into corral,
//     where getsockname(2) reads its address: a few system calls per
//     socket the process holds. It needs the ptrace access that reading
//     /proc/PID/mem needs, and Linux 5.6.
//   - Where that is refused, the kernel's socket diagnostics (sock_diag(7),
//     the netlink interface of ss(8)): for TCP one dump per listening port
//     and family, filtered in the kernel to connected sockets on that
//     port, whose inodes are matched with the process' descriptors (a
//     connection still in the accept queue has no inode yet); it walks
//     the kernel's whole connection table, about 2 ms. For unix sockets, a
//     lookup by inode of each socket the process holds.

// sock_diag(7) and its headers (linux/sock_diag.h, inet_diag.h, unix_diag.h).
const (
	sizeofNlMsghdr     = 16
	sizeofInetDiagReq  = 56 // struct inet_diag_req_v2
	sizeofInetDiagMsg  = 72 // struct inet_diag_msg
	sizeofUnixDiagReq  = 24 // struct unix_diag_req
	sizeofUnixDiagMsg  = 16 // struct unix_diag_msg
	inetDiagReqByteOps = 1  // INET_DIAG_REQ_BYTECODE
	inetDiagBcSGE      = 2  // INET_DIAG_BC_S_GE
	inetDiagBcSLE      = 3  // INET_DIAG_BC_S_LE
	udiagShowName      = 1  // UDIAG_SHOW_NAME
	unixDiagName       = 0  // UNIX_DIAG_NAME
	tcpEstablished     = 1
	tcpListen          = 10

	// connectedStates are the TCP states of a connection a process may
	// hold: ESTABLISHED, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK and
	// CLOSING.
	connectedStates = 1<<1 | 1<<4 | 1<<5 | 1<<8 | 1<<9 | 1<<11
)

// copyFDs selects pidfd_getfd before sock_diag; tests turn it off.
var copyFDs = true

// maxLookups bounds the sockets of one process looked at.
const maxLookups = 256

// acceptedFrom returns why the process shows it has accepted a connection
// from one of the sockets, or "". It looks at the sockets it holds other
// than the listeners, if it holds one of those.
func (p *proc) acceptedFrom() (string, error) {
	if len(p.conns) == 0 || len(p.fds) == 0 || !p.set.streams {
		return "", nil // only a process that holds a listener accepts from it
	}
	if copyFDs && !p.noPidfd {
		reason, err := p.acceptedByCopy()
		if err == nil || !p.noPidfd {
			return reason, err
		}
	}
	if err := p.loadAccepted(); err != nil {
		return "", err
	}
	for _, c := range p.conns {
		if _, ok := slices.BinarySearch(p.accepted, c.ino); ok {
			return p.acceptedReason(c), nil
		}
	}
	if !p.set.hasUnix() {
		return "", nil
	}
	for i, c := range p.conns {
		if i == maxLookups {
			break
		}
		ok, err := p.unixAccepted(c.ino)
		if err != nil || ok {
			if ok {
				return p.acceptedReason(c), nil
			}
			return "", err
		}
	}
	return "", nil
}

// acceptedByCopy is acceptedFrom through pidfd_getfd. It sets p.noPidfd
// and returns an error if the kernel refuses it.
func (p *proc) acceptedByCopy() (string, error) {
	pidfd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		if gone(err) {
			return "", nil
		}
		p.noPidfd = true
		return "", err
	}
	defer unix.Close(pidfd)
	for i, c := range p.conns {
		if i == maxLookups {
			break
		}
		fd, err := unix.PidfdGetfd(pidfd, c.fd, 0)
		if errors.Is(err, unix.EBADF) || gone(err) {
			continue // closed meanwhile
		}
		if err != nil {
			p.noPidfd = true
			return "", err
		}
		ok := p.set.acceptedFrom(fd, &p.sa)
		unix.Close(fd)
		if ok {
			return p.acceptedReason(c), nil
		}
	}
	return "", nil
}

func (p *proc) acceptedReason(c sockFD) string {
	return fmt.Sprintf("pid %d holds a connection accepted from the sockets (fd %d, socket:[%d])", p.pid, c.fd, c.ino)
}

// loadAccepted fills p.accepted, once per Listening call, with the sorted
// inodes of the TCP connections accepted from the sockets.
func (p *proc) loadAccepted() error {
	if p.acceptedLoaded {
		return nil
	}
	p.acceptedLoaded = true
	p.accepted = p.accepted[:0]
	for i, id := range p.set.ids {
		if id.family != unix.AF_INET && id.family != unix.AF_INET6 || id.sockType != unix.SOCK_STREAM {
			continue
		}
		if slices.ContainsFunc(p.set.ids[:i], func(o socketID) bool {
			return o.family == id.family && o.port == id.port && o.sockType == unix.SOCK_STREAM
		}) {
			continue // dumped already
		}
		if err := p.dumpTCP(id); err != nil {
			return fmt.Errorf("list TCP connections on port %d: %w", id.port, err)
		}
	}
	slices.Sort(p.accepted)
	return nil
}

// diag returns the scratch's sock_diag socket, opening it on first use.
func (p *proc) diag() (int, error) {
	if p.diagFD >= 0 {
		return p.diagFD, nil
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return -1, fmt.Errorf("open sock_diag: %w", err)
	}
	p.diagFD = fd
	return fd, nil
}

// dumpTCP appends to p.accepted the inodes of the connected TCP sockets of
// the listener's family whose local port (and address, unless the
// listener's is the wildcard) is the listener's.
func (p *proc) dumpTCP(id socketID) error {
	fd, err := p.diag()
	if err != nil {
		return err
	}
	const bcLen = 16
	const size = sizeofNlMsghdr + sizeofInetDiagReq + 4 + bcLen
	req := p.msg[:size]
	clear(req)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], size)
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	r := req[sizeofNlMsghdr:]
	r[0], r[1] = byte(id.family), unix.IPPROTO_TCP
	ne.PutUint32(r[4:], connectedStates)
	a := r[sizeofInetDiagReq:]
	ne.PutUint16(a[0:], 4+bcLen)
	ne.PutUint16(a[2:], inetDiagReqByteOps)
	// sport >= port, else reject (jump past the end); then sport <= port,
	// else reject; the end accepts. The port follows each comparison.
	bc := a[4:]
	bc[0], bc[1] = inetDiagBcSGE, 8
	ne.PutUint16(bc[2:], 20)
	ne.PutUint16(bc[6:], id.port)
	bc[8], bc[9] = inetDiagBcSLE, 8
	ne.PutUint16(bc[10:], 12)
	ne.PutUint16(bc[14:], id.port)
	if _, err := unix.Write(fd, req); err != nil {
		return err
	}
	return p.readDiag(fd, func(m []byte) {
		if len(m) < sizeofInetDiagMsg {
			return
		}
		// inet_diag_msg: family, state, timer, retrans, then the socket's
		// id (sport, dport, src[16], dst[16], if, cookie), expires, rqueue,
		// wqueue, uid, inode.
		if !id.anyAddr && [16]byte(m[8:24]) != id.addr {
			return
		}
		if ino := ne.Uint32(m[68:]); ino != 0 {
			p.accepted = append(p.accepted, uint64(ino))
		}
	})
}

// unixAccepted reports whether the unix socket ino is a connection accepted
// from one of the sockets: connected, and named as a listener of the same
// type is. A socket that is not a unix socket is not.
func (p *proc) unixAccepted(ino uint64) (bool, error) {
	fd, err := p.diag()
	if err != nil {
		return false, err
	}
	const size = sizeofNlMsghdr + sizeofUnixDiagReq
	req := p.msg[:size]
	clear(req)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], size)
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST)
	r := req[sizeofNlMsghdr:]
	r[0] = unix.AF_UNIX
	ne.PutUint32(r[4:], ^uint32(0)) // every state
	ne.PutUint32(r[8:], uint32(ino))
	ne.PutUint32(r[12:], udiagShowName)
	ne.PutUint64(r[16:], ^uint64(0)) // INET_DIAG_NOCOOKIE
	if _, err := unix.Write(fd, req); err != nil {
		return false, err
	}
	found := false
	err = p.readDiag(fd, func(m []byte) {
		// unix_diag_msg: family, type, state, pad, inode, cookie; then
		// attributes.
		if len(m) < sizeofUnixDiagMsg || m[2] != tcpEstablished || uint64(ne.Uint32(m[4:])) != ino {
			return
		}
		name, ok := attr(m[sizeofUnixDiagMsg:], unixDiagName)
		found = ok && p.set.hasUnixName(int(m[1]), name)
	})
	if errors.Is(err, unix.ENOENT) {
		return false, nil // not a unix socket, or closed meanwhile
	}
	return found, err
}

// readDiag reads sock_diag's answer to one request and calls fn with the
// payload of each message, until the end of a dump or the one message of a
// lookup. An error message is returned as its errno.
func (p *proc) readDiag(fd int, fn func(m []byte)) error {
	ne := binary.NativeEndian
	for {
		n, err := unix.Read(fd, p.data)
		if err != nil {
			return err
		}
		b := p.data[:n]
		dump := false
		for len(b) >= sizeofNlMsghdr {
			l := int(ne.Uint32(b))
			typ := ne.Uint16(b[4:])
			flags := ne.Uint16(b[6:])
			if l < sizeofNlMsghdr || l > len(b) {
				return fmt.Errorf("sock_diag: malformed message")
			}
			switch typ {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if l >= sizeofNlMsghdr+4 {
					if e := int32(ne.Uint32(b[sizeofNlMsghdr:])); e != 0 {
						return unix.Errno(-e)
					}
				}
				return nil
			default:
				fn(b[sizeofNlMsghdr:l])
			}
			dump = dump || flags&unix.NLM_F_MULTI != 0
			b = b[(l+3)&^3:]
		}
		if !dump {
			return nil
		}
	}
}

// attr returns the payload of the netlink attribute of type typ in b.
func attr(b []byte, typ uint16) ([]byte, bool) {
	ne := binary.NativeEndian
	for len(b) >= 4 {
		l := int(ne.Uint16(b))
		if l < 4 || l > len(b) {
			return nil, false
		}
		if ne.Uint16(b[2:]) == typ {
			return b[4:l], true
		}
		b = b[min((l+3)&^3, len(b)):]
	}
	return nil, false
}
