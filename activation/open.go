package activation

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Socket is one socket to hand to workers. File is owned by the
// caller of Inherited or Open; close it with Close.
type Socket struct {
	// Name is the LISTEN_FDNAMES entry: systemd's FileDescriptorName= or
	// socket unit name, NAME from --listen NAME=ADDR, or "unknown" when none
	// was given (systemd's own convention).
	Name string
	// Addr is human-readable, for logs, in the form of --listen:
	// "127.0.0.1:8080", "[::1]:8080", "udp:127.0.0.1:5353",
	// "unix:/run/x.sock", "unixgram:/run/x.sock", "unixpacket:/run/x.sock".
	Addr string
	// File is the socket (listening, for the stream kinds), in blocking
	// mode when Open made it.
	File *os.File

	// created is the unix socket file Open bound, which Close removes;
	// nil for TCP and inherited sockets.
	created *createdPath
}

// Network returns the kind of socket, as --listen names it: "tcp", "udp",
// "unix", "unixgram", "unixpacket", or "vsock", read from Addr.
func (s Socket) Network() string {
	if strings.HasPrefix(s.Addr, "vsock:") {
		return "vsock"
	}
	network, _ := splitNetwork(s.Addr)
	return network
}

// createdPath remembers a socket file and its identity, so Close removes
// only the file Open created and not one that replaced it since.
type createdPath struct {
	path string
	info fs.FileInfo
}

// unknownName is the name systemd gives a socket that has none.
const unknownName = "unknown"

// staleDialTimeout bounds the probe of an existing unix socket file.
const staleDialTimeout = time.Second

// OpenOptions are the settings of the sockets Open creates. The zero value
// is the kernel's defaults.
type OpenOptions struct {
	// ReceiveBuffer, if positive, is the receive buffer of each UDP socket
	// in bytes (SO_RCVBUF, as systemd's ReceiveBuffer= sets it): the
	// datagrams that may wait for a worker to read them. The kernel caps
	// it at net.core.rmem_max unless corral may exceed that
	// (CAP_NET_ADMIN, SO_RCVBUFFORCE); Socket.ReceiveBuffer tells what
	// was set.
	ReceiveBuffer int
}

// Open binds each spec, in order, listens on the stream ones, and returns
// one Socket per spec with Name (or "unknown"), Addr from the bound address
// (so port 0 shows the port the kernel chose) and File, a descriptor in
// blocking mode.
//
// Sockets are opened with Go's net package (ListenConfig), without
// SO_REUSEPORT or SO_REUSEADDR for UDP, so a port another process holds is
// refused. A unix socket file that already exists is removed first when it
// is a socket nobody has bound (left behind by a process that died); Open
// fails when a live socket is there, or when the file is not a socket.
//
// On any failure Open closes every socket it opened, removes the unix socket
// files it created, and returns an error naming the address and, where it
// can, the fix: an address in use (errors.Is syscall.EADDRINUSE), a
// privileged port (syscall.EACCES), an unknown host (*net.DNSError), a
// missing directory or an address no interface has.
func Open(specs []ListenSpec, opts OpenOptions) ([]Socket, error) {
	socks := make([]Socket, 0, len(specs))
	for _, spec := range specs {
		s, err := open(spec, opts)
		if err != nil {
			_ = Close(socks) // the listen error is the one worth reporting
			return nil, err
		}
		socks = append(socks, s)
	}
	return socks, nil
}

// open binds one spec and returns its Socket.
func open(spec ListenSpec, opts OpenOptions) (Socket, error) {
	if spec.isUnix() {
		if err := removeStale(spec); err != nil {
			return Socket{}, err
		}
	}
	c, err := bind(spec)
	if err != nil {
		return Socket{}, listenError(spec, err)
	}
	s, err := detach(c, spec)
	if err == nil && spec.Network == "udp" && opts.ReceiveBuffer > 0 {
		if err = s.setReceiveBuffer(opts.ReceiveBuffer); err != nil {
			Close([]Socket{s})
		}
	}
	if err != nil {
		return Socket{}, fmt.Errorf("listen %s: %w", spec.display(), err)
	}
	return s, nil
}

// fileSocket is what bind returns: a net.Listener or net.PacketConn whose
// descriptor File duplicates.
type fileSocket interface {
	File() (*os.File, error)
	Close() error
}

// bind creates the socket of spec with Go's net package: bound, and
// listening for the stream networks.
func bind(spec ListenSpec) (fileSocket, error) {
	var lc net.ListenConfig
	ctx := context.Background()
	switch spec.Network {
	case "tcp", "unix", "unixpacket":
		ln, err := lc.Listen(ctx, spec.Network, spec.Address)
		if err != nil {
			return nil, err
		}
		return ln.(fileSocket), nil
	case "udp", "unixgram":
		c, err := lc.ListenPacket(ctx, spec.Network, spec.Address)
		if err != nil {
			return nil, err
		}
		return c.(fileSocket), nil
	}
	return nil, fmt.Errorf("network %q is not tcp, udp, unix, unixgram or unixpacket", spec.Network)
}

// detach turns c into a Socket holding a blocking duplicate of its
// descriptor, and closes c; on success a unix socket file stays in place.
func detach(c fileSocket, spec ListenSpec) (Socket, error) {
	defer c.Close()
	s := Socket{Name: spec.Name}
	if s.Name == "" {
		s.Name = unknownName
	}
	f, err := c.File()
	if err != nil {
		return Socket{}, err
	}
	if err = setBlocking(f); err == nil {
		f, err = stableFile(f)
	}
	s.File = f
	if err == nil {
		s.Addr, err = fileAddr(f)
	}
	if spec.isUnix() && err == nil {
		var info fs.FileInfo
		if info, err = os.Lstat(spec.Address); err == nil {
			if ul, ok := c.(*net.UnixListener); ok {
				ul.SetUnlinkOnClose(false)
			}
			s.created = &createdPath{path: spec.Address, info: info}
		}
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		return Socket{}, err
	}
	return s, nil
}

// setReceiveBuffer sets the socket's receive buffer to n bytes.
func (s Socket) setReceiveBuffer(n int) error {
	var serr error
	if err := withFd(s.File, func(fd int) { serr = setReceiveBuffer(fd, n) }); err != nil {
		return err
	}
	return serr
}

// setReceiveBuffer sets the receive buffer of socket fd to n bytes, past
// net.core.rmem_max where the kernel lets corral (SO_RCVBUFFORCE, with
// CAP_NET_ADMIN), as systemd does for ReceiveBuffer=. A buffer capped by
// rmem_max is no error: ReceiveBuffer shows it.
func setReceiveBuffer(fd, n int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n); err != nil {
		return fmt.Errorf("set the receive buffer (SO_RCVBUF) to %d bytes: %w", n, err)
	}
	if got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF); err == nil && got >= 2*n {
		return nil // the kernel reports twice the size: its bookkeeping counts
	}
	err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	if err != nil && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("set the receive buffer (SO_RCVBUFFORCE) to %d bytes: %w", n, err)
	}
	return nil
}

// ReceiveBuffer returns the socket's receive buffer as the kernel reports
// it (SO_RCVBUF): twice the bytes asked for, since the kernel counts its
// bookkeeping in it, or less when net.core.rmem_max capped the request.
func (s Socket) ReceiveBuffer() (int, error) {
	var n int
	var gerr error
	err := withFd(s.File, func(fd int) { n, gerr = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF) })
	if err = errors.Join(err, gerr); err != nil {
		return 0, fmt.Errorf("receive buffer of %s: %w", s.Addr, err)
	}
	return n, nil
}

// setBlocking clears O_NONBLOCK on f's open file description.
func setBlocking(f *os.File) error {
	if err := unix.SetNonblock(int(f.Fd()), false); err != nil {
		return fmt.Errorf("set blocking mode: %w", err)
	}
	return nil
}

// removeStale removes a unix socket file nobody listens on or has bound,
// found by connecting to it with spec's network.
func removeStale(spec ListenSpec) error {
	info, err := os.Lstat(spec.Address)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listen %s: %w", spec.display(), err)
	}
	if info.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("listen %s: %s exists and is not a socket: remove it or choose another path", spec.display(), spec.Address)
	}
	conn, err := net.DialTimeout(spec.Network, spec.Address, staleDialTimeout)
	if err == nil || errors.Is(err, syscall.EPROTOTYPE) { // a live socket of another type
		if conn != nil {
			conn.Close()
		}
		return inUseError(spec)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("listen %s: probe existing socket: %w", spec.display(), err)
	}
	if err := os.Remove(spec.Address); err != nil {
		return fmt.Errorf("listen %s: remove stale socket: %w", spec.display(), err)
	}
	return nil
}

// Close closes every socket's File, and removes the socket file of each unix
// socket that Open created (never of inherited ones: systemd owns those). It
// returns the errors of every close and removal that failed, joined, or nil;
// a socket file already gone or replaced by another file is not an error.
func Close(socks []Socket) error {
	var errs []error
	for _, s := range socks {
		if s.File != nil {
			if err := s.File.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close %s (%s): %w", s.Name, s.Addr, err))
			}
		}
		if err := s.created.remove(); err != nil {
			errs = append(errs, fmt.Errorf("close %s (%s): %w", s.Name, s.Addr, err))
		}
	}
	return errors.Join(errs...)
}

// remove deletes the socket file if it is still the one Open created.
func (c *createdPath) remove() error {
	if c == nil {
		return nil
	}
	info, err := os.Lstat(c.path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && !os.SameFile(info, c.info)) {
		return nil
	}
	if err == nil {
		err = os.Remove(c.path)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove socket file: %w", err)
	}
	return nil
}

// listenError explains a failed listen on spec and how to fix it.
func listenError(spec ListenSpec, err error) error {
	addr := spec.display()
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return inUseError(spec)
	case errors.Is(err, syscall.EACCES) && spec.isUnix():
		return fmt.Errorf("listen %s: %w: cannot create a socket in %s (check the directory's owner and mode)", addr, syscall.EACCES, filepath.Dir(spec.Address))
	case errors.Is(err, syscall.EACCES) && privilegedPort(spec.Address):
		return fmt.Errorf("listen %s: %w: ports below 1024 need root or CAP_NET_BIND_SERVICE (AmbientCapabilities=CAP_NET_BIND_SERVICE in the unit), or let systemd open the socket", addr, syscall.EACCES)
	case errors.Is(err, syscall.ENOENT) && spec.isUnix():
		return fmt.Errorf("listen %s: %w: create directory %s first (or use RuntimeDirectory= in the unit)", addr, syscall.ENOENT, filepath.Dir(spec.Address))
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("listen %s: %w: no local interface has that address", addr, syscall.EADDRNOTAVAIL)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("listen %s: unknown host: %w; check the name or use an IP address", addr, dnsErr)
	}
	return fmt.Errorf("listen %s: %w", addr, err)
}

// inUseError is the error for an address another process listens on, or
// has bound.
func inUseError(spec ListenSpec) error {
	find := "ss -lxp 'src " + spec.Address + "'"
	if !spec.isUnix() {
		_, port, _ := net.SplitHostPort(spec.Address)
		find = "ss -l" + map[string]string{"tcp": "t", "udp": "u"}[spec.Network] + "np 'sport = :" + port + "'"
	}
	what := "listening"
	if spec.isDatagram() {
		what = "bound"
	}
	return fmt.Errorf("listen %s: %w: another process is %s there (find it with: %s)", spec.display(), syscall.EADDRINUSE, what, find)
}

// privilegedPort reports whether the TCP or UDP address has a port from 1
// to 1023.
func privilegedPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n > 0 && n < 1024
}
