package activation

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// TrampolineArg is the hidden first argument that makes the corral binary
// act as the exec trampoline.
const TrampolineArg = "__corral-exec-worker"

// trampolineExitCode is the shell's "command not found or not executable".
const trampolineExitCode = 127

// Env returns LISTEN_FDS=<n> and LISTEN_FDNAMES=<a:b:...> for a worker that
// gets socks as fds 3, 4, ... in order; a socket without a Name is named
// "unknown". It returns nil when socks is empty. LISTEN_PID is set by the
// trampoline, which alone knows the worker's PID.
func Env(socks []Socket) []string {
	if len(socks) == 0 {
		return nil
	}
	names := make([]string, len(socks))
	for i, s := range socks {
		names[i] = s.Name
		if names[i] == "" {
			names[i] = unknownName
		}
	}
	return []string{
		"LISTEN_FDS=" + strconv.Itoa(len(socks)),
		"LISTEN_FDNAMES=" + strings.Join(names, ":"),
	}
}

// TrampolineCommand returns the path and arguments that start cmdPath with
// args through the trampoline: "/proc/self/exe" and
// {TrampolineArg, "--", cmdPath, args...}. cmdPath should be absolute (see
// LookCommand). The path is /proc/self/exe rather than os.Executable: after a
// package upgrade replaces the corral binary, its old path names the new
// file (or ends in " (deleted)"), while /proc/self/exe in the forked child
// still names the running binary's inode.
func TrampolineCommand(cmdPath string, args []string) (string, []string) {
	argv := make([]string, 0, 3+len(args))
	argv = append(argv, TrampolineArg, "--", cmdPath)
	return "/proc/self/exe", append(argv, args...)
}

// MaybeRunTrampoline returns immediately unless os.Args[1] is
// TrampolineArg. Then it never returns: it sets LISTEN_PID to its own PID
// (only when LISTEN_FDS is set) and replaces the process with the command
// after the "--", keeping the PID, the environment and every inherited
// descriptor. When the arguments are malformed or the exec fails, it prints
// "corral: exec <path>: <err>" to stderr and exits with status 127.
//
// Call it first thing in main (and in a test binary's TestMain), before
// anything opens files that could take descriptor numbers from 3 up.
func MaybeRunTrampoline() {
	if len(os.Args) < 2 || os.Args[1] != TrampolineArg {
		return
	}
	if len(os.Args) < 4 || os.Args[2] != "--" {
		fmt.Fprintf(os.Stderr, "corral: %s: want -- PATH [ARG...], got %q\n", TrampolineArg, os.Args[2:])
		os.Exit(trampolineExitCode)
	}
	keep := 3
	if n := os.Getenv("LISTEN_FDS"); n != "" {
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
		if v, err := strconv.Atoi(n); err == nil && v > 0 {
			keep += v
		}
	}
	closeOnExecFrom(keep)
	// Node's IPC channel, which corral passes after the sockets.
	if n, err := strconv.Atoi(os.Getenv("NODE_CHANNEL_FD")); err == nil && n >= keep {
		unix.FcntlInt(uintptr(n), unix.F_SETFD, 0)
	}
	argv := os.Args[3:]
	err := unix.Exec(argv[0], argv, os.Environ())
	fmt.Fprintf(os.Stderr, "corral: exec %s: %v\n", argv[0], err)
	os.Exit(trampolineExitCode)
}

// closeOnExecFrom marks every descriptor from fd up close-on-exec, so that
// the app gets stdin, stdout, stderr and the listening sockets and nothing
// else: not what corral's own parent leaked to it without O_CLOEXEC, nor
// anything of the Go runtime's.
func closeOnExecFrom(fd int) {
	err := unix.CloseRange(uint(fd), ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil {
		return
	}
	// Kernels before 5.11 have no close_range(2) with CLOSE_RANGE_CLOEXEC.
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n >= fd {
			unix.CloseOnExec(n)
		}
	}
}
