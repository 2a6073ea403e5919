//go:build !amd64 && !arm64

package readiness

// Other architectures are inspected through accept4, ppoll and pselect6
// only (and epoll), which is all some of them have.
const (
	sysAccept = noSyscall
	sysPoll   = noSyscall - 1
	sysSelect = noSyscall - 2
)
