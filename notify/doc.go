// Package notify speaks the sd_notify protocol in both directions a
// supervisor needs.
//
// Downward, workers report to corral. Corral creates one Socket, an
// AF_UNIX datagram socket bound to a path on the file system (never the
// abstract namespace), and puts that path in each worker's NOTIFY_SOCKET.
// A worker then sends "READY=1", "STATUS=...", "STOPPING=1" and so on exactly
// as it would to systemd, or, as PM2 applications do, the bare word
// "online". Socket.Serve turns each datagram into a Message stamped with the
// sender's PID, UID and GID as checked by the kernel (SCM_CREDENTIALS), so
// the caller can tell which worker spoke. Datagrams that systemd itself would
// refuse (too long, a NUL byte, no credentials, file descriptors attached) or
// that do not parse are counted, logged at a limited rate, and dropped.
//
// Upward, corral reports to its own service manager. Upstream sends
// READY=1, RELOADING=1, STOPPING=1, STATUS=, WATCHDOG=1 and
// EXTEND_TIMEOUT_USEC= to the socket named by corral's own NOTIFY_SOCKET, so
// that a unit of Type=notify or Type=notify-reload sees the whole pool as
// one service. Without NOTIFY_SOCKET, Upstream does nothing and reports no
// error, which is what a supervisor run from a terminal wants.
//
// Ownership: the caller of Listen owns the Socket and must Close it; Close
// stops Serve, closes the file descriptor and removes the path. Serve never
// closes the channel it sends on; the caller owns it and may close it once
// Serve has returned. Any file descriptors a worker passes with a message
// are closed by Serve at once and never reach the caller. Upstream holds no
// file descriptor between calls: each notification dials, sends one
// datagram and closes.
package notify
