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

// Inherited returns the listening sockets systemd passed to this process,
// in the order systemd passed them (fds 3, 4, ...), named from
// LISTEN_FDNAMES ("unknown" where a name is missing), with Addr read from
// the socket itself. The caller owns the Files; they are close-on-exec and
// keep the blocking mode systemd gave them. Inherited unsets LISTEN_PID,
// LISTEN_FDS and LISTEN_FDNAMES in every case, so call it once.
//
// It returns nil, nil when this process was not socket-activated: no
// LISTEN_FDS, or LISTEN_PID naming another process. It returns an error,
// having closed every passed descriptor, when one of them is not a
// listening socket: a FIFO or special file, a datagram socket
// (ListenDatagram=), or a connected socket (a unit with Accept=yes).
// Listening SOCK_SEQPACKET sockets are accepted like stream sockets.
func Inherited() ([]Socket, error) {
	names := strings.Split(os.Getenv("LISTEN_FDNAMES"), ":")
	files := sdactivation.Files(true)
	if len(files) == 0 {
		return nil, nil
	}
	socks := make([]Socket, len(files))
	var err error
	for i, f := range files {
		if err == nil {
			if sf, serr := stableFile(f); serr != nil {
				err = fmt.Errorf("inherited socket fd %d: %w", 3+i, serr)
			} else {
				f = sf
			}
		}
		socks[i] = Socket{Name: unknownName, File: f}
		if i < len(names) && names[i] != "" {
			socks[i].Name = names[i]
		}
		if err == nil {
			socks[i].Addr, err = inheritedAddr(f)
			if err != nil {
				err = fmt.Errorf("inherited socket fd %d (%s): %w", 3+i, socks[i].Name, err)
			}
		}
	}
	if err != nil {
		_ = Close(socks) // the check's error is the one worth reporting
		return nil, err
	}
	return socks, nil
}

// inheritedAddr checks that f is a listening socket and returns its address.
func inheritedAddr(f *os.File) (string, error) {
	var addr string
	var check error
	err := withFd(f, func(fd int) {
		if check = checkListening(fd); check == nil {
			addr, check = fdAddr(fd)
		}
	})
	return addr, errors.Join(err, check)
}

// checkListening reports why fd is not a listening socket, or nil.
func checkListening(fd int) error {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if errors.Is(err, unix.ENOTSOCK) {
		return errors.New("not a socket: corral hands out listening sockets only (use ListenStream= in the socket unit, not ListenFIFO= or ListenSpecial=)")
	}
	if err != nil {
		return fmt.Errorf("get socket type: %w", err)
	}
	listening, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	switch {
	case err != nil:
		return fmt.Errorf("get SO_ACCEPTCONN: %w", err)
	case listening == 1:
		return nil
	case typ == unix.SOCK_DGRAM:
		return errors.New("a datagram socket: corral hands out listening stream sockets only (use ListenStream= in the socket unit, not ListenDatagram=)")
	case typ == unix.SOCK_STREAM || typ == unix.SOCK_SEQPACKET:
		return errors.New("a connected socket, not a listening one: set Accept=no in the socket unit, so systemd passes the listening socket to corral")
	}
	return fmt.Errorf("socket of type %d is not listening: use ListenStream= in the socket unit", typ)
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

// fdAddr returns the human-readable local address of socket fd.
func fdAddr(fd int) (string, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", fmt.Errorf("getsockname: %w", err)
	}
	return sockaddrString(sa), nil
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
