// The documents of bench/backend.mjs, shared with bench/compare.mjs so the comparator is timed on
// the very bodies the proxy compares in the load runs.
//
// `legacy` and `new` differ in a few fields on purpose (a value, a type, an extra and a missing
// field, an array order, a noise field that changes on every response); `padTo` adds order lines,
// identical in both flavours, up to about that many bytes. meta.requestId is the placeholder
// '\u0000RID\u0000', replaced per answer.

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

export function itemDocument(id, flavor, padTo = 0) {
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
  return doc;
}
