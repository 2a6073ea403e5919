package activation

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// journalSocket is where journald takes stream connections, the kind that
// systemd makes for a unit's StandardOutput=journal.
const journalSocket = "/run/systemd/journal/stdout"

// journalSndBuf is the send buffer systemd asks for on a journal stream
// (SNDBUF_SIZE), so that a burst of output does not block the worker while
// journald is busy. The kernel caps it at net.core.wmem_max.
const journalSndBuf = 8 << 20

// connectJournal connects to journald's stream socket at path, announces
// the stream (sd_journal_stream_fd(3)'s header: identifier, no unit,
// priority info, <N> prefixes on, no forwarding), makes it fds 1 and 2
// and sets JOURNAL_STREAM to it. On an error fds 1 and 2 are unchanged.
func connectJournal(path, ident string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("journal stream: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return fmt.Errorf("journal stream: connect to %s: %w", path, err)
	}
	unix.Shutdown(fd, unix.SHUT_RD)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, journalSndBuf)
	header := []byte(ident + "\n\n6\n1\n0\n0\n0\n")
	for len(header) > 0 {
		n, err := unix.Write(fd, header)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("journal stream: write its header: %w", err)
		}
		header = header[n:]
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("journal stream: %w", err)
	}
	for _, to := range []int{1, 2} {
		if err := unix.Dup3(fd, to, 0); err != nil {
			return fmt.Errorf("journal stream: make it fd %d: %w", to, err)
		}
	}
	return os.Setenv("JOURNAL_STREAM", strconv.FormatUint(st.Dev, 10)+":"+strconv.FormatUint(st.Ino, 10))
}
