// A Node app written the way PM2's docs teach, which runs unchanged under
// corral: listen(PORT), then process.send('ready'); on the 'shutdown'
// message (or SIGINT, PM2's stop signal) close the server and exit once it
// has closed. Under corral, listen(PORT) takes the inherited socket, and
// the drain that keeps keep-alive clients from losing requests (answer with
// Connection: close, close idle connections only after a grace) is done by
// corral's preload: see node/README.md. The instance number is
// NODE_APP_INSTANCE.
//
//   corral run --listen 127.0.0.1:3000 -- node examples/pm2-app/app.js
//   PORT=3000 pm2 start examples/pm2-app/app.js -i 2 --wait-ready
'use strict';
const http = require('http');

const port = Number(process.env.PORT || 3000);

const server = http.createServer((req, res) => {
  res.end(`hello from instance ${process.env.NODE_APP_INSTANCE} (pid ${process.pid})\n`);
});

server.listen(port, () => {
  if (process.send) process.send('ready');
});

function shutdown() {
  server.close(() => process.exit(0));
}

process.on('message', (msg) => { if (msg === 'shutdown') shutdown(); });
process.on('SIGINT', shutdown);
