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
  // For a second, keep serving, answering with Connection: close, so that
  // keep-alive clients move to another worker after their response. Then
  // stop accepting and close what is idle (Node >= 19 does both in
  // close()), and exit once every connection has closed.
  setTimeout(() => server.close(() => process.exit(0)), 1000);
}

process.on('message', (msg) => { if (msg === 'shutdown') shutdown(); });
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
