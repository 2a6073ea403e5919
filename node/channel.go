package node

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/corraldev/corral/activation"
	"golang.org/x/sys/unix"
)

// Node's IPC channel, as child_process.fork sets it up: one end of a unix
// stream socketpair at the fd that NODE_CHANNEL_FD names, one JSON value
// per line (NODE_CHANNEL_SERIALIZATION_MODE=json). process.send('ready')
// or process.send('online') counts as online; corral sends 'shutdown' when
// it stops the worker gracefully. Node keeps the channel unreferenced
// unless the app listens for 'message' or 'disconnect', so an app that
// never reads it is not kept alive by it.

// maxLine bounds one message; a longer line is dropped and counted.
const maxLine = 64 << 10

// Channel is corral's end of one worker's IPC channel. Read it from one
// goroutine; Shutdown and Close may be called from another.
type Channel struct {
	c *net.UnixConn
	r *bufio.Reader
}

// NewChannel returns corral's end of a new channel and the worker's end,
// as the extra descriptor the launch passes (NODE_CHANNEL_FD). The caller
// closes the ExtraFile's File once the worker has started.
func NewChannel() (*Channel, activation.ExtraFile, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, activation.ExtraFile{}, fmt.Errorf("node ipc channel: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "ipc")
	defer ours.Close()
	c, err := net.FileConn(ours)
	if err != nil {
		unix.Close(fds[1])
		return nil, activation.ExtraFile{}, fmt.Errorf("node ipc channel: %w", err)
	}
	child := activation.ExtraFile{
		File:  os.NewFile(uintptr(fds[1]), "ipc-child"),
		FdEnv: "NODE_CHANNEL_FD",
		Env:   []string{"NODE_CHANNEL_SERIALIZATION_MODE=json"},
	}
	uc := c.(*net.UnixConn)
	return &Channel{c: uc, r: bufio.NewReaderSize(uc, 4096)}, child, nil
}

// Message is what a worker said on its channel, as far as corral cares.
type Message int

const (
	Ready   Message = iota + 1 // 'ready' or 'online'
	Dropped                    // not JSON, or longer than 64 KiB
)

// Read returns the next message corral acts on, skipping the app's own and
// Node's internal ones, or an error once the channel is closed.
func (ch *Channel) Read() (Message, error) {
	for {
		line, err := readLine(ch.r)
		if err != nil {
			return 0, err
		}
		var v any
		switch {
		case line == nil, json.Unmarshal(line, &v) != nil:
			return Dropped, nil
		}
		if s, ok := v.(string); ok && (s == "ready" || s == "online") {
			return Ready, nil
		}
	}
}

// readLine returns the next line without its newline, or nil for a line
// longer than maxLine, which it skips.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := r.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(chunk) > maxLine+1 {
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

// Shutdown sends the message 'shutdown'. It reports whether it was sent:
// false when the channel is gone or the worker does not read it.
func (ch *Channel) Shutdown() bool {
	ch.c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := ch.c.Write([]byte("\"shutdown\"\n"))
	return err == nil
}

// Close closes corral's end; a Read in progress returns an error.
func (ch *Channel) Close() error { return ch.c.Close() }
