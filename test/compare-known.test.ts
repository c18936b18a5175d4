/**
 * Big values already read (compare/known.ts) only save time: with or without them, the lockstep
 * plan (windows and offsets) and every Comparison must be exactly the same, whatever the value
 * turns into, wherever it is met, and however deep. These tests hold that over kept values that
 * come back unchanged, changed in one byte (valid or not), shorter, longer, deeper, and near the
 * size bound; and check the store's own bounds.
 */
import { describe, expect, it } from 'vitest';
import { BUILTIN_COMPARE } from '../src/config/load.js';
import { compareResponses, compileRules, KnownSpans, type Captured, type Comparison } from '../src/compare/index.js';
import { KNOWN_MIN_BYTES, STALE_LOOKUPS } from '../src/compare/known.js';
import { planLockstep } from '../src/compare/lockstep.js';
import { prng } from '../src/demo/backends.js';

const ctx = { route: 'r', method: 'GET', path: '/x' };
const rules = compileRules({ ...BUILTIN_COMPARE, ignore: ['$.meta.requestId'] });

function cap(text: string): Captured {
  return { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(text), truncated: false };
}

function compare(a: string, b: string, known?: KnownSpans): Comparison {
  return compareResponses(cap(a), cap(b), rules, ctx, known && { known });
}

/** A big value (an array of order lines, ~90 KB), the same for the same seed; its length depends on n only. */
function lines(seed: number, n = 900): string {
  const r = prng(seed);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const sku = String(Math.floor(r() * 1e6)).padStart(6, '0');
    out.push(JSON.stringify({ line: i, sku: `SKU-${sku}`, qty: 1 + (i % 9), unitPriceCents: 10000 + Math.floor(r() * 90000), note: 'sturdy steel housing', ok: r() > 0.5 ? 1 : 0 }));
  }
  return `[${out.join(',')}]`;
}

/** Legacy and new answers around a shared value: a noisy request id, a changed field, and the value. */
function pairAround(value: string, k: number, shape = (v: string, id: string, price: string) => `{"meta":{"requestId":"${id}"},"price":${price},"lines":${v},"v":1}`): [string, string] {
  return [shape(value, `req-a${k}`, '10'), shape(value, `req-b${k}`, '"10.00"')];
}

const plan = (a: string, b: string, known?: KnownSpans): unknown => planLockstep(Buffer.from(a), Buffer.from(b), known);

describe('big values already read (KnownSpans)', () => {
  it('keeps a big value the second time it is read, recognises it from then on, and answers as without it', () => {
    const known = new KnownSpans(16 * 1024 * 1024);
    const value = lines(1);
    expect(value.length).toBeGreaterThan(KNOWN_MIN_BYTES);
    for (let k = 0; k < 5; k++) {
      const [a, b] = pairAround(value, k);
      const got = compare(a, b, known);
      expect(got).toEqual(compare(a, b));
      expect(got.differences.map((d) => d.path)).toEqual(['$.price']);
      expect(plan(a, b, known)).toEqual(plan(a, b));
    }
    const s = known.stats();
    // First read: a sighting only. Second: kept. From then on (comparisons and plans): recognised.
    expect(s.entries).toBe(1);
    expect(s.bytes).toBe(Buffer.byteLength(value));
    expect(s.hits).toBeGreaterThanOrEqual(6);
  });

  it('reads a kept value again when it comes back changed anywhere, to the answer it gives without one', () => {
    const value = lines(2, 700);
    const known = new KnownSpans(16 * 1024 * 1024);
    for (let k = 0; k < 2; k++) compare(...pairAround(value, k), known);
    expect(known.stats().entries).toBe(1);
    const r = prng(20261129);
    const EDITS = ['', '"', '\\', ',', ':', '[', ']', '{', '}', '0', '-', '.', 'e', '+', '\u0001', ' ', 'x', 't', '1', '9007199254740993', '{"a":1}'];
    let invalid = 0;
    let taken = 0;
    for (let i = 0; i < 400; i++) {
      // Anywhere: the first and last bytes too, where a lookup checks before it compares.
      const at = i < 4 ? [0, 1, value.length - 1, value.length][i] : Math.floor(r() * (value.length + 1));
      const changed = value.slice(0, at) + EDITS[Math.floor(r() * EDITS.length)] + value.slice(at + (r() < 0.5 ? 1 : 0));
      if (changed === value) continue;
      try {
        JSON.parse(changed);
      } catch {
        invalid++;
      }
      const [a, b] = pairAround(changed, i);
      const want = plan(a, b);
      expect(plan(a, b, known)).toEqual(want);
      if (want !== undefined) taken++;
      expect(compare(a, b, known)).toEqual(compare(a, b));
    }
    expect(invalid).toBeGreaterThan(100);
    expect(taken).toBeGreaterThan(50);
    // Bodies that end inside the value: a lookup must not compare past their end.
    for (const cut of [1, 2, 100, value.length - 10]) {
      const [a, b] = pairAround(value, cut, (v, id, p) => `{"meta":{"requestId":"${id}"},"price":${p},"lines":${v.slice(0, -cut)}`);
      expect(plan(a, b, known)).toEqual(plan(a, b));
      expect(compare(a, b, known)).toEqual(compare(a, b));
    }
    // The original still counts as known, and the edits hit nothing.
    const hits = known.stats().hits;
    compare(...pairAround(value, 9), known);
    expect(known.stats().hits).toBeGreaterThan(hits);
  });

  it('is recognised wherever it is met, as a window, after one, or among root members, with the same plan', () => {
    const value = lines(3);
    const shapes: ((v: string, id: string, price: string) => string)[] = [
      (v, id, p) => `{"meta":{"requestId":"${id}"},"price":${p},"lines":${v},"v":1}`,
      (v, id, p) => `{"price":${p},"doc":{"lines":${v},"meta":{"requestId":"${id}"}}}`,
      (v, id, p) => `{"doc":{"meta":{"requestId":"${id}","price":${p}},"rest":{"lines":${v}}}}`,
      (v, id, p) => `[{"requestId":"${id}"},${v},{"price":${p}}]`,
      (v, id, p) => `{"a":${p},"lines":${v},"b":"${id}","more":${v}}`,
      (v, id, p) => `{"lines":${v},"meta":{"requestId":"${id}"},"price":${p}}`,
    ];
    const known = new KnownSpans(16 * 1024 * 1024);
    for (const shape of shapes) {
      for (let k = 0; k < 3; k++) {
        const [a, b] = pairAround(value, k, shape);
        expect(plan(a, b, known)).toEqual(plan(a, b));
        expect(compare(a, b, known)).toEqual(compare(a, b));
      }
    }
    expect(known.stats().hits).toBeGreaterThan(shapes.length);
  });

  it('is not recognised where it would nest deeper than the scan goes (it is read, and refused, as without)', () => {
    // Big enough to keep, with 59 levels inside its own bracket that come after the point where a
    // value is looked up (a read refuses a too-deep value before that otherwise).
    const value = `["${'x'.repeat(KNOWN_MIN_BYTES)}",${'['.repeat(59)}${']'.repeat(59)}]`;
    const known = new KnownSpans(16 * 1024 * 1024);
    // The differences lie in `meta`, inside `depth` objects that are therefore read (not skipped
    // whole), so the value after it is met on its own, `depth` levels further down each time.
    const at = (depth: number) => (v: string, id: string, p: string) => `{"w":${'{"d":'.repeat(depth)}{"meta":{"requestId":"${id}","p":${p}},"v":${v}}${'}'.repeat(depth)}}`;
    for (let k = 0; k < 3; k++) compare(...pairAround(value, k, at(0)), known);
    expect(known.stats().entries).toBe(1);
    let refused = 0;
    for (let depth = 0; depth <= 8; depth++) {
      const [a, b] = pairAround(value, depth, at(depth));
      const want = plan(a, b);
      if (want === undefined) refused++;
      expect(plan(a, b, known)).toEqual(want);
      expect(compare(a, b, known)).toEqual(compare(a, b));
    }
    // Both sides of the bound were met: shallow enough to be taken, and too deep.
    expect(refused).toBeGreaterThan(0);
    expect(refused).toBeLessThan(9);
  });

  it('keeps nothing read only once, nothing past its bound, and makes room only from values gone stale', () => {
    const one = lines(4);
    const bytes = Buffer.byteLength(one);
    // Room for two values of this size.
    const known = new KnownSpans(bytes * 2 + 10);
    compare(...pairAround(one, 0), known);
    expect(known.stats().entries).toBe(0);
    // Four values in turn, each read twice: two are kept and stay (neither is stale).
    const values = [4, 5, 6, 7].map((s) => lines(s));
    for (let round = 0; round < 3; round++) for (const v of values) compare(...pairAround(v, round), known);
    let s = known.stats();
    expect(s.entries).toBe(2);
    expect(s.bytes).toBeLessThanOrEqual(bytes * 2 + 10);
    const hitsBefore = s.hits;
    for (const v of values.slice(0, 2)) compare(...pairAround(v, 7), known);
    expect(known.stats().hits).toBe(hitsBefore + 2);
    // Once the kept values go unused for STALE_LOOKUPS lookups, newcomers take their place.
    const fresh = [8, 9].map((s) => lines(s));
    for (let i = 0; i * 2 < STALE_LOOKUPS + 4; i++) for (const v of fresh) compare(...pairAround(v, i), known);
    s = known.stats();
    expect(s.entries).toBe(2);
    const hits = s.hits;
    for (const v of fresh) compare(...pairAround(v, 99), known);
    expect(known.stats().hits).toBe(hits + 2);
    // A value bigger than the whole bound is never kept.
    const small = new KnownSpans(KNOWN_MIN_BYTES);
    for (let k = 0; k < 3; k++) compare(...pairAround(one, k), small);
    expect(small.stats()).toMatchObject({ entries: 0, bytes: 0 });
  });
});
