// The baseline: http-proxy 1.18 as people deploy it, in its own process (forked by bench/run.mjs).
//
//   node bench/http-proxy-server.mjs --target http://127.0.0.1:PORT [--port n]
//
// Set up fairly: a keep-alive agent toward the backend (http-proxy's default is a new connection per
// request, which would make any proxy look fast next to it), a pool cap equal to cutover's default
// backend pool (256), and X-Forwarded-* headers on (cutover adds them too). Upstream failures answer
// 502 rather than crashing the process. Sends { type: 'ready', port } over IPC once listening and
// exits when the parent goes away.
import http from 'node:http';
import { parseArgs } from 'node:util';
import httpProxy from 'http-proxy';

const { values: args } = parseArgs({
  options: {
    target: { type: 'string' },
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    'max-sockets': { type: 'string', default: '256' },
  },
});
if (!args.target) {
  console.error('usage: http-proxy-server.mjs --target URL [--port n]');
  process.exit(2);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: Number(args['max-sockets']), keepAliveMsecs: 1000 });
const proxy = httpProxy.createProxyServer({ target: args.target, agent, xfwd: true });
proxy.on('error', (err, req, res) => {
  if (res && typeof res.writeHead === 'function' && !res.headersSent) {
    res.writeHead(502, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'bad_gateway', detail: err.code ?? err.message }));
  } else {
    res?.destroy?.();
  }
});

const server = http.createServer((req, res) => proxy.web(req, res));
server.keepAliveTimeout = 72_000; // same as cutover's listen.keepAliveTimeout default
server.headersTimeout = 73_000;

server.listen(Number(args.port), args.host, () => {
  const { port } = server.address();
  if (process.send) process.send({ type: 'ready', port });
  else console.log(`http-proxy listening on http://${args.host}:${port} → ${args.target}`);
});

const shutdown = () => {
  server.close();
  server.closeAllConnections?.();
  agent.destroy();
  process.exit(0);
};
process.on('disconnect', shutdown);
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
