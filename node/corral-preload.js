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
// The same holds for UDP: a dgram socket's bind(port) (or bind({port}))
// takes an inherited UDP socket named as the port or bound to it, as
// bind({fd}) would: for a 'udp4' socket an IPv4 one, else an IPv6 one on
// the wildcard address, which also receives IPv4 datagrams (the preload
// then sends to IPv4 addresses through it, and reports IPv4 senders as
// such); for a 'udp6' socket an IPv6 one.
//
// Each descriptor serves at most one server in this process: a later listen
// on the same target behaves as Node would without this file (EADDRINUSE).
// The preload is inert unless LISTEN_PID is this process' PID, and in worker
// threads. It opens nothing until a listen or bind call needs an address,
// keeps nothing alive, prints nothing, and changes no environment variable: child
// processes see a LISTEN_PID that is not theirs, which tells them, by the
// sd_listen_fds protocol, that the descriptors are not meant for them.
// corral's node/README.md has the details and the limits.
//
// It also drains the process' HTTP servers and UDP sockets when corral stops
// the worker,
// so that an app that knows nothing of keep-alive loses no request: from
// the 'shutdown' message on Node's IPC channel, or SIGTERM or SIGINT,
// whichever comes first, the servers on inherited sockets stop accepting
// (the other workers, which share the sockets, take the new connections),
// every response of every HTTP server carries "Connection: close", idle
// keep-alive connections are closed only after a grace period, and each
// busy one only once it is idle after a response. server.close() stops
// accepting and calls back once the connections are gone, without closing
// idle connections at once as Node's own does. A dgram socket on an
// inherited descriptor stops reading (the datagrams it has not read stay
// queued for the other workers) and no longer keeps the process alive. An
// app that handles none of these itself exits, by the signal, once its
// servers are drained and its dgram sockets have sent what they owe.
// CORRAL_NODE_DRAIN=off turns the drain off.
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
// kind ('tcp', 'udp', 'unix', 'unixgram' or 'unixpacket'), family (4 or 6),
// port or path, and wildcard filled in by locate; it is empty unless
// LISTEN_PID is ours.
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
    fds.push({ fd: firstFD + i, name, kind: '', family: 0, port: 0, path: '', wildcard: false });
  }
  return fds;
}

// locate fills in the kind, address family, port or path of each inherited
// socket from /proc, once. A descriptor it cannot place (not a socket, or a
// socket of another network namespace) can still match by name.
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
  for (const [file, kind, family] of [['tcp', 'tcp', 4], ['tcp6', 'tcp', 6], ['udp', 'udp', 4], ['udp6', 'udp', 6]]) {
    for (const line of procLines(file)) {
      const f = line.trim().split(/\s+/);
      const s = byInode.get(f[9]);
      if (!s || (kind === 'tcp' && f[3] !== '0A')) continue;
      const [addr, port] = f[1].split(':');
      Object.assign(s, { kind, family, port: parseInt(port, 16), wildcard: /^0+$/.test(addr) });
    }
  }
  // "Num RefCount Protocol Flags Type St Inode Path", abstract paths as "@...".
  const unixKinds = { '0001': 'unix', '0002': 'unixgram', '0005': 'unixpacket' };
  for (const line of procLines('unix')) {
    const m = /^\s*\S+ \S+ \S+ \S+ (\S+) \S+ (\d+) (.+)$/.exec(line);
    const s = m && byInode.get(m[2]);
    if (s) Object.assign(s, { kind: unixKinds[m[1]] || 'unix?', path: m[3] });
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

// match returns the unclaimed inherited stream socket that t asks for, or
// undefined.
function match(t) {
  const name = t.port ? String(t.port) : t.path;
  locate();
  const free = inherited.filter((s) => !claimed.has(s.fd) && (s.kind === '' || s.kind === 'tcp' || s.kind === 'unix'));
  const byName = free.find((s) => s.name === name);
  if (byName) return byName;
  if (t.port) return free.find((s) => s.kind === 'tcp' && s.port === t.port);
  const want = t.path[0] === '\0' ? '@' + t.path.slice(1) : t.path;
  return free.find((s) => s.kind === 'unix' && s.path !== '' &&
    (s.path === want || (path.isAbsolute(s.path) && s.path === path.resolve(want))));
}

// claimHandle records the descriptor of a listen({fd}) the app makes itself,
// so that no later listen call takes it a second time, and returns it.
function claimHandle(args) {
  const o = args[0];
  if (o === null || typeof o !== 'object') return -1;
  const h = o._handle || o.handle || o;
  if (typeof h.fd !== 'number') return -1;
  claimed.add(h.fd);
  return h.fd;
}

const nodeListen = net.Server.prototype.listen;


// The drain. Node's http.Server.close() (and https') closes every idle
// keep-alive connection at once (Node 19 and later), and the client of
// such a connection may be sending its next request at that moment: it
// gets a reset instead of an answer. Node does not answer with
// "Connection: close" after close() either, so busy keep-alive clients
// keep their connections until the process exits under them. The drain
// instead tells each client, in the response to the last request it sent,
// that the connection closes, and closes only connections that have been
// idle for the whole grace period, or that become idle after it.

// graceMs is how long idle keep-alive connections stay open after the
// drain starts: a busy client sends its next request well within it and
// gets "Connection: close" with the answer. It is httpworker's default.
const graceMs = 1000;

// Properties the drain sets on Node's objects.
const kShared = Symbol('corral.shared');       // server: listens on an inherited socket
const kWatched = Symbol('corral.watched');     // server: has the drain's listeners
const kDraining = Symbol('corral.draining');   // server: its drain has started
const kPastGrace = Symbol('corral.pastGrace'); // server: its grace period is over
const kIdleCheck = Symbol('corral.idleCheck'); // server: closeIdleConnections is queued
const kStopped = Symbol('corral.stopped');     // server: the drain stopped it accepting
const kAppClosed = Symbol('corral.appClosed'); // server: the app has called close()
const kClosed = Symbol('corral.closed');       // server: 'close' has been emitted
const kLast = Symbol('corral.lastResponse');   // socket: response to its last request
const kWanted = Symbol('corral.keptAlive');    // response: the client asked for keep-alive

// servers are the HTTP servers that listen, or listened and still have
// connections: each leaves the set at its 'close' event.
const servers = new Set();

// stopping is what started the process' drain, or '' before it starts.
let stopping = '';

// drainOn reports whether the drain is on: the preload is active and
// CORRAL_NODE_DRAIN is not "off".
let drainOn = false;

// netClose is net.Server's close: stop accepting, call back when every
// connection is gone, without http.Server's closing of idle connections.
const netClose = net.Server.prototype.close;

// watchServer has the drain follow server from its 'listening' event on,
// if it is an HTTP server (http, https, Express's app.listen).
function watchServer(server) {
  if (!drainOn || server[kWatched] || typeof server.closeIdleConnections !== 'function') return;
  server[kWatched] = true;
  patchClose(server);
  server.on('listening', () => {
    servers.add(server);
    server[kClosed] = server[kStopped] = server[kAppClosed] = false;
    server[kDraining] = server[kPastGrace] = false;
    if (stopping) drainServer(server, true);
  });
  server.on('close', () => {
    servers.delete(server);
    server[kClosed] = true;
    clearChecks(server);
  });
}

// patchClose makes drainingClose the close method of http.Server, or of
// https.Server for a TLS server, once. (https.Server has a close of its
// own; https is loaded only if the app uses it.)
function patchClose(server) {
  const http = require('http');
  let p = http.Server.prototype;
  if (!(server instanceof http.Server)) {
    if (!(server instanceof require('tls').Server)) return;
    p = require('https').Server.prototype;
  }
  if (p.close !== drainingClose) p.close = drainingClose;
}

// drainingClose is close() for HTTP servers while the preload runs: it
// stops accepting at once, drains the server's connections, and calls cb
// when they are all gone, as net.Server's close does. If the drain has
// already stopped the server, the app's first close() still succeeds.
function drainingClose(cb) {
  if (this.listening) drainServer(this, false);
  if (this[kStopped] && !this[kAppClosed]) {
    this[kAppClosed] = true;
    if (typeof cb === 'function') {
      if (this[kClosed]) process.nextTick(cb);
      else this.once('close', () => cb());
    }
    return this;
  }
  this[kAppClosed] = true;
  netClose.apply(this, arguments);
  return this;
}

// clearChecks stops the server's timer that enforces request timeouts,
// which Node's close() stops and the drain leaves running until 'close'.
function clearChecks(server) {
  for (const sym of Object.getOwnPropertySymbols(server)) {
    if (sym.description === 'http.server.connectionsCheckingInterval') clearInterval(server[sym]);
  }
}

// drainServer starts the drain of one server: its responses carry
// "Connection: close" from now on, and after graceMs its idle connections
// are closed. With stop, a server on an inherited socket stops accepting.
function drainServer(server, stop) {
  if (stop && server[kShared] && server.listening) {
    server[kStopped] = true;
    netClose.call(server);
  }
  if (server[kDraining]) return;
  server[kDraining] = true;
  watchRequests();
  markInFlight(server);
  const grace = setTimeout(() => {
    server[kPastGrace] = true;
    server.closeIdleConnections();
  }, graceMs);
  grace.unref();
  server.once('close', () => clearTimeout(grace));
}

// markInFlight makes the responses the server is preparing when its drain
// starts close their connections, as later ones do, when they answer the
// last request read on their connection and have not sent their headers.
// Node lists a server's connections under a symbol of its own; where it
// does not, these connections close once idle after the grace period.
function markInFlight(server) {
  const sym = Object.getOwnPropertySymbols(server).find((s) => s.description === 'http.server.connections');
  const list = sym && server[sym];
  if (!list || typeof list.all !== 'function') return;
  for (const { socket } of list.all()) {
    const res = socket && socket._httpMessage;
    if (res && res.shouldKeepAlive && !res.headersSent && socket.parser && res.req === socket.parser.incoming) {
      res.shouldKeepAlive = false;
      res[kWanted] = true;
      socket[kLast] = res;
    }
  }
}

let watching = false;

// watchRequests subscribes to Node's diagnostics channels for HTTP
// servers, once: the drain needs them only from its start.
function watchRequests() {
  if (watching) return;
  watching = true;
  const dc = require('diagnostics_channel');
  const subscribe = dc.subscribe || ((name, fn) => dc.channel(name).subscribe(fn));
  subscribe('http.server.request.start', onRequest);
  subscribe('http.server.response.finish', onResponseFinish);
}

// onRequest answers every request of a draining server with "Connection:
// close", except that of pipelined requests only the last one read so far
// closes the connection: the earlier ones keep it open for the later ones,
// which Node would otherwise never answer.
function onRequest({ response, socket, server }) {
  if (!(server[kDraining] || stopping) || !response.shouldKeepAlive) return;
  response.shouldKeepAlive = false;
  response[kWanted] = true;
  const prev = socket[kLast];
  if (prev && prev[kWanted] && !prev.headersSent && !prev.writableEnded) prev.shouldKeepAlive = true;
  socket[kLast] = response;
}

// onResponseFinish closes a connection that is idle after a response sent
// once the grace period is over, as a keep-alive response begun before the
// drain leaves it. Node makes the connection idle after this message, so
// the check waits a tick.
function onResponseFinish({ server }) {
  if (!server[kPastGrace] || server[kIdleCheck]) return;
  server[kIdleCheck] = true;
  process.nextTick(() => {
    server[kIdleCheck] = false;
    server.closeIdleConnections();
  });
}

// startDrain drains every server and stops every shared dgram socket
// reading, once; why is what started it.
function startDrain(why) {
  if (stopping) return;
  stopping = why;
  for (const s of servers) drainServer(s, true);
  for (const d of dgramSockets) stopReading(d);
}

// setupDrain starts the drain on the 'shutdown' message and on SIGTERM and
// SIGINT. The listeners are the process' first, so the drain has begun
// when the app's own listeners run. An app that has no listener for the
// signal would have died of it: the preload stops its servers, waits for
// their connections, then lets the signal kill it; a second signal kills
// it at once.
function setupDrain() {
  if (process.channel) {
    const onMessage = (m) => { if (m === 'shutdown') startDrain('shutdown'); };
    process.on('message', onMessage);
    // Node keeps the IPC channel referenced, and so the process alive,
    // while 'message' listeners exist: it counts them through its own
    // 'newListener' and 'removeListener' listeners. Tell it this one is
    // gone so that only the app's own listeners count.
    process.emit('removeListener', 'message', onMessage);
  }
  for (const sig of ['SIGTERM', 'SIGINT']) {
    let dying = false;
    const onSignal = () => {
      const appHandles = process.listenerCount(sig) > 1;
      startDrain(sig);
      if (appHandles) return;
      if (dying) return die(sig, onSignal);
      dying = true;
      dieWhenDrained(sig, onSignal);
    };
    process.on(sig, onSignal);
  }
}

// dieWhenDrained stops every HTTP server, the app's own included, and
// kills the process with sig once their connections are gone and the
// shared dgram sockets have sent what they owe (see whenSent), or at once
// when nothing is left for the event loop to do.
function dieWhenDrained(sig, listener) {
  let left = 1; // this function's own, released below
  const done = () => { if (--left === 0) die(sig, listener); };
  for (const s of servers) {
    drainServer(s, false);
    if (s.listening) {
      s[kStopped] = true;
      netClose.call(s);
    }
    left++;
    s.once('close', done);
  }
  for (const d of dgramSockets) {
    left++;
    whenSent(d, done);
  }
  process.once('beforeExit', () => die(sig, listener));
  done();
}

let died = false;

// die kills the process with sig, as Node would have without the preload.
function die(sig, listener) {
  if (died) return;
  died = true;
  process.removeListener(sig, listener);
  process.kill(process.pid, sig);
}

// listen replaces net.Server's listen while the preload is active.
function listen(...args) {
  const t = this.listening ? null : target(args);
  const s = t && match(t);
  if (!s) {
    const fd = claimHandle(args);
    if (inherited.some((i) => i.fd === fd)) this[kShared] = true;
    watchServer(this);
    return nodeListen.apply(this, args);
  }
  claimed.add(s.fd);
  const rest = t.cb ? [t.backlog || kernelMaxBacklog, t.cb] : [t.backlog || kernelMaxBacklog];
  this[kShared] = true;
  watchServer(this);
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
}


// Datagram sockets. dgram's bind({fd}) adopts an inherited UDP socket, and
// the kernel hands each datagram to one of the workers that read it, so a
// bind(port) that matches one becomes bind({fd}), as listen(port) becomes
// listen({fd}). On the drain such a socket stops reading: what is queued
// stays for the other workers, and what this worker has read it has
// already handed to the app ('message' events), whose replies still go
// out. Node's dgram has no public way to stop reading: the preload calls
// recvStop on the socket's handle, which Node keeps under a symbol.

const dgram = require('dgram');
const nodeBind = dgram.Socket.prototype.bind;
const nodeSend = dgram.Socket.prototype.send;

// dgramSockets are the dgram sockets on inherited descriptors, until they
// close.
const dgramSockets = new Set();

const kInFlight = Symbol('corral.inFlight'); // dgram socket: sends not called back yet
const kQuiet = Symbol('corral.quiet');       // dgram socket: whenSent's timer
const kSent = Symbol('corral.sent');         // dgram socket: whenSent's callback

// bindTarget returns the port a bind call asks for (a number from 1 to
// 65535, or a name string that is not a number), and its callback; null
// for a bind to port 0, to a handle or an fd, or with no port.
function bindTarget(args) {
  const last = args[args.length - 1];
  const cb = typeof last === 'function' ? last : null;
  let port = args[0];
  if (port !== null && typeof port === 'object') {
    if ('fd' in port || typeof port.recvStart === 'function') return null;
    port = port.port;
  }
  if (typeof port === 'string' && port.trim() !== '' && !/^\s*\d+\s*$/.test(port)) return { name: port, cb };
  const n = Number(port);
  if ((typeof port !== 'number' && typeof port !== 'string') || !Number.isInteger(n) || n < 1 || n > 65535) return null;
  return { port: n, name: String(n), cb };
}

// matchUDP returns the unclaimed inherited UDP socket that t asks for, for
// a dgram socket of type ('udp4' or 'udp6'), or undefined.
function matchUDP(t, type) {
  locate();
  const free = inherited.filter((s) => !claimed.has(s.fd) && (s.kind === '' || s.kind === 'udp'));
  const byName = free.find((s) => s.name === t.name);
  if (byName || !t.port) return byName;
  const onPort = free.filter((s) => s.kind === 'udp' && s.port === t.port);
  if (type === 'udp6') return onPort.find((s) => s.family === 6);
  return onPort.find((s) => s.family === 4) || onPort.find((s) => s.family === 6 && s.wildcard);
}

// dgramState returns Node's internal state of a dgram socket, or undefined.
function dgramState(sock) {
  const sym = Object.getOwnPropertySymbols(sock).find((x) => x.description === 'state symbol');
  return sym && sock[sym];
}

// bind replaces dgram.Socket's bind while the preload is active.
function bind(...args) {
  const t = bindTarget(args);
  const s = t && matchUDP(t, this.type);
  if (!s) {
    const o = args[0];
    const fd = o !== null && typeof o === 'object' && typeof o.fd === 'number' ? o.fd : -1;
    const r = nodeBind.apply(this, args);
    if (inherited.some((i) => i.fd === fd)) {
      claimed.add(fd);
      share(this);
    }
    return r;
  }
  claimed.add(s.fd);
  // bind({fd}) emits 'listening' before it returns, where bind(port) emits
  // it a tick later: an app that listens for the event after bind() must
  // still hear it.
  let listened = false;
  this.emit = function emit(event, ...rest) {
    if (event === 'listening') {
      listened = true;
      return true;
    }
    return Object.getPrototypeOf(this).emit.call(this, event, ...rest);
  };
  try {
    nodeBind.call(this, { fd: s.fd }, ...(t.cb ? [t.cb] : []));
  } catch (err) {
    claimed.delete(s.fd);
    throw err;
  } finally {
    delete this.emit;
  }
  if (s.family !== 0 && s.family !== (this.type === 'udp6' ? 6 : 4)) adaptFamily(this, s.family);
  share(this);
  if (listened) process.nextTick(() => this.emit('listening'));
  return this;
}

// share has the drain follow a dgram socket on an inherited descriptor.
function share(sock) {
  if (!drainOn) return;
  sock[kShared] = true;
  sock[kInFlight] = 0;
  dgramSockets.add(sock);
  sock.once('close', () => {
    dgramSockets.delete(sock);
    clearTimeout(sock[kQuiet]);
    if (sock[kSent]) sock[kSent]();
  });
  if (stopping) stopReading(sock);
}

// adaptFamily lets a dgram socket of one address family use an inherited
// socket of the other: a 'udp4' socket on an IPv6 socket (a dual-stack
// [::]:PORT, what ListenDatagram=PORT and --listen udp::PORT bind) sends
// to IPv4 addresses as IPv4-mapped IPv6 ones, and sees IPv4 senders as
// IPv4 ('127.0.0.1', family 'IPv4'), as it would on its own socket; a
// 'udp6' socket on an IPv4 one sends to IPv4-mapped addresses as IPv4.
function adaptFamily(sock, family) {
  const st = dgramState(sock);
  const h = st && st.handle;
  if (!h || typeof h.send6 !== 'function') return;
  const proto = Object.getPrototypeOf(h);
  const lookup = h.lookup;
  const v4 = /^(\d{1,3}\.){3}\d{1,3}$/;
  if (family === 6) {
    h.send = h.send6;
    h.connect = h.connect6;
    h.lookup = (address, cb) => lookup(address, (err, ip, ...rest) =>
      cb(err, !err && v4.test(ip) ? '::ffff:' + ip : ip, ...rest));
    const onmessage = h.onmessage;
    h.onmessage = function (nread, handle, buf, rinfo) {
      if (rinfo && rinfo.family === 'IPv6' && rinfo.address.startsWith('::ffff:') && v4.test(rinfo.address.slice(7))) {
        rinfo.address = rinfo.address.slice(7);
        rinfo.family = 'IPv4';
      }
      return onmessage.apply(this, arguments);
    };
  } else {
    h.send = proto.send;
    h.connect = proto.connect;
    h.lookup = (address, cb) => lookup(address, (err, ip, ...rest) =>
      cb(err, !err && typeof ip === 'string' && ip.startsWith('::ffff:') && v4.test(ip.slice(7)) ? ip.slice(7) : ip, ...rest));
  }
}

// send replaces dgram.Socket's send while the drain is on, to count the
// sends of shared sockets that have not called back yet. Every form of
// send takes a callback last, so one is added where the app gave none.
function send(...args) {
  if (!this[kShared]) return nodeSend.apply(this, args);
  while (args.length > 1 && args[args.length - 1] === undefined) args.pop();
  const cb = typeof args[args.length - 1] === 'function' ? args.pop() : null;
  const sock = this;
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    if (--sock[kInFlight] === 0 && sock[kSent]) armQuiet(sock);
  };
  sock[kInFlight]++;
  clearTimeout(sock[kQuiet]);
  args.push(function (...r) {
    finish();
    if (cb) return cb.apply(this, r);
  });
  try {
    return nodeSend.apply(this, args);
  } catch (err) {
    finish();
    throw err;
  }
}

// stopReading stops a shared dgram socket reading, so that the datagrams
// queued in the socket go to the other workers, and unreferences it: an
// app that has nothing else to do exits once its replies are sent.
function stopReading(sock) {
  const st = dgramState(sock);
  if (st && st.handle && st.receiving) {
    st.handle.recvStop();
    st.receiving = false;
  }
  sock.unref();
}

// whenSent calls cb once the socket has no send in flight and none has
// begun for graceMs: the replies the app owes for the datagrams it read
// are out, even those it sends after some work of its own. An app with
// nothing else to do exits sooner (dieWhenDrained's 'beforeExit').
function whenSent(sock, cb) {
  let called = false;
  sock[kSent] = () => {
    if (called) return;
    called = true;
    clearTimeout(sock[kQuiet]);
    cb();
  };
  if (sock[kInFlight] === 0) armQuiet(sock);
}

function armQuiet(sock) {
  clearTimeout(sock[kQuiet]);
  sock[kQuiet] = setTimeout(() => sock[kSent](), graceMs);
  sock[kQuiet].unref();
}

if (inherited.length > 0) {
  net.Server.prototype.listen = listen;
  dgram.Socket.prototype.bind = bind;
  drainOn = process.env.CORRAL_NODE_DRAIN !== 'off';
  if (drainOn) {
    dgram.Socket.prototype.send = send;
    setupDrain();
  }
}
