// A UDP echo server written as Node's dgram docs write one, with nothing
// for corral: no shutdown handler, no process.send. Under corral it runs
// unchanged on a socket every worker shares:
//
//   corral run -i 2 --listen udp:127.0.0.1:41234 -- node examples/dgram-app/app.js
//   echo hi | nc -u -q1 127.0.0.1 41234    # hi from worker 0 (pid 4242, generation 1)
//
// corral's preload makes server.bind(PORT) take the inherited socket bound
// to that port; the worker counts as online once it reads from it (Node's
// default, ready = "auto"); and on a reload the preload drains it: it
// stops reading, so that the datagrams it has not read go to the other
// workers, sends the answers it owes, and exits.
'use strict';
const dgram = require('dgram');

const server = dgram.createSocket('udp4');
const who = `worker ${process.env.NODE_APP_INSTANCE} (pid ${process.pid}, generation ${process.env.CORRAL_GENERATION})`;

server.on('error', (err) => {
  console.error(`server error:\n${err.stack}`);
  server.close();
});

server.on('message', (msg, rinfo) => {
  server.send(`${String(msg).trimEnd()} from ${who}`, rinfo.port, rinfo.address);
});

server.on('listening', () => {
  const address = server.address();
  console.log(`server listening ${address.address}:${address.port}`);
});

if (process.env.BROKEN_RELEASE) throw new Error('a broken release: BROKEN_RELEASE is set');
server.bind(Number(process.env.PORT) || 41234);
