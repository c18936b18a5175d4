// A fast JSON backend for the benchmark, run in its own process (forked by bench/run.mjs).
//
//   node bench/backend.mjs --flavor legacy|new [--delay ms] [--port n]
//
// GET /items/:id answers a 2–5 KB JSON document. The `legacy` and `new` flavours differ in a few
// fields on purpose (a value, a type, an extra and a missing field, an array order, a noise field that
// changes on every response) so a comparing proxy has real mismatches to find. Bodies are built once
// per id and cached: the backend should cost as little CPU as possible, because it shares two cores
// with the proxy under test and the load generator. `--delay` holds every answer back (the `slow`
// variant). Once listening it sends { type: 'ready', port } over IPC, and it exits when the parent
// goes away (IPC disconnect), so it can never outlive the run.
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    flavor: { type: 'string', default: 'legacy' },
    delay: { type: 'string', default: '0' },
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
  },
});
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

const server = http.createServer(delayMs > 0 ? (req, res) => setTimeout(answer, delayMs, req, res) : answer);
// Longer than any proxy's idle pool timeout, so a proxy never writes into a socket we just closed.
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.requestTimeout = 0;

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
