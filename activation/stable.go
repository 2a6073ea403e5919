package activation

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// stableFile returns a duplicate of f whose Fd method never changes the
// socket's O_NONBLOCK flag, and closes f.
//
// os/exec calls Fd on every ExtraFiles entry, and Fd puts a descriptor that
// os.NewFile found non-blocking into blocking mode. The flag belongs to the
// open file description, which every worker shares: a Go worker that made
// the socket non-blocking would find it blocking again after each spawn,
// and its accept(2) would then block in the kernel, where Listener.Close
// cannot interrupt it, stalling its drain. So the duplicate is made while
// the description is blocking (os.NewFile then leaves it alone), and the
// flag is put back as it was: systemd's NonBlocking= setting, or blocking
// for the sockets Open creates. Call it before any worker runs.
func stableFile(f *os.File) (*os.File, error) {
	defer f.Close()
	var nf *os.File
	var err error
	if cerr := withFd(f, func(fd int) { nf, err = dupBlocking(fd, f.Name()) }); cerr != nil {
		return nil, cerr
	}
	return nf, err
}

func dupBlocking(fd int, name string) (*os.File, error) {
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil, fmt.Errorf("read socket flags: %w", err)
	}
	nonblock := flags&unix.O_NONBLOCK != 0
	if nonblock {
		if err := unix.SetNonblock(fd, false); err != nil {
			return nil, fmt.Errorf("set blocking mode: %w", err)
		}
		defer unix.SetNonblock(fd, true)
	}
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, fmt.Errorf("duplicate socket: %w", err)
	}
	return os.NewFile(uintptr(nfd), name), nil
}
