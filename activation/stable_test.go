package activation

import (
	"testing"

	"golang.org/x/sys/unix"
)

// A Go worker makes the shared socket non-blocking; corral's next spawn
// (os/exec calls Fd on every ExtraFiles entry) must not make it blocking
// again under the worker's feet.
func TestFdLeavesSharedFlagAlone(t *testing.T) {
	ls, err := ParseListen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	socks, err := Open([]ListenSpec{ls}, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer Close(socks)
	f := socks[0].File
	var fd int
	withFd(f, func(n int) { fd = n })
	if nonblocking(t, fd) {
		t.Fatal("Open returned a non-blocking socket")
	}
	// What a Go worker's net.FileListener does to the shared description.
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	f.Fd() // what os/exec does at each spawn
	if !nonblocking(t, fd) {
		t.Fatal("Fd() made the shared socket blocking again")
	}
}

func TestStableFileKeepsNonBlockingMode(t *testing.T) {
	ls, _ := ParseListen("127.0.0.1:0")
	socks, err := Open([]ListenSpec{ls}, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer Close(socks)
	var fd int
	withFd(socks[0].File, func(n int) { fd = n })
	unix.SetNonblock(fd, true) // as systemd's NonBlocking=yes would
	nf, err := stableFile(socks[0].File)
	if err != nil {
		t.Fatal(err)
	}
	socks[0].File = nf
	var nfd int
	withFd(nf, func(n int) { nfd = n })
	nf.Fd()
	if !nonblocking(t, nfd) {
		t.Fatal("stableFile did not put back the non-blocking flag, or Fd cleared it")
	}
}

func nonblocking(t *testing.T, fd int) bool {
	t.Helper()
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fl&unix.O_NONBLOCK != 0
}
