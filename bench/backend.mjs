// A fast JSON backend for the benchmark, run in its own process (forked by bench/run.mjs).
//
//   node bench/backend.mjs --flavor legacy|new [--delay ms] [--port n] [--size bytes]
//                          [--fault big|reset|hang|garbage]
//
// GET /items/:id answers a 2–5 KB JSON document. The `legacy` and `new` flavours differ in a few
// fields on purpose (a value, a type, an extra and a missing field, an array order, a noise field that
// changes on every response) so a comparing proxy has real mismatches to find. Bodies are built once
// per id and cached: the backend should cost as little CPU as possible, because it shares two cores
// with the proxy under test and the load generator. `--delay` holds every answer back (the `slow`
// variant). Once listening it sends { type: 'ready', port } over IPC, and it exits when the parent
// goes away (IPC disconnect), so it can never outlive the run.
//
// `--size` pads each document (an array of order lines) to about that many bytes, for the 1 MB rows.
// `--fault` makes a broken mirror target: `big` answers 10 MB, `reset` sends headers and a few bytes
// then resets the connection, `hang` never answers, `garbage` is not HTTP at all (bytes, then close).
import http from 'node:http';
import net from 'node:net';
import { parseArgs } from 'node:util';
import { itemDocument } from './lib/item-doc.mjs';

const { values: args } = parseArgs({
  options: {
    flavor: { type: 'string', default: 'legacy' },
    delay: { type: 'string', default: '0' },
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    size: { type: 'string', default: '0' },
    fault: { type: 'string', default: '' },
  },
});
const padTo = Number(args.size) || 0;
const fault = args.fault;
const flavor = args.flavor === 'new' ? 'new' : 'legacy';
const delayMs = Number(args.delay) || 0;

function item(id) {
  // Split around the request-id placeholder once; each answer is then the two halves around its id.
  const [head, tail] = JSON.stringify(itemDocument(id, flavor, padTo)).split('\\u0000RID\\u0000');
  // Small answers are one string joined per answer (Node sends headers and body in one write); big
  // ones are encoded once and sent as the stored Buffers, never a 1 MB string to join, measure and
  // encode again per answer (that cost more than the proxy under test).
  return head.length + tail.length < 65_536 ? { head, tail } : { head: Buffer.from(head), tail: Buffer.from(tail) };
}

const cache = new Map();
function bodyFor(id) {
  let parts = cache.get(id);
  if (!parts) {
    if (cache.size >= 10_000) cache.clear(); // bounded: the bench only uses a handful of ids
    parts = item(id);
    cache.set(id, parts);
  }
  return parts;
}

let served = 0;
const NOT_FOUND = JSON.stringify({ error: 'not_found' });

function answer(req, res) {
  const m = /^\/items\/(\d{1,9})(?:\?|$)/.exec(req.url);
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 });
    res.end('ok');
    return;
  }
  if (!m || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(404, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(NOT_FOUND) });
    res.end(NOT_FOUND);
    return;
  }
  served++;
  const { head, tail } = bodyFor(Number(m[1]));
  const id = `${flavor}-${process.pid}-${served}`;
  if (typeof head === 'string') {
    const body = `${head}${id}${tail}`;
    res.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      'cache-control': 'no-store',
      'x-backend': flavor,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': head.length + Buffer.byteLength(id) + tail.length,
    'cache-control': 'no-store',
    'x-backend': flavor,
  });
  if (req.method === 'HEAD') res.end();
  else {
    // Big bodies go out as the stored halves themselves (one writev), not a fresh copy per answer.
    res.cork();
    res.write(head);
    res.write(id);
    res.end(tail);
    res.uncork();
  }
}

const BIG = Buffer.alloc(10 * 1024 * 1024, 'x');

function faulty(req, res) {
  if (req.url === '/healthz') return answer(req, res);
  if (fault === 'big') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': BIG.length });
    res.end(BIG);
  } else if (fault === 'reset') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': 4096 });
    res.write('{"id": 1, "na');
    setImmediate(() => res.socket?.resetAndDestroy?.() ?? res.socket?.destroy());
  }
  // hang: never answers (the socket stays open until the proxy gives up)
}

const handler = fault ? faulty : delayMs > 0 ? (req, res) => setTimeout(answer, delayMs, req, res) : answer;
const server =
  fault === 'garbage'
    ? net.createServer((socket) => {
        socket.on('error', () => undefined);
        socket.end('\u0000\u00ffSSH-2.0-not-http\r\n\r\ngarbage');
      })
    : http.createServer(handler);
server.listen(Number(args.port), args.host, () => {
  const { port } = server.address();
  if (process.send) process.send({ type: 'ready', port });
  else console.log(`backend ${flavor} listening on http://${args.host}:${port} (delay ${delayMs} ms)`);
});

const shutdown = () => {
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
};
process.on('disconnect', shutdown);
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
