package readiness

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Sockets identifies the listening sockets to look for, by the inode of
// each. A socket's inode is the same in every process that holds it, so the
// inodes of corral's own copies identify the workers' copies. The zero
// Sockets holds none, and Listening reports false for it.
type Sockets struct {
	ids []socketID
}

// socketID names a socket as /proc does: the inode number, and the device
// of the socket file system in the kernel's encoding (major<<20 | minor),
// which is how epoll's fdinfo prints it.
type socketID struct {
	ino uint64
	dev uint64
}

// SocketsOf returns the Sockets of files, which must all be sockets. It
// only stats them: the caller keeps owning files and may close them.
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
		dev := uint64(unix.Major(st.Dev))<<20 | uint64(unix.Minor(st.Dev))
		s.ids = append(s.ids, socketID{ino: st.Ino, dev: dev})
	}
	return s, nil
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
