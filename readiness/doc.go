// Package readiness tells when a worker that never notifies has started
// taking connections, or reading datagrams: corral's --ready=listen mode.
//
// Holding a listening socket proves nothing, since every worker inherits
// the sockets (fds 3, 4, ...) before its first instruction. What changes
// when a server starts serving is kernel state that /proc shows, and
// Listening looks for it in the worker and in each of its descendants (a
// shell that runs node, a gunicorn master that forks workers), found
// through /proc/PID/task/TID/children. A process is listening when
//
//   - an epoll instance it holds watches the socket for input. This finds
//     Node (libuv), uvicorn and other asyncio servers, and Go's net
//     package; or
//   - one of its threads is blocked in accept or accept4 on a descriptor
//     of the socket (the first argument in /proc/PID/task/TID/syscall), or
//     in poll, ppoll, select or pselect6 with such a descriptor in its read
//     set, read from /proc/PID/mem while the thread is still in the same
//     call. This finds blocking accept loops, Python's http.server (poll)
//     and gunicorn's sync workers (select). For a datagram socket, a thread
//     blocked in recvfrom, recvmsg, recvmmsg or read on it waits for a
//     datagram (on a listening socket those return at once), which finds
//     blocking read loops such as Python's sock.recvfrom; or
//   - it holds a connection it has accepted from the socket, while holding
//     the socket: a connected socket of the listener's type whose local
//     address is the listener's (its TCP port, and address unless the
//     listener's is the wildcard, or its unix socket name). A datagram
//     socket has no connections, so this rule is for stream and seqpacket
//     sockets only. A server busy with requests is
//     rarely seen waiting in accept or select (Puma under load, a thread
//     pool), but it holds connections. The address is read with
//     getsockname(2) on a copy of the descriptor that pidfd_getfd(2)
//     makes, or, where that is refused, from the kernel's socket
//     diagnostics (sock_diag(7)). See accepted.go.
//
// A socket's inode is the same in every process that holds it: the link
// /proc/PID/fd/N of each reads "socket:[2609308]", so SocketsOf takes the
// inodes from corral's own copies. Each epoll registration is a line of
// /proc/PID/fdinfo/EPFD,
//
//	tfd:        5 events:       19 data:                5  pos:0 ino:27d09c sdev:9
//
// where ino is the inode of the registered file in hexadecimal (0x27d09c is
// 2609308) and sdev its device, here sockfs, so a registration is found
// even after the descriptor it was made through (tfd) is closed.
//
// # Never early
//
// Each of these is a state the kernel enters only once the process has
// asked to hear of connections, or has taken one; importing modules,
// loading code, or holding the descriptor enters none of them. One kind of runtime asks
// earlier than it serves: Go's net package (and Rust's mio, under tokio)
// registers a listener with epoll when net.FileListener creates it, and
// Accept later waits without a trace in /proc. A Go worker that creates
// its listener long before it calls Serve counts as listening from the
// creation. Connections meanwhile wait in the socket's accept queue, which
// all workers share, so other workers take them; such an app should
// notify instead.
//
// # Limits
//
// A server that accepts through io_uring (IORING_OP_ACCEPT) neither
// registers the socket with epoll nor blocks a thread in accept, and /proc
// does not show requests in flight: it is never found, so the ready
// timeout fails it. Such servers must notify, or use --ready=exec. (Node's
// libuv uses io_uring for files only; its sockets stay on epoll.)
//
// Only descendants are inspected. A server that a worker has another
// process start (docker run asks dockerd), or that receives the socket over
// a unix socket, is never found. PIDs are those of corral's /proc: a worker
// that starts its server in a new PID namespace of its own (unshare --pid
// --fork) is still a descendant there, but a corral whose /proc belongs to
// another PID namespace finds nothing. Without CONFIG_PROC_CHILDREN, only
// the worker itself is inspected.
//
// Threads are sampled: one busy serving a request is "running" in /proc,
// and the next check sees it waiting again. An epoll registration needs no
// waiting thread, so a busy event loop is found at once, and so is a busy
// server of any kind that holds a connection it accepted.
//
// Reading descriptors, threads and memory, and copying descriptors, needs
// ptrace access, which corral has to its own descendants unless one
// changes its user ID or is setuid; that is an error. The sock_diag
// fallback sees the connections of corral's network namespace only.
//
// On amd64 all the system calls named above are recognized; arm64 has no
// poll or select, and other architectures are inspected through accept4,
// ppoll, pselect6, the recv calls, read and epoll only (where a C library
// reads through socketcall(2), as on 32-bit x86, the recv calls are not
// seen).
//
// # Cost
//
// A check reads the link of every descriptor, the fdinfo of every epoll
// descriptor, the local address of every other socket (four system calls
// each, at most 256 per process, and only in a process that holds one of
// the sockets), and the syscall and children files of every thread,
// without allocating. It costs about a microsecond or three per descriptor
// and thread, dominated by /proc path lookups: see BenchmarkListening.
// Where pidfd_getfd is refused, a TCP listener costs a sock_diag dump,
// about 2 ms, which walks the kernel's table of connections.
package readiness
