// Package readiness tells when a worker that never notifies has started
// taking connections: corral's --ready=listen mode.
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
//     and gunicorn's sync workers (select).
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
// asked to hear of connections; importing modules, loading code, or
// holding the descriptor enters none of them. One kind of runtime asks
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
// waiting thread, so a busy event loop is found at once.
//
// Reading descriptors, threads and memory needs ptrace access, which corral
// has to its own descendants unless one changes its user ID or is setuid;
// that is an error.
//
// On amd64 all the system calls named above are recognized; arm64 has no
// poll or select, and other architectures are inspected through accept4,
// ppoll, pselect6 and epoll only.
//
// # Cost
//
// A check reads the link of every descriptor, the fdinfo of every epoll
// descriptor, and the syscall and children files of every thread, without
// allocating. It costs about a microsecond or three per descriptor and
// thread, dominated by /proc path lookups: see BenchmarkListening.
package readiness
