// Package node holds corral-preload.js, the preload that lets an unmodified
// Node.js app serve on the sockets corral passes its workers.
//
// corral hands every worker the same listening sockets as fds 3, 4, ... with
// LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID, the way systemd would. A Node
// app that calls listen(8000) knows nothing of them and would try to bind
// port 8000 itself, failing with EADDRINUSE. Loaded into the worker with
// NODE_OPTIONS="--require PATH", the preload turns a listen call whose port
// or path matches an inherited socket, or names one, into listen({fd}), and
// leaves every other listen call alone. README.md gives the matching rule
// and its limits.
//
// The script is a kit that runs inside users' apps: its behaviour is part of
// corral's promise to them (node/README.md). The Go side is corral's
// machinery for Node workers, with no API promise: Preload (the script,
// embedded) and WithPreload, which installs it; and Channel, Node's IPC
// channel as child_process.fork opens it (NODE_CHANNEL_FD), over which
// process.send('ready') counts as online and corral sends 'shutdown'. The
// channel reaches the worker as an extra descriptor of the launch (package
// activation), so the launch knows nothing of Node.
package node

import _ "embed"

// Preload is the source of corral-preload.js.
//
//go:embed corral-preload.js
var Preload string
