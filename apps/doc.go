// Package apps runs corral apps by name on systemd, the PM2 way: `corral
// start`, `ls`, `reload`, `restart`, `stop`, `delete` and `import` are thin
// wrappers around it.
//
// An app NAME is the instance NAME of a corral template: corral@NAME.socket
// holds its listening sockets and corral@NAME.service runs `corral run
// --config DIR/NAME.toml` on them. Start writes that config, a drop-in that
// sets the socket's ListenStream= lines, and a record of every file it
// wrote and every link it enabled; Delete removes exactly what the record
// lists, and List shows the apps that have a record and every loaded
// instance of a template whose service runs `corral run`, so neither ever
// guesses from file names.
//
// Every unit action and property read goes to systemd over D-Bus, on the
// manager's private socket: /run/systemd/private for the system manager
// (root only), $XDG_RUNTIME_DIR/systemd/private for a user's own manager,
// which answers without a session bus. Jobs are waited for through
// systemd's JobRemoved signal; a start also watches the service's state,
// so that a service that fails and is scheduled for a restart fails the
// start at once instead of after systemd's start limit.
package apps
