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

const WAREHOUSES = ['AMS-1', 'FRA-2', 'LHR-1', 'CDG-3', 'MAD-1', 'WAW-2', 'ARN-1', 'DUB-1'];
const WORDS = 'sturdy compact weatherproof modular steel housing rated for outdoor use with a replaceable seal kit and a five year warranty'.split(' ');

/** Deterministic pseudo-random numbers, so both flavours describe the same item. */
function rng(seed) {
  let x = (seed * 2654435761) >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 0x100000000;
  };
}

function item(id) {
  const rand = rng(id);
  const words = (n) => Array.from({ length: n }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(' ');
  const price = Math.round((5 + rand() * 500) * 100) / 100;
  const tags = ['hardware', 'outdoor', 'b2b', `batch-${id % 7}`];
  const doc = {
    id,
    sku: `SKU-${String(id).padStart(6, '0')}`,
    name: `Widget ${words(3)}`,
    description: words(90),
    price,
    currency: 'EUR',
    status: id % 5 === 0 ? 'discontinued' : 'active',
    tags,
    dimensions: { widthMm: Math.round(rand() * 900), heightMm: Math.round(rand() * 900), depthMm: Math.round(rand() * 400), weightG: Math.round(rand() * 20_000) },
    stock: WAREHOUSES.map((warehouse) => ({ warehouse, quantity: Math.floor(rand() * 1000), reserved: Math.floor(rand() * 50), restockDate: '2025-07-01' })),
    variants: Array.from({ length: 6 }, (_, i) => ({ code: `V${i}`, color: ['black', 'white', 'grey', 'red', 'blue', 'green'][i], priceDelta: Math.round(rand() * 2000) / 100, available: rand() > 0.2 })),
    attributes: Object.fromEntries(['material', 'finish', 'ipRating', 'voltage', 'origin', 'hsCode', 'batch', 'certification'].map((k) => [k, words(2)])),
    supplier: { id: 1000 + (id % 40), name: `Supplier ${id % 40}`, country: 'NL', contact: { email: `orders${id % 40}@supplier.example`, phone: '+31 20 555 0100' } },
    links: { self: `/items/${id}`, legacyHref: `/cgi-bin/item.pl?id=${id}`, images: [`/img/${id}/front.jpg`, `/img/${id}/side.jpg`] },
    updatedAt: '2025-06-01T12:00:00Z',
    meta: { servedBy: 'legacy-1', requestId: '\u0000RID\u0000' },
  };
  if (padTo > 0) {
    // Order lines, identical in both flavours: a big document that mostly matches, like real ones.
    const lines = [];
    let bytes = 0;
    for (let i = 0; bytes < padTo; i++) {
      const line = { line: i, sku: `SKU-${String((id * 31 + i) % 999_999).padStart(6, '0')}`, qty: 1 + (i % 9), unitPrice: Math.round(rand() * 10_000) / 100, note: words(4) };
      bytes += JSON.stringify(line).length + 1;
      lines.push(line);
    }
    doc.lines = lines;
  }
  if (flavor === 'new') {
    doc.price = doc.price.toFixed(2); // type: number → string
    doc.status = doc.status.toUpperCase(); // value
    doc.tags = [...tags].reverse(); // order
    doc.schemaVersion = 2; // extra
    delete doc.links.legacyHref; // missing
    doc.updatedAt = '2025-06-01T12:00:00.000Z'; // value (format)
    doc.meta.servedBy = 'new-1';
  }
  // Split around the request-id placeholder once; each answer is then two string concatenations.
  const [head, tail] = JSON.stringify(doc).split('\\u0000RID\\u0000');
  return { head, tail };
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
  const body = `${head}${flavor}-${process.pid}-${served}${tail}`;
  res.writeHead(200, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-backend': flavor,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
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
