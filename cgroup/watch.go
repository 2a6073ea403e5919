package cgroup

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Watcher tells when the kernel marks cgroup files modified: cgroup.events
// when a cgroup becomes empty, memory.events when a memory event is
// counted. It is one inotify instance, read in Go's network poller, so a
// watcher that waits holds no thread and wakes no one.
//
// Add and Remove may be called from any goroutine while one goroutine
// calls Read. Close ends Read.
type Watcher struct {
	f *os.File
}

// NewWatcher returns a Watcher with nothing watched.
func NewWatcher() (*Watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	return &Watcher{f: os.NewFile(uintptr(fd), "inotify")}, nil
}

// Add watches the file at path and returns the watch descriptor that Read
// reports when it is modified. Adding a file twice returns the same one.
func (w *Watcher) Add(path string) (int, error) {
	var wd int
	var err error
	cerr := w.control(func(fd int) {
		wd, err = unix.InotifyAddWatch(fd, path, unix.IN_MODIFY)
	})
	if cerr != nil {
		return 0, cerr
	}
	if err != nil {
		return 0, fmt.Errorf("watch %s: %w", path, err)
	}
	return wd, nil
}

// Remove stops watching wd. Removing a watch whose file is gone (its
// cgroup removed) is not an error.
func (w *Watcher) Remove(wd int) {
	w.control(func(fd int) { unix.InotifyRmWatch(fd, uint32(wd)) })
}

func (w *Watcher) control(f func(fd int)) error {
	rc, err := w.f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { f(int(fd)) })
}

// Read waits for modifications and returns the watch descriptors of the
// files modified, each once. It returns an error once the Watcher is
// closed.
func (w *Watcher) Read() ([]int, error) {
	var buf [4096]byte
	for {
		n, err := w.f.Read(buf[:])
		if err != nil {
			return nil, err
		}
		if wds := parseEvents(buf[:n]); len(wds) > 0 {
			return wds, nil
		}
	}
}

// parseEvents returns the watch descriptors of the IN_MODIFY events in b,
// a read of an inotify descriptor, each once.
func parseEvents(b []byte) []int {
	var wds []int
	for len(b) >= unix.SizeofInotifyEvent {
		wd := int(int32(binary.NativeEndian.Uint32(b[0:4])))
		mask := binary.NativeEndian.Uint32(b[4:8])
		size := unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(b[12:16]))
		if size > len(b) {
			break
		}
		b = b[size:]
		if mask&unix.IN_MODIFY == 0 {
			continue // IN_IGNORED: the watch is gone, with its file
		}
		seen := false
		for _, x := range wds {
			seen = seen || x == wd
		}
		if !seen {
			wds = append(wds, wd)
		}
	}
	return wds
}

// Close ends Read and every watch.
func (w *Watcher) Close() error { return w.f.Close() }
