package workers

import (
	"fmt"
	"os"

	"github.com/corraldev/corral/internal/proc"
	"golang.org/x/sys/unix"
)

// spareFDs are the descriptors the pool keeps free beyond its workers',
// for what comes and goes: control socket clients, the pipe of each fork,
// reads of /proc, the descriptors a notify datagram carries.
const spareFDs = 16

// fdsPerWorker is what the pool holds open for each worker of s: its
// pidfd, and corral's end of Node's IPC channel.
func (s *Spec) fdsPerWorker() int {
	if s.NodeIPC {
		return 2
	}
	return 1
}

// baseFDs returns how many descriptors corral holds besides its workers':
// those open now, and extra more it will open. It returns 0 when /proc
// cannot tell.
func baseFDs(extra int) int {
	open, err := proc.FDs(os.Getpid())
	if err != nil {
		return 0
	}
	return open + extra
}

// checkFileLimit returns an error unless the open file limit leaves room,
// beyond base descriptors, for n workers of s and spareFDs. The error
// names the limit that would do and how to set it. Without a limit or a
// base to go by, it returns nil.
func checkFileLimit(s *Spec, n, base int) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || base == 0 {
		return nil
	}
	need := base + n*s.fdsPerWorker() + spareFDs
	if uint64(need) <= lim.Cur {
		return nil
	}
	each := "a pidfd each"
	if s.NodeIPC {
		each = "a pidfd and Node's IPC channel each"
	}
	return fmt.Errorf("the open file limit (RLIMIT_NOFILE) is %d, and corral needs %d: %d for itself and its sockets, %d for up to %d workers (%s), %d spare; raise it to at least %d (LimitNOFILE= in the unit, ulimit -n in a shell)",
		lim.Cur, need, base, n*s.fdsPerWorker(), n, each, spareFDs, need)
}
