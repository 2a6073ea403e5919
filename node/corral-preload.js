// corral-preload.js makes an unmodified Node app's listen() use the listening
// socket that corral or systemd passed it (sd_listen_fds(3): fds 3.., with
// LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID) instead of binding a new one,
// which would fail with EADDRINUSE. Load it with
//
//	NODE_OPTIONS="--require /path/to/corral-preload.js"
//
// A listen call whose target (a port, or a path string) matches an inherited
// descriptor listens on that descriptor instead, as listen({fd}) would; every
// other listen call is left alone. The target matches, in this order:
//
//  1. a descriptor whose LISTEN_FDNAMES entry is the target: listen(8000)
//     matches a socket named "8000", listen("http") (or listen(process.env.PORT)
//     with PORT=http) one named "http". The name "unknown" never matches.
//  2. a TCP socket bound to that port, or a unix socket bound at that path.
//
// Each descriptor serves at most one server in this process: a later listen
// on the same target behaves as Node would without this file (EADDRINUSE).
// The preload is inert unless LISTEN_PID is this process' PID, and in worker
// threads. It opens nothing until a listen call needs an address, keeps
// nothing alive, prints nothing, and changes no environment variable: child
// processes see a LISTEN_PID that is not theirs, which tells them, by the
// sd_listen_fds protocol, that the descriptors are not meant for them.
// corral's node/README.md has the details and the limits.
'use strict';

const fs = require('fs');
const net = require('net');
const path = require('path');
const { isMainThread } = require('worker_threads');

// firstFD is SD_LISTEN_FDS_START.
const firstFD = 3;

// kernelMaxBacklog is passed to listen(2) when the app names no backlog. The
// kernel caps it at net.core.somaxconn, which is what corral's own sockets
// ask for (Go's net.Listen does), where Node's default (511) would shrink the
// queue of a socket that every worker shares.
const kernelMaxBacklog = 0x7fffffff;

// inherited lists the descriptors passed to this process as {fd, name}, with
// port or path filled in by locate; it is empty unless LISTEN_PID is ours.
const inherited = listenFDs(process.env);

// claimed holds the descriptors a server of this process has taken. They are
// never released: closing the server closes the descriptor.
const claimed = new Set();

let located = false;

// listenFDs returns the descriptors that env passes to this process.
function listenFDs(env) {
  if (!isMainThread || env.LISTEN_PID !== String(process.pid) ||
      !/^[1-9][0-9]*$/.test(env.LISTEN_FDS || '')) {
    return [];
  }
  const n = Number(env.LISTEN_FDS);
  const names = (env.LISTEN_FDNAMES || '').split(':');
  const fds = [];
  for (let i = 0; i < n; i++) {
    const name = names.length === n && names[i] !== 'unknown' ? names[i] : '';
    fds.push({ fd: firstFD + i, name, port: 0, path: '' });
  }
  return fds;
}

// locate fills in the port or path of each inherited listening socket from
// /proc, once. A descriptor it cannot place (not a socket, or a socket of
// another network namespace) can still match by name.
function locate() {
  if (located) return;
  located = true;
  const byInode = new Map();
  for (const s of inherited) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/fd/${s.fd}`));
      if (m) byInode.set(m[1], s);
    } catch {
      // A descriptor that is not open: it matches nothing.
    }
  }
  if (byInode.size === 0) return;
  // "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt
  // uid timeout inode ...", local_address "ADDR:PORT" in hex, st 0A = LISTEN.
  for (const line of procLines('tcp').concat(procLines('tcp6'))) {
    const f = line.trim().split(/\s+/);
    const s = byInode.get(f[9]);
    if (s && f[3] === '0A') s.port = parseInt(f[1].split(':')[1], 16);
  }
  // "Num RefCount Protocol Flags Type St Inode Path", abstract paths as "@...".
  for (const line of procLines('unix')) {
    const m = /^\s*\S+ \S+ \S+ \S+ \S+ \S+ (\d+) (.+)$/.exec(line);
    const s = m && byInode.get(m[1]);
    if (s) s.path = m[2];
  }
}

// procLines returns the lines after the header of /proc/self/net/<file>.
function procLines(file) {
  try {
    return fs.readFileSync(`/proc/self/net/${file}`, 'latin1').split('\n').slice(1);
  } catch {
    return [];
  }
}

// target returns what a listen call's arguments ask for, following Node's
// own normalization: {port} for a port from 1 to 65535, {path} for a unix
// socket path; with the backlog and signal to keep, and the callback.
// It returns null for anything else: no arguments or port 0, a handle or an
// fd, arguments that Node itself rejects.
function target(args) {
  const last = args[args.length - 1];
  const cb = typeof last === 'function' ? last : null;
  const backlog = toNumber(args.length > 1 && args[1]) || toNumber(args.length > 2 && args[2]);
  let opts = args[0];
  if (opts === null || typeof opts !== 'object') {
    opts = isPipeName(opts) ? { path: opts } : { port: opts };
  } else if (opts._handle || opts.handle || 'fd' in opts) {
    return null;
  }
  const t = { port: 0, path: '', backlog: opts.backlog || backlog, signal: opts.signal, cb };
  if (typeof opts.port === 'number' || typeof opts.port === 'string') {
    if (typeof opts.port === 'string' && opts.port.trim() === '') return null;
    const port = Number(opts.port);
    if (!Number.isInteger(port) || port < 1 || port > 65535) return null;
    t.port = port;
    return t;
  }
  if (isPipeName(opts.path) && opts.path !== '') {
    t.path = opts.path;
    return t;
  }
  return null;
}

// toNumber and isPipeName are Node's own (lib/net.js).
function toNumber(x) {
  return (x = Number(x)) >= 0 ? x : false;
}

function isPipeName(s) {
  return typeof s === 'string' && toNumber(s) === false;
}

// match returns the unclaimed inherited socket that t asks for, or undefined.
function match(t) {
  const name = t.port ? String(t.port) : t.path;
  const free = inherited.filter((s) => !claimed.has(s.fd));
  const byName = free.find((s) => s.name === name);
  if (byName) return byName;
  locate();
  if (t.port) return free.find((s) => s.port === t.port);
  const want = t.path[0] === '\0' ? '@' + t.path.slice(1) : t.path;
  return free.find((s) => s.path !== '' &&
    (s.path === want || (path.isAbsolute(s.path) && s.path === path.resolve(want))));
}

// claimHandle records the descriptor of a listen({fd}) the app makes itself,
// so that no later listen call takes it a second time.
function claimHandle(args) {
  const o = args[0];
  if (o === null || typeof o !== 'object') return;
  const h = o._handle || o.handle || o;
  if (typeof h.fd === 'number') claimed.add(h.fd);
}

const nodeListen = net.Server.prototype.listen;

if (inherited.length > 0) {
  net.Server.prototype.listen = function listen(...args) {
    const t = this.listening ? null : target(args);
    const s = t && match(t);
    if (!s) {
      claimHandle(args);
      return nodeListen.apply(this, args);
    }
    claimed.add(s.fd);
    const rest = t.cb ? [t.backlog || kernelMaxBacklog, t.cb] : [t.backlog || kernelMaxBacklog];
    try {
      nodeListen.call(this, { fd: s.fd, signal: t.signal }, ...rest);
    } catch (err) {
      claimed.delete(s.fd);
      throw err;
    }
    if (this.listening && this.address() === null) {
      // A unix socket server's address() is the path it listens on, which
      // Node records (in _pipeName) for listen(path) but not listen({fd}):
      // the path the app asked for, or for a match by name the bound path.
      locate();
      this._pipeName = s.name !== '' && s.name === t.path ? s.path : t.path;
    }
    return this;
  };
}
