package readiness

import "golang.org/x/sys/unix"

const (
	sysAccept = unix.SYS_ACCEPT
	sysPoll   = unix.SYS_POLL
	sysSelect = unix.SYS_SELECT
)
