// A Node app written the way PM2's docs teach, which runs unchanged under
// corral: listen(PORT), then process.send('ready'); on the 'shutdown'
// message (or SIGINT/SIGTERM) stop accepting, let open connections finish,
// and exit. Under corral, listen(PORT) takes the inherited socket through
// corral's preload, and the instance number is NODE_APP_INSTANCE.
//
//   corral run --listen 127.0.0.1:3000 -- node examples/pm2-app/app.js
//   PORT=3000 pm2 start examples/pm2-app/app.js -i 2 --wait-ready
'use strict';
const http = require('http');
const net = require('net');

const port = Number(process.env.PORT || 3000);
let draining = false;

const server = http.createServer((req, res) => {
  // While draining, tell keep-alive clients to reconnect (to another
  // worker) after this response, instead of closing their idle
  // connection under a request they may be sending.
  if (draining) res.setHeader('Connection', 'close');
  res.end(`hello from instance ${process.env.NODE_APP_INSTANCE} (pid ${process.pid})\n`);
});

server.listen(port, () => {
  if (process.send) process.send('ready');
});

function shutdown() {
  if (draining) return;
  draining = true;
  // Stop accepting at once (net.Server's close: the socket stays open in
  // the other workers), but unlike http.Server's close, which Node 19+
  // makes close idle keep-alive connections too, leave open connections
  // alone: for a second they get answers with Connection: close, so their
  // clients move to another worker after a response instead of having an
  // idle connection closed under a request. Then close what is still idle;
  // exit once every connection has closed.
  net.Server.prototype.close.call(server, () => process.exit(0));
  setTimeout(() => server.closeIdleConnections(), 1000).unref();
}

process.on('message', (msg) => { if (msg === 'shutdown') shutdown(); });
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
