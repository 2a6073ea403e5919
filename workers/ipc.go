package workers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Node's IPC channel, as child_process.fork sets it up: one end of a unix
// stream socketpair at the fd that NODE_CHANNEL_FD names, one JSON value
// per line (NODE_CHANNEL_SERIALIZATION_MODE=json). process.send('ready')
// or process.send('online') counts as online; corral sends 'shutdown' when
// it stops the worker gracefully. Node keeps the channel unreferenced
// unless the app listens for 'message' or 'disconnect', so an app that
// never reads it is not kept alive by it.

// maxIPCLine bounds one message; a longer line is dropped and counted.
const maxIPCLine = 64 << 10

// shutdownGrace is how long a Node worker has after the 'shutdown' message
// before it also gets the stop signal: half its stop timeout, at most 5s.
func shutdownGrace(s *Spec) time.Duration {
	return min(s.StopTimeout/2, 5*time.Second)
}

type ipcEvent struct {
	w       *worker
	ready   bool
	dropped bool
}

// ipcPair returns corral's end of a new channel and the worker's end,
// which the caller passes to the child and then closes.
func ipcPair() (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("node ipc channel: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "ipc")
	defer ours.Close()
	c, err := net.FileConn(ours)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("node ipc channel: %w", err)
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "ipc-child"), nil
}

// readIPC delivers w's messages to Run until the channel closes.
func (p *Pool) readIPC(w *worker, c *net.UnixConn) {
	r := bufio.NewReaderSize(c, 4096)
	for {
		line, err := readLine(r)
		if err != nil {
			return
		}
		ev := ipcEvent{w: w}
		var v any
		switch {
		case line == nil:
			ev.dropped = true // over maxIPCLine
		case json.Unmarshal(line, &v) != nil:
			ev.dropped = true
		default:
			s, ok := v.(string)
			ev.ready = ok && (s == "ready" || s == "online")
			if !ev.ready {
				continue // the app's own messages, and Node's internal ones
			}
		}
		select {
		case p.ipcs <- ev:
		case <-p.quit:
			return
		}
	}
}

// readLine returns the next line without its newline, or nil for a line
// longer than maxIPCLine, which it skips.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > maxIPCLine+1 {
				tooLong, line = true, nil
			} else {
				line = append(line, chunk...)
			}
		}
		switch err {
		case nil:
			if tooLong {
				return nil, nil
			}
			return bytes.TrimSuffix(line, []byte("\n")), nil
		case bufio.ErrBufferFull:
			continue
		default:
			return nil, err
		}
	}
}

// sendShutdown writes the 'shutdown' message; false if the channel is gone.
func sendShutdown(c *net.UnixConn) bool {
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := c.Write([]byte("\"shutdown\"\n"))
	return err == nil
}

// ipc handles a message on a worker's Node IPC channel.
func (p *Pool) ipc(ev ipcEvent) {
	if ev.dropped {
		p.ipcDropped++
		return
	}
	if w := ev.w; p.workers[w.pid] == w && w.state == starting {
		p.online(w)
	}
}
