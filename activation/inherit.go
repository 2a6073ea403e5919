package activation

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	sdactivation "github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// Inherited returns the sockets systemd passed to this process, in the
// order systemd passed them (fds 3, 4, ...), named from LISTEN_FDNAMES
// ("unknown" where a name is missing), with Addr read from the socket
// itself. The caller owns the Files; they are close-on-exec and keep the
// blocking mode systemd gave them. Inherited unsets LISTEN_PID, LISTEN_FDS
// and LISTEN_FDNAMES in every case, so call it once.
//
// It takes what a socket unit with Accept=no passes for ListenStream=
// (listening TCP, unix and vsock stream sockets), ListenDatagram= (UDP and
// unix datagram sockets) and ListenSequentialPacket= (listening unix
// SOCK_SEQPACKET sockets).
//
// It returns nil, nil when this process was not socket-activated: no
// LISTEN_FDS, or LISTEN_PID naming another process. It returns an error,
// having closed every passed descriptor, when one of them cannot go to
// workers. When that is a kind of descriptor corral refuses, the error is a
// *KindError, which names the socket unit's setting: a connection (a unit
// with Accept=yes), a FIFO (ListenFIFO=), a special file (ListenSpecial=),
// a netlink socket (ListenNetlink=), a POSIX message queue
// (ListenMessageQueue=) or a USB FunctionFS endpoint (ListenUSBFunction=).
func Inherited() ([]Socket, error) {
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	files := sdactivation.Files(true)
	if len(files) == 0 {
		return nil, nil
	}
	socks := make([]Socket, len(files))
	var err error
	for i, f := range files {
		socks[i] = Socket{Name: unknownName, File: f}
		if i < len(names) && names[i] != "" {
			socks[i].Name = names[i]
		}
		if err == nil {
			if err = socks[i].inherit(); err != nil {
				err = inheritedError(3+i, socks[i].Name, err)
			}
		}
	}
	if err != nil {
		_ = Close(socks) // the check's error is the one worth reporting
		return nil, err
	}
	return socks, nil
}

// inherit checks the descriptor systemd passed in s.File, reads its
// address, and puts a stableFile of it in its place.
func (s *Socket) inherit() error {
	var addr string
	var check error
	err := withFd(s.File, func(fd int) {
		if check = checkKind(fd); check == nil {
			addr, check = fdAddr(fd)
		}
	})
	if err = errors.Join(err, check); err != nil {
		return err
	}
	f, err := stableFile(s.File)
	if err != nil {
		s.File = nil // stableFile closed it
		return err
	}
	s.File, s.Addr = f, addr
	return nil
}

// inheritedError names descriptor fd and its name in err.
func inheritedError(fd int, name string, err error) error {
	var k *KindError
	if errors.As(err, &k) {
		k.Fd, k.Name = fd, name
		return k
	}
	return fmt.Errorf("inherited socket fd %d (%s): %w", fd, name, err)
}

// KindError is Inherited's error for a descriptor of a kind corral does not
// hand to workers: the socket unit is wrong, which is a configuration
// error, not a failure at run time.
type KindError struct {
	Fd      int    // the descriptor, 3 or more
	Name    string // its LISTEN_FDNAMES entry
	What    string // what it is: "a FIFO", "a connection", ...
	Setting string // the socket unit's setting that passes it: "ListenFIFO=", "Accept=yes", ...
	Fix     string // what to do instead
}

func (e *KindError) Error() string {
	return fmt.Sprintf("inherited fd %d (%s) is %s (%s in the socket unit): %s", e.Fd, e.Name, e.What, e.Setting, e.Fix)
}

// socketsOnly is the fix for a descriptor that is no socket to serve on.
const socketsOnly = "corral hands its workers sockets to serve on: use ListenStream=, ListenDatagram= or ListenSequentialPacket= instead"

// Magic numbers of the file systems of two kinds of descriptor a socket
// unit passes (statfs(2), linux/magic.h).
const (
	mqueueMagic     = 0x19800202 // MQUEUE_MAGIC: ListenMessageQueue=
	functionfsMagic = 0xa647361  // FUNCTIONFS_MAGIC: ListenUSBFunction=
)

// fdFacts are what checkKind learns of a descriptor.
type fdFacts struct {
	mode      uint32 // st_mode's file type bits
	fsType    int64  // statfs(2)'s f_type, for what is not a socket or FIFO
	domain    int    // SO_DOMAIN of a socket
	sockType  int    // SO_TYPE of a socket
	listening bool   // SO_ACCEPTCONN of a socket
}

// checkKind reports why fd is not a socket corral hands to workers, or nil.
func checkKind(fd int) error {
	var f fdFacts
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("fstat: %w", err)
	}
	f.mode = st.Mode & unix.S_IFMT
	switch f.mode {
	case unix.S_IFSOCK:
		var err error
		if f.domain, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil {
			return fmt.Errorf("get SO_DOMAIN: %w", err)
		}
		if f.sockType, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil {
			return fmt.Errorf("get SO_TYPE: %w", err)
		}
		acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		if err != nil {
			return fmt.Errorf("get SO_ACCEPTCONN: %w", err)
		}
		f.listening = acc == 1
	case unix.S_IFIFO:
	default:
		var sfs unix.Statfs_t
		if err := unix.Fstatfs(fd, &sfs); err != nil {
			return fmt.Errorf("fstatfs: %w", err)
		}
		f.fsType = int64(sfs.Type)
	}
	return f.check()
}

// check is checkKind's rule: a listening stream or seqpacket socket, or a
// datagram socket, of any family but netlink.
func (f fdFacts) check() error {
	kind := func(what, setting, fix string) error {
		return &KindError{What: what, Setting: setting, Fix: fix}
	}
	switch {
	case f.mode == unix.S_IFIFO:
		return kind("a FIFO", "ListenFIFO=", socketsOnly)
	case f.mode != unix.S_IFSOCK && f.fsType == mqueueMagic:
		return kind("a POSIX message queue", "ListenMessageQueue=", socketsOnly)
	case f.mode != unix.S_IFSOCK && f.fsType == functionfsMagic:
		return kind("a USB FunctionFS endpoint", "ListenUSBFunction=", socketsOnly)
	case f.mode != unix.S_IFSOCK:
		return kind("a special file, not a socket", "ListenSpecial=", socketsOnly)
	case f.domain == unix.AF_NETLINK:
		return kind("a netlink socket", "ListenNetlink=", socketsOnly)
	case f.sockType == unix.SOCK_DGRAM:
		return nil
	case (f.sockType == unix.SOCK_STREAM || f.sockType == unix.SOCK_SEQPACKET) && f.listening:
		return nil
	case f.sockType == unix.SOCK_STREAM || f.sockType == unix.SOCK_SEQPACKET:
		return kind("a connection, not a listening socket", "Accept=yes",
			"with Accept=yes systemd accepts each connection and starts a service for it; corral's workers accept the connections themselves: set Accept=no (the default)")
	}
	return fmt.Errorf("a socket of type %d, which corral does not hand to workers: use ListenStream=, ListenDatagram= or ListenSequentialPacket= in the socket unit", f.sockType)
}

// fileAddr returns the human-readable address of the socket f holds.
func fileAddr(f *os.File) (string, error) {
	var addr string
	var nameErr error
	err := withFd(f, func(fd int) { addr, nameErr = fdAddr(fd) })
	return addr, errors.Join(err, nameErr)
}

// withFd runs fn with f's descriptor without changing its blocking mode,
// which f.Fd would.
func withFd(f *os.File, fn func(fd int)) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { fn(int(fd)) })
}

// fdAddr returns the human-readable local address of socket fd, in the
// form of --listen (see addrString).
func fdAddr(fd int) (string, error) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return "", fmt.Errorf("get SO_TYPE: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", fmt.Errorf("getsockname: %w", err)
	}
	return addrString(typ, sa), nil
}

// addrString formats the address sa of a socket of type typ as --listen
// reads it: sockaddrString's form, with "udp:" before an IP datagram
// socket's, and "unixgram:" or "unixpacket:" instead of "unix:" for unix
// datagram and seqpacket sockets.
func addrString(typ int, sa unix.Sockaddr) string {
	s := sockaddrString(sa)
	switch sa.(type) {
	case *unix.SockaddrInet4, *unix.SockaddrInet6:
		if typ == unix.SOCK_DGRAM {
			return "udp:" + s
		}
	case *unix.SockaddrUnix:
		switch typ {
		case unix.SOCK_DGRAM:
			return "unixgram:" + strings.TrimPrefix(s, "unix:")
		case unix.SOCK_SEQPACKET:
			return "unixpacket:" + strings.TrimPrefix(s, "unix:")
		}
	}
	return s
}

// sockaddrString formats sa as "127.0.0.1:8080", "[::1]:8080",
// "unix:/run/x.sock" (abstract sockets "unix:@name") or "vsock:CID:PORT".
func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		ip := netip.AddrFrom16(a.Addr)
		if a.ZoneId != 0 {
			ip = ip.WithZone(zoneName(a.ZoneId))
		}
		return netip.AddrPortFrom(ip, uint16(a.Port)).String()
	case *unix.SockaddrUnix:
		if a.Name == "" {
			return "unix:(unnamed)"
		}
		return "unix:" + a.Name
	case *unix.SockaddrVM:
		return fmt.Sprintf("vsock:%d:%d", a.CID, a.Port)
	}
	return fmt.Sprintf("%T", sa)
}

// zoneName returns the interface name for an IPv6 zone index, or the index.
func zoneName(index uint32) string {
	if ifi, err := net.InterfaceByIndex(int(index)); err == nil {
		return ifi.Name
	}
	return strconv.FormatUint(uint64(index), 10)
}
