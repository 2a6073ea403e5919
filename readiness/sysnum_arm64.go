package readiness

import "golang.org/x/sys/unix"

const (
	sysAccept = unix.SYS_ACCEPT
	sysPoll   = noSyscall - 1
	sysSelect = noSyscall - 2
)
