// Package control is corral's control socket: a unix stream socket, mode
// 0600, on which the user who runs corral (or root) asks for a reload or a
// status. One request a connection: the client writes one line, "reload" or
// "status", and reads one line of JSON back. A reload's answer comes when
// the reload has ended, so `corral reload` can be systemd's ExecReload= and
// make `systemctl reload` fail when the reload failed.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/corraldev/corral/workers"
	"golang.org/x/sys/unix"
)

// maxRequest bounds a request line; requests are single words.
const maxRequest = 256

// Handler does what a request asks. *workers.Pool is one.
type Handler interface {
	Reload(ctx context.Context) workers.ReloadResult
	Status(ctx context.Context) (workers.Status, error)
}

// Server is a listening control socket. Close it to stop Serve.
type Server struct {
	ln   *net.UnixListener
	path string
	logf func(format string, args ...any)
}

// reply is the JSON line the server sends. Exactly one field is set.
type reply struct {
	Reload *workers.ReloadResult `json:"reload,omitempty"`
	Status *workers.Status       `json:"status,omitempty"`
	Error  string                `json:"error,omitempty"`
}

// ErrRunning means another corral serves the control socket at the path.
var ErrRunning = errors.New("another corral is running with this control socket")

// Listen creates the control socket at path, mode 0600 from its first
// moment (set on the socket before bind; the process's umask is left
// alone). A socket file that refuses connections, left by a corral that
// died, is removed first.
//
// Listen returns one of:
//   - (s, nil): the socket listens; the caller must Close it.
//   - (nil, err) with errors.Is(err, ErrRunning): a process accepts
//     connections at path, or one listens there with its queue full.
//   - (nil, err): path exists and is not a socket (it is left alone), the
//     existing socket could not be probed or removed, or the socket could
//     not be created.
func Listen(path string, logf func(format string, args ...any)) (*Server, error) {
	if err := removeStale(path); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	lc := net.ListenConfig{Control: socketMode}
	l, err := lc.Listen(context.Background(), "unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln := l.(*net.UnixListener)
	ln.SetUnlinkOnClose(true)
	return &Server{ln: ln, path: path, logf: logf}, nil
}

// removeStale removes the socket file at path if nothing listens on it. It
// returns nil if path does not exist or was removed, and an error if path is
// not a socket, or is a socket some process listens on (ErrRunning), or
// the probe failed in another way than ECONNREFUSED.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("exists and is not a socket (mode %v), so corral leaves it alone: remove it, or give another --control", fi.Mode())
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("%w (give this one another --name, or stop the other)", ErrRunning)
	case errors.Is(err, syscall.EAGAIN):
		return fmt.Errorf("%w: it listens, with its connection queue full (give this one another --name, or stop the other)", ErrRunning)
	case !errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("probe existing socket: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// socketMode runs between socket(2) and bind(2). Linux creates the socket
// file with the mode of the socket's inode less the umask, so the fchmod
// here makes the file 0600 without touching the process-wide umask.
func socketMode(_, _ string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) { err = unix.Fchmod(int(fd), 0o600) }); cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("fchmod socket: %w", err)
	}
	return nil
}

// Path returns where the socket is.
func (s *Server) Path() string { return s.path }

// Close stops Serve and removes the socket file.
func (s *Server) Close() error { return s.ln.Close() }

// Serve answers requests until the server is closed or ctx is done; each
// connection is served on its own goroutine, which ends with the request.
// An accept that fails (with EMFILE, when clients hold every descriptor
// the open file limit allows) is retried after a pause that doubles from
// 5 ms to 1 s, as net/http's Server does, and logged once a run of
// failures. It returns nil after Close or when ctx is done.
func (s *Server) Serve(ctx context.Context, h Handler) error {
	var pause time.Duration
	for {
		c, err := s.ln.AcceptUnix()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			if pause == 0 {
				s.logf("control socket: accept: %v; retrying until it works", err)
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		pause = 0
		go s.serveConn(ctx, c, h)
	}
}

func (s *Server) serveConn(ctx context.Context, c *net.UnixConn, h Handler) {
	defer c.Close()
	if err := allowed(c); err != nil {
		s.logf("control socket: refused a connection: %v", err)
		writeReply(c, reply{Error: err.Error()})
		return
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReaderSize(io.LimitReader(c, maxRequest), maxRequest).ReadString('\n')
	if err != nil {
		writeReply(c, reply{Error: "bad request: want one line, reload or status, of at most 256 bytes"})
		return
	}
	c.SetReadDeadline(time.Time{})
	switch req := strings.TrimSpace(line); req {
	case "reload":
		r := h.Reload(ctx)
		writeReply(c, reply{Reload: &r})
	case "status":
		st, err := h.Status(ctx)
		if err != nil {
			writeReply(c, reply{Error: err.Error()})
			return
		}
		writeReply(c, reply{Status: &st})
	default:
		writeReply(c, reply{Error: fmt.Sprintf("unknown request %.40q: want reload or status", req)})
	}
}

// peer returns the credentials of the process at the other end of c: the
// client that connected, or, on a client's socket, the server that
// called listen(2).
func peer(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

// allowed reports an error unless the peer is corral's own user or root.
func allowed(c *net.UnixConn) error {
	cred, err := peer(c)
	if err != nil {
		return fmt.Errorf("read peer credentials: %w", err)
	}
	if uid := os.Getuid(); int(cred.Uid) != uid && cred.Uid != 0 {
		return fmt.Errorf("uid %d may not use the control socket of uid %d", cred.Uid, uid)
	}
	return nil
}

func writeReply(c net.Conn, r reply) {
	b, _ := json.Marshal(r)
	c.Write(append(b, '\n'))
}

// Reload asks the corral at path for a reload and waits for its result.
func Reload(ctx context.Context, path string) (workers.ReloadResult, error) {
	return ReloadServedBy(ctx, path, 0)
}

// ReloadServedBy is Reload that first checks, by the socket's peer
// credentials, that process pid serves the socket, and sends nothing
// otherwise; pid 0 checks nothing. The unit's ExecReload=+ runs corral
// reload as root outside the service's sandbox, while the service's own
// user owns the directory that holds the socket: there the path alone
// does not say who answers, the PID that systemd passes in $MAINPID does.
func ReloadServedBy(ctx context.Context, path string, pid int) (workers.ReloadResult, error) {
	r, err := call(ctx, path, "reload", pid)
	if err != nil {
		return workers.ReloadResult{}, err
	}
	if r.Reload == nil {
		return workers.ReloadResult{}, errors.New("control socket: the answer held no reload result")
	}
	return *r.Reload, nil
}

// Status asks the corral at path for its status.
func Status(ctx context.Context, path string) (workers.Status, error) {
	r, err := call(ctx, path, "status", 0)
	if err != nil {
		return workers.Status{}, err
	}
	if r.Status == nil {
		return workers.Status{}, errors.New("control socket: the answer held no status")
	}
	return *r.Status, nil
}

// call sends req to the socket at path and reads the answer. With pid > 0
// it first checks that process pid listens there.
func call(ctx context.Context, path, req string, pid int) (reply, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return reply{}, dialError(path, err)
	}
	defer c.Close()
	if pid > 0 {
		if err := servedBy(c.(*net.UnixConn), pid); err != nil {
			return reply{}, fmt.Errorf("control socket %s: %w", path, err)
		}
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	return exchange(ctx, c, path, req)
}

// exchange sends req on c, a connection to the control socket at path,
// and reads the answer.
func exchange(ctx context.Context, c net.Conn, path, req string) (reply, error) {
	var r reply
	if _, err := io.WriteString(c, req+"\n"); err != nil {
		// corral may have answered and hung up before reading the request
		// (it refuses another user's connection at once): its reason, if
		// it sent one, says more than the broken pipe.
		if json.NewDecoder(c).Decode(&r) == nil && r.Error != "" {
			return reply{}, fmt.Errorf("control socket %s: %s", path, r.Error)
		}
		return reply{}, fmt.Errorf("control socket %s: send %s: %w", path, req, err)
	}
	if err := json.NewDecoder(c).Decode(&r); err != nil {
		if ctx.Err() != nil {
			return reply{}, fmt.Errorf("control socket %s: no answer to %s: %w", path, req, ctx.Err())
		}
		return reply{}, fmt.Errorf("control socket %s: read answer to %s: %w", path, req, err)
	}
	if r.Error != "" {
		return reply{}, fmt.Errorf("control socket %s: %s", path, r.Error)
	}
	return r, nil
}

// servedBy reports an error unless process pid listens on the socket that
// c is connected to. SO_PEERCRED on a client's socket gives the process
// that called listen(2), in this process's PID namespace.
func servedBy(c *net.UnixConn, pid int) error {
	cred, err := peer(c)
	if err != nil {
		return fmt.Errorf("read the server's credentials: %w", err)
	}
	if int(cred.Pid) != pid {
		return fmt.Errorf("served by PID %d (uid %d), not by the service's main process, PID %d ($MAINPID): "+
			"asked nothing; check what created the socket (ls -l the path), or restart the service", cred.Pid, cred.Uid, pid)
	}
	return nil
}

// dialError explains a failed connection in terms of what to check.
func dialError(path string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("no corral is running with control socket %s (is it started? pass --control, --name or --config to match it): %w", path, err)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("control socket %s: permission denied: run as the user that runs corral, or as root: %w", path, err)
	}
	return fmt.Errorf("control socket %s: %w", path, err)
}
