package workers

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// kernelTicker ticks every interval from a timerfd read in the network
// poller, not from a Go timer. A Go timer, even a ticker's, sets when the
// runtime's monitor thread (sysmon) wakes from its sleep, and each wake
// costs it a run of short sleeps: measured here, a 2s time.Ticker cost an
// idle corral some 9 context switches a tick. A timerfd wakes only the
// thread that waits in the poller.
type kernelTicker struct {
	C    chan struct{} // a tick; ticks that find it full are dropped
	f    *os.File
	done chan struct{}
}

// newKernelTicker starts a ticker. Stop ends its goroutine.
func newKernelTicker(interval time.Duration) (*kernelTicker, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	ts := unix.NsecToTimespec(int64(interval))
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: ts, Value: ts}, nil); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	t := &kernelTicker{C: make(chan struct{}, 1), f: os.NewFile(uintptr(fd), "timerfd"), done: make(chan struct{})}
	go t.run()
	return t, nil
}

// run reads the timerfd with a raw system call, in the poller: a read
// through the runtime's system call path would wake the monitor thread
// too.
func (t *kernelTicker) run() {
	defer close(t.done)
	rc, err := t.f.SyscallConn()
	if err != nil {
		return
	}
	var buf [8]byte
	for {
		var n uintptr
		err := rc.Read(func(fd uintptr) bool {
			var errno unix.Errno
			n, _, errno = unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			return errno != unix.EAGAIN && errno != unix.EINTR
		})
		if err != nil {
			return // stopped
		}
		if n != 8 || binary.NativeEndian.Uint64(buf[:]) == 0 {
			continue
		}
		select {
		case t.C <- struct{}{}:
		default:
		}
	}
}

// Stop stops the ticker and waits for its goroutine to end.
func (t *kernelTicker) Stop() {
	t.f.Close()
	<-t.done
}
