package httpworker

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
)

// listeners returns the process's inherited listening sockets and unsets
// LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES. It converts the fds itself
// rather than through activation.Listeners, which leaves a nil entry, and
// the fd open, for a socket it cannot use. With no inherited socket it
// listens on opts.FallbackAddr, or returns ErrNoListeners.
func listeners(opts Options) ([]net.Listener, error) {
	files := activation.Files(true)
	if len(files) == 0 {
		if opts.FallbackAddr == "" {
			return nil, ErrNoListeners
		}
		ln, err := net.Listen("tcp", opts.FallbackAddr)
		if err != nil {
			return nil, fmt.Errorf("listen on fallback address: %w", err)
		}
		opts.Logf("httpworker: no inherited sockets; listening on %v", ln.Addr())
		return []net.Listener{ln}, nil
	}
	lns := make([]net.Listener, 0, len(files))
	var errs []error
	for i, f := range files {
		ln, err := net.FileListener(f) // a dup of f, so f is closed either way
		f.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("inherited fd %d (%s): %w", 3+i, f.Name(), err))
			continue
		}
		lns = append(lns, ln)
	}
	if len(errs) > 0 {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, errors.Join(errs...)
	}
	return lns, nil
}

// notify sends state to the datagram socket addr, as sd_notify(3) does to
// NOTIFY_SOCKET. An empty addr means nobody listens, and is not an error.
// (daemon.SdNotify reads NOTIFY_SOCKET on every call, so it cannot send
// STOPPING=1 once Serve has unset the variable.)
func notify(addr, state string) error {
	if addr == "" {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify %s: %w", state, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify %s: %w", state, err)
	}
	return nil
}

// wakeAccept connects to addr and hangs up, so that an accept(2) blocked in
// the kernel on that socket returns. Go expects its listeners never to
// block, but O_NONBLOCK belongs to the open file description, which every
// worker shares, and another process may clear it: corral does each time
// it starts a worker (os/exec calls File.Fd on ExtraFiles). An accept that
// began then blocks until a connection comes, and holds up Listener.Close.
// The connection may go to another worker instead, which sees a client that
// sends nothing and hangs up.
func wakeAccept(addr net.Addr) {
	network, address := addr.Network(), addr.String()
	if a, ok := addr.(*net.TCPAddr); ok && a.IP.IsUnspecified() {
		ip := net.IPv6loopback
		if a.IP.To4() != nil {
			ip = net.IPv4(127, 0, 0, 1)
		}
		address = net.JoinHostPort(ip.String(), strconv.Itoa(a.Port))
	}
	if c, err := net.DialTimeout(network, address, time.Second); err == nil {
		c.Close()
	}
}
