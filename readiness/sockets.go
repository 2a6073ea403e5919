package readiness

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Sockets identifies the listening sockets to look for, by the inode of
// each. A socket's inode is the same in every process that holds it, so the
// inodes of corral's own copies identify the workers' copies. The zero
// Sockets holds none, and Listening reports false for it.
type Sockets struct {
	ids     []socketID
	streams bool // whether one of them is a listening stream or seqpacket socket
}

// socketID names a socket as /proc does: the inode number, and the device
// of the socket file system in the kernel's encoding (major<<20 | minor),
// which is how epoll's fdinfo prints it; with its local address, which a
// connection accepted from it shares.
type socketID struct {
	ino uint64
	dev uint64

	family   int      // unix.AF_INET, AF_INET6 or AF_UNIX; 0 if unknown
	sockType int      // unix.SOCK_STREAM, ...
	port     uint16   // TCP
	addr     [16]byte // TCP: the local address, as sock_diag gives it
	anyAddr  bool     // TCP: bound to the wildcard address
	name     string   // unix: the bound name as the kernel holds it
}

// SocketsOf returns the Sockets of files, which must all be sockets. It
// only stats them and reads their local addresses: the caller keeps owning
// files and may close them.
func SocketsOf(files []*os.File) (Sockets, error) {
	var s Sockets
	for _, f := range files {
		fi, err := f.Stat()
		if err != nil {
			return Sockets{}, fmt.Errorf("readiness: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || fi.Mode()&os.ModeSocket == 0 {
			return Sockets{}, fmt.Errorf("readiness: %s is not a socket", f.Name())
		}
		id := socketID{ino: st.Ino, dev: uint64(unix.Major(st.Dev))<<20 | uint64(unix.Minor(st.Dev))}
		if err := id.readAddr(f); err != nil {
			return Sockets{}, fmt.Errorf("readiness: %s: %w", f.Name(), err)
		}
		s.ids = append(s.ids, id)
		s.streams = s.streams || id.sockType != unix.SOCK_DGRAM
	}
	return s, nil
}

// readAddr fills in the socket's family, type and local address. It goes
// through SyscallConn, which, unlike Fd, leaves the socket's blocking mode
// alone: every worker shares it.
func (id *socketID) readAddr(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var sa unix.Sockaddr
	var serr error
	if err := rc.Control(func(fd uintptr) {
		if id.sockType, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE); serr != nil {
			return
		}
		sa, serr = unix.Getsockname(int(fd))
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("read the socket's address: %w", serr)
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		id.family, id.port = unix.AF_INET, uint16(a.Port)
		copy(id.addr[:], a.Addr[:])
		id.anyAddr = a.Addr == [4]byte{}
	case *unix.SockaddrInet6:
		id.family, id.port = unix.AF_INET6, uint16(a.Port)
		id.addr = a.Addr
		id.anyAddr = a.Addr == [16]byte{}
	case *unix.SockaddrUnix:
		id.family, id.name = unix.AF_UNIX, kernelName(a.Name)
	}
	return nil
}

// kernelName returns a unix socket name as sock_diag reports it: a path
// with its terminating NUL, or an abstract name, which x/sys/unix writes
// with a leading '@', with its leading NUL.
func kernelName(name string) string {
	if name != "" && name[0] == '@' {
		return "\x00" + name[1:]
	}
	if name == "" {
		return ""
	}
	return name + "\x00"
}

// has reports whether ino is one of the sockets' inodes.
func (s Sockets) has(ino uint64) bool {
	for _, id := range s.ids {
		if id.ino == ino {
			return true
		}
	}
	return false
}

// hasDev reports whether ino on device dev (kernel encoding) is one of the
// sockets.
func (s Sockets) hasDev(ino, dev uint64) bool {
	for _, id := range s.ids {
		if id.ino == ino && id.dev == dev {
			return true
		}
	}
	return false
}

// hasUnix reports whether one of the sockets is a named unix stream or
// seqpacket socket, which connections are accepted from.
func (s Sockets) hasUnix() bool {
	for _, id := range s.ids {
		if id.family == unix.AF_UNIX && id.name != "" && id.sockType != unix.SOCK_DGRAM {
			return true
		}
	}
	return false
}

// hasUnixName reports whether one of the sockets is a unix socket of type
// typ named name, as sock_diag reports names.
func (s Sockets) hasUnixName(typ int, name []byte) bool {
	for _, id := range s.ids {
		if id.family == unix.AF_UNIX && id.sockType == typ && id.name != "" && id.name == string(name) {
			return true
		}
	}
	return false
}

// acceptedFrom reports whether fd, a copy of a process' descriptor, is a
// connection accepted from one of the sockets: a stream or seqpacket
// socket that is not listening, whose type and local address are one of
// theirs. sa is scratch space for the address; nothing is allocated.
func (s Sockets) acceptedFrom(fd int, sa *unix.RawSockaddrAny) bool {
	l := uint32(unix.SizeofSockaddrAny)
	if _, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(sa)), uintptr(unsafe.Pointer(&l))); e != 0 {
		return false // not a socket
	}
	listening, ok := sockoptInt(fd, unix.SO_ACCEPTCONN)
	if !ok || listening != 0 {
		return false
	}
	typ, ok := sockoptInt(fd, unix.SO_TYPE)
	if !ok || typ == unix.SOCK_DGRAM {
		return false
	}
	for _, id := range s.ids {
		if id.sockType == int(typ) && id.matches(sa, l) {
			return true
		}
	}
	return false
}

// sockoptInt reads the SOL_SOCKET option opt of socket fd without
// allocating.
func sockoptInt(fd, opt int) (int32, bool) {
	var v int32
	l := uint32(4)
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, uintptr(opt),
		uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&l)), 0)
	return v, e == 0
}

// matches reports whether the local address sa, of length l, is the
// socket's own: the same port and address, any address for a listener on
// the wildcard one, or the same unix socket name.
func (id socketID) matches(sa *unix.RawSockaddrAny, l uint32) bool {
	switch int(sa.Addr.Family) {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return id.family == unix.AF_INET && ntohs(a.Port) == id.port && (id.anyAddr || [4]byte(id.addr[:4]) == a.Addr)
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		return id.family == unix.AF_INET6 && ntohs(a.Port) == id.port && (id.anyAddr || id.addr == a.Addr)
	case unix.AF_UNIX:
		a := (*unix.RawSockaddrUnix)(unsafe.Pointer(sa))
		n := int(l) - 2 // the name's length, past sun_family
		if id.family != unix.AF_UNIX || id.name == "" || n <= 0 || n > len(a.Path) || n != len(id.name) {
			return false
		}
		for i := range n {
			if byte(a.Path[i]) != id.name[i] {
				return false
			}
		}
		return true
	}
	return false
}

// ntohs converts a port from network byte order.
func ntohs(port uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&port))
	return uint16(b[0])<<8 | uint16(b[1])
}
