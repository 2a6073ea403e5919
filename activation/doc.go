// Package activation owns corral's listening sockets and hands them to
// workers the way systemd would.
//
// A socket comes from one of two places. When systemd starts corral through
// a socket unit, Inherited takes the listening descriptors systemd passed
// (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID); systemd keeps its own copy and
// owns the socket's address, so corral never removes an inherited unix
// socket file. Otherwise Open binds the addresses named by --listen flags
// (parsed with ParseListen); corral then owns those sockets, and Close
// removes the unix socket files that Open created.
//
// The sockets are of every kind a socket unit with Accept=no passes:
// listening stream sockets (ListenStream=: TCP, unix, vsock), datagram
// sockets (ListenDatagram=: UDP, unix datagram) and listening unix
// SOCK_SEQPACKET sockets (ListenSequentialPacket=). Inherited refuses the
// rest with a *KindError that names the unit's setting (Accept=yes,
// ListenFIFO=, ListenSpecial=, ListenNetlink=, ListenMessageQueue=,
// ListenUSBFunction=).
//
// Either way the caller holds each Socket's File until Close. corral never
// accepts a connection or reads a datagram on these sockets. It passes the
// same descriptors to every worker, as file descriptors 3, 4, ... in the
// order of the slice, with LISTEN_FDS and LISTEN_FDNAMES, so each worker
// sees exactly what systemd would have given it, and the kernel spreads
// connections among the workers that accept, and datagrams among those
// that read: each datagram goes to one reader, and those no worker has read
// yet wait in the socket's receive buffer. A worker holds a duplicate of
// each descriptor and closes it by exiting; a socket lives until its last
// holder closes it, so workers can be replaced one by one without refusing
// a connection or losing a queued datagram.
//
// Sockets are handed out in blocking mode. The O_NONBLOCK flag belongs to
// the open file description, which every process holding the socket shares,
// so one process' choice is every worker's. systemd hands out blocking
// sockets unless a unit says NonBlocking=yes, and many runtimes (Python's
// socket.fromfd, for one) expect that, so Open clears O_NONBLOCK. Inherited
// leaves the flag as systemd set it, but passing a File in exec.Cmd's
// ExtraFiles clears it too (os.StartProcess calls File.Fd, which switches
// the descriptor to blocking mode).
//
// The launch of a worker lives here too, in one place: Worker is the whole
// worker contract of corral's README (argv, the fd table, the environment
// added and removed, the process group, the death signal), and Launcher
// starts it. Callers never pick fd numbers: a runtime that needs a
// descriptor of its own (Node's IPC channel, in package node) asks for an
// ExtraFile, which gets the next fd after the sockets and a variable that
// announces it. Process waits for a worker without holding an OS thread
// (on its pidfd, in the network poller) and signals its process group.
//
// The sd_listen_fds protocol requires LISTEN_PID to equal the worker's own
// process ID, which is known only after fork. Go cannot run code between
// fork and exec, so corral starts each worker through a trampoline: it runs
// its own binary as "/proc/self/exe __corral-exec-worker fds=N -- APP
// ARG...". MaybeRunTrampoline, called first thing in main, sets LISTEN_PID
// to its own PID, marks every descriptor past the N it hands on
// close-on-exec, and replaces itself with APP through execve, which keeps
// the PID, so the application sees its own PID in LISTEN_PID.
//
// LookCommand resolves the application's path before any of this, so a
// mistyped command fails once with a clear message rather than in every
// worker.
//
// This package is corral's machinery, not an API for other programs: it may
// change in any release. What it gives a worker (the contract) is the API.
package activation
