package activation

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// TrampolineArg is the hidden first argument that makes the corral binary
// act as the exec trampoline.
const TrampolineArg = "__corral-exec-worker"

// trampolineExitCode is the shell's "command not found or not executable".
const trampolineExitCode = 127

// init keeps the trampoline's main goroutine on the process' main thread,
// the one Launcher set PR_SET_PDEATHSIG on. Linux keeps that setting per
// thread, and the thread that calls execve becomes the new program's only
// one: an exec from another thread of the Go runtime would start the app
// with no death signal, to outlive a SIGKILLed corral.
func init() {
	if len(os.Args) > 1 && os.Args[1] == TrampolineArg {
		runtime.LockOSThread()
	}
}

// MaybeRunTrampoline returns immediately unless os.Args[1] is
// TrampolineArg. Then it never returns: it sets LISTEN_PID to its own PID
// (only when LISTEN_FDS is set), marks every descriptor above the ones the
// worker is to get close-on-exec, and replaces the process with the command
// after the "--", keeping the PID and the environment. When the arguments
// are malformed or the exec fails, it prints "corral: exec <path>: <err>"
// to stderr and exits with status 127.
//
// Its command line, which only Launcher writes, is
//
//	APP __corral-exec-worker fds=N [cgroup=DIR] [journal=IDENTIFIER] -- APP [ARG...]
//
// where N is the number of descriptors from 3 up that the worker gets (the
// sockets, then the extra files). With cgroup=, it first moves itself into
// the cgroup at DIR, and exits 127 if it cannot. With journal=, it connects to
// journald's stream socket, as systemd does for a unit's output, makes
// that stream its stdout and stderr and sets JOURNAL_STREAM to it: journald
// reads the peer's credentials when it accepts, so the lines carry the
// worker's own PID and cgroup, and the identifier the option gives. The binary is /proc/self/exe rather than
// os.Executable: after a package upgrade replaces the corral binary, its
// old path names the new file, while /proc/self/exe in the forked child
// still names the running binary's inode.
//
// Call it first thing in main (and in a test binary's TestMain), before
// anything opens files that could take descriptor numbers from 3 up.
func MaybeRunTrampoline() {
	if len(os.Args) < 2 || os.Args[1] != TrampolineArg {
		return
	}
	opts, argv, err := parseTrampoline(os.Args[2:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "corral: %s: %v\n", TrampolineArg, err)
		os.Exit(trampolineExitCode)
	}
	if opts.cgroup != "" {
		if err := joinCgroup(opts.cgroup); err != nil {
			fmt.Fprintf(os.Stderr, "corral: worker %d: %v\n", os.Getpid(), err)
			os.Exit(trampolineExitCode)
		}
	}
	if os.Getenv("LISTEN_FDS") != "" {
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	if opts.journal != "" {
		if err := connectJournal(journalSocket, opts.journal); err != nil {
			fmt.Fprintf(os.Stderr, "corral: worker %d: %v; its output goes to corral's\n", os.Getpid(), err)
		}
	}
	closeOnExecFrom(3 + opts.fds)
	err = unix.Exec(argv[0], argv, os.Environ())
	fmt.Fprintf(os.Stderr, "corral: exec %s: %v\n", argv[0], err)
	os.Exit(trampolineExitCode)
}

// trampolineOpts are the trampoline's options, before its "--".
type trampolineOpts struct {
	fds     int    // descriptors from 3 up that the worker keeps
	cgroup  string // directory of the cgroup to move into; "" for none
	journal string // identifier of a journal stream for stdout and stderr; "" for none
}

// parseTrampoline splits the trampoline's arguments into its options and
// the command line of the app.
func parseTrampoline(args []string) (trampolineOpts, []string, error) {
	var o trampolineOpts
	for i, a := range args {
		if a == "--" {
			if i+1 == len(args) {
				break
			}
			return o, args[i+1:], nil
		}
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "fds":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return o, nil, fmt.Errorf("option %q: want fds=N, N >= 0", a)
			}
			o.fds = n
		case "cgroup":
			if !strings.HasPrefix(v, "/") {
				return o, nil, fmt.Errorf("option %q: want cgroup=/ABSOLUTE/PATH", a)
			}
			o.cgroup = v
		case "journal":
			if v == "" {
				return o, nil, fmt.Errorf("option %q: want journal=IDENTIFIER", a)
			}
			o.journal = v
		default:
			return o, nil, fmt.Errorf("unknown option %q", a)
		}
	}
	return o, nil, fmt.Errorf("want [fds=N] [cgroup=DIR] [journal=IDENTIFIER] -- PATH [ARG...], got %q", args)
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

// joinCgroup moves this process, every thread of it, into the cgroup v2 at
// dir, as `echo 0 > dir/cgroup.procs` does.
func joinCgroup(dir string) error {
	f, err := os.OpenFile(dir+"/cgroup.procs", os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString("0\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("move into cgroup %s: %w", dir, err)
	}
	return nil
}
