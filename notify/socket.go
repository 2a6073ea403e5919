package notify

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Socket is corral's notify socket: AF_UNIX, SOCK_DGRAM, bound to a path on
// the file system (never the abstract namespace), mode 0600, with SO_PASSCRED
// set so that every datagram carries the sender's credentials.
type Socket struct {
	path    string
	info    fs.FileInfo // the socket file as bound; Close unlinks only this file
	conn    *net.UnixConn
	raw     syscall.RawConn
	dropped atomic.Uint64
	log     dropLog
	once    sync.Once
}

// Listen creates the notify socket at path, made absolute first because
// workers may run in another directory and libsystemd's sd_notify accepts
// only absolute paths. A socket file already at path is removed first if it
// is stale, that is if nothing is bound to it any more. The socket file has
// mode 0600: processes running as corral's user (or root) can send to it.
//
// Listen returns one of:
//   - (s, nil): the socket is bound; the caller must Close it.
//   - (nil, err): path is empty, abstract ("@..."), or too long for a socket
//     address; path exists and is not a socket, or is a socket some process
//     is still bound to; or the socket could not be created or bound.
func Listen(path string) (*Socket, error) {
	abs, err := socketPath(path)
	if err != nil {
		return nil, fmt.Errorf("listen notify socket %q: %w", path, err)
	}
	if err := removeStale(abs); err != nil {
		return nil, fmt.Errorf("listen notify socket %s: %w", abs, err)
	}
	s, err := bind(abs)
	if err != nil {
		return nil, fmt.Errorf("listen notify socket %s: %w", abs, err)
	}
	return s, nil
}

// socketPath returns path made absolute, or an error if it cannot name a
// socket file.
func socketPath(path string) (string, error) {
	if path == "" || path[0] == '@' {
		return "", errors.New("need a file system path, not an empty or abstract name")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if limit := len(unix.RawSockaddrUnix{}.Path) - 1; len(abs) > limit {
		return "", fmt.Errorf("absolute path is %d bytes, a socket address holds at most %d", len(abs), limit)
	}
	return abs, nil
}

// removeStale removes a socket file at path that nothing is bound to. It
// returns nil if path does not exist or was removed, and an error if path is
// not a socket or is a socket still in use.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("path exists and is not a socket (mode %v); refusing to replace it", fi.Mode())
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err == nil {
		c.Close()
		return errors.New("socket is in use by another process")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("probe existing socket: %w", err)
	}
	return os.Remove(path)
}

// bind creates the socket at path, which must not exist.
func bind(path string) (*Socket, error) {
	lc := net.ListenConfig{Control: setSocketOptions}
	pc, err := lc.ListenPacket(context.Background(), "unixgram", path)
	if err != nil {
		return nil, err
	}
	s := &Socket{path: path, conn: pc.(*net.UnixConn)}
	s.log.now = time.Now
	s.raw, err = s.conn.SyscallConn()
	if err == nil {
		s.info, err = os.Lstat(path)
	}
	if err != nil {
		s.conn.Close()
		os.Remove(path)
		return nil, err
	}
	return s, nil
}

// setSocketOptions runs between socket(2) and bind(2). Linux creates the
// socket file with the mode of the socket's inode less the umask, so the
// fchmod here makes the file 0600 from its first moment.
func setSocketOptions(_, _ string, c syscall.RawConn) error {
	var err error
	cerr := c.Control(func(fd uintptr) {
		if err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
			err = fmt.Errorf("set SO_PASSCRED: %w", err)
			return
		}
		if err = unix.Fchmod(int(fd), 0o600); err != nil {
			err = fmt.Errorf("fchmod socket: %w", err)
		}
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// Path returns the absolute path the socket is bound to, the value to put
// in a worker's NOTIFY_SOCKET.
func (s *Socket) Path() string { return s.path }

// SetLogf sets the function through which dropped datagrams are reported,
// at most one line per second, each naming the reason and the sender's PID
// when known; they are warnings, and logf adds whatever priority prefix
// its output needs. A nil logf, the default, turns reporting off.
// SetLogf may be called at any time, from any goroutine.
func (s *Socket) SetLogf(logf func(format string, args ...any)) {
	s.log.setLogf(logf)
}

// Dropped returns how many datagrams have been dropped as invalid: no
// credentials, too long or truncated, a NUL byte, not UTF-8, malformed, or
// carrying file descriptors. It is safe to call from any goroutine.
func (s *Socket) Dropped() uint64 { return s.dropped.Load() }

// Serve reads datagrams and sends each valid one, as a Message, on ch. The
// send blocks until ch accepts it or ctx is done. Invalid datagrams are
// counted (see Dropped), logged (see SetLogf) and skipped. Serve must not be
// called by two goroutines at once; it does not close ch.
//
// Serve returns one of:
//   - nil: ctx is done, or Close was called.
//   - err: reading from the socket failed for another reason.
func (s *Socket) Serve(ctx context.Context, ch chan<- Message) error {
	if err := s.conn.SetReadDeadline(time.Time{}); err != nil {
		return s.serveErr(ctx, err)
	}
	defer s.interruptOnDone(ctx)()
	r := newReader(s)
	for {
		m, err := r.next()
		if err != nil {
			return s.serveErr(ctx, err)
		}
		select {
		case ch <- m:
		case <-ctx.Done():
			return nil
		}
	}
}

// interruptOnDone makes a pending read fail as soon as ctx is done, by
// moving the read deadline into the past. Once the function it returns has
// returned, that can no longer happen, so a later Serve starts clean.
func (s *Socket) interruptOnDone(ctx context.Context) (stop func()) {
	woken := make(chan struct{})
	stopAfter := context.AfterFunc(ctx, func() {
		defer close(woken)
		s.conn.SetReadDeadline(time.Unix(1, 0))
	})
	return func() {
		if !stopAfter() {
			<-woken
		}
	}
}

// serveErr turns a read error into Serve's result: nil when the error was
// caused by ctx being done or by Close.
func (s *Socket) serveErr(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("serve notify socket %s: %w", s.path, err)
}

// Close closes the socket, which makes Serve return nil, and removes the
// socket file unless another socket has since replaced it. Only the first
// call does anything; later calls return nil.
func (s *Socket) Close() error {
	var err error
	s.once.Do(func() {
		err = errors.Join(s.conn.Close(), s.unlink())
		if err != nil {
			err = fmt.Errorf("close notify socket %s: %w", s.path, err)
		}
	})
	return err
}

// unlink removes the socket file if it is still the one bind created.
func (s *Socket) unlink() error {
	fi, err := os.Lstat(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !os.SameFile(fi, s.info) {
		return nil
	}
	return os.Remove(s.path)
}
