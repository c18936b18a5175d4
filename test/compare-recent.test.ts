/**
 * Recent pairs (compare/recent.ts) must give exactly the full path's answer: each request's pairs
 * come in a sequence, each pair an edit of the request's first one (a noisy field, a changed member,
 * now and then an edit anywhere), and every pair's Comparison with the kept pairs must equal the full
 * path's (identity transform), under every rule set. The kept pairs must also answer a good share
 * of them, or the equality proves nothing.
 */
import { describe, expect, it } from 'vitest';
import { MAX_DIFFERENCES, RecentPairs, compareResponses, type Captured, type CompiledRules } from '../src/compare/index.js';
import { prng } from '../src/demo/backends.js';
import { KEYS, RULE_SETS, cap, clone, fast, full, gen, mutate, rulesOf, write, type Node } from './helpers/json-docs.js';

type Obj = { t: 'obj'; entries: [string, Node][] };

/** Same answer, or the case that broke, in full. */
function agree(a: string, b: string, rules: CompiledRules, recent: RecentPairs, name: string): void {
  const got = fast(a, b, rules, { recent });
  const want = full(a, b, rules);
  if (JSON.stringify(got) !== JSON.stringify(want)) expect({ rules: name, a, b, got }).toEqual({ rules: name, a, b, got: want });
}

/** One edit inside root member `at`'s value (never its key), as a backend's noisy field would change. */
function editMember(root: Obj, at: number, r: () => number): void {
  const [key, value] = root.entries[at];
  const holder: Node = { t: 'obj', entries: [['v', value]] };
  if (r() < 0.5 || value.t === 'str' || value.t === 'num' || value.t === 'lit') {
    root.entries[at] = [key, r() < 0.5 ? { t: 'str', v: `req-${Math.floor(r() * 1e6)}` } : gen(r, 2)];
    return;
  }
  mutate(holder, r);
  root.entries[at] = [key, (holder as Obj).entries[0]?.[1] ?? gen(r, 0)];
}

describe('recent pairs', () => {
  it('give the full path answer over sequences of pairs of one request', () => {
    const r = prng(20261130);
    const compiled = RULE_SETS.map(([name, over]) => [name, rulesOf(over)] as const);
    let compared = 0;
    let hits = 0;
    for (let i = 0; i < 400; i++) {
      const keys = [...KEYS].sort(() => r() - 0.5).slice(0, 3 + Math.floor(r() * 6));
      const legacy: Obj = { t: 'obj', entries: keys.map((k) => [k, gen(r, 3)] as [string, Node]) };
      // Padding keeps the bodies past the lockstep path's minimum, so both fast paths meet.
      legacy.entries.push(['pad', { t: 'str', v: 'p'.repeat(400) }]);
      const candidate = clone(legacy) as Obj;
      for (let e = 0, n = Math.floor(r() * 3); e < n; e++) mutate(candidate, r);
      const pretty = r() < 0.2;
      const memos = compiled.map(() => new RecentPairs(1 << 20));
      for (let step = 0; step < 8; step++) {
        const l = clone(legacy) as Obj;
        const c = clone(candidate) as Obj;
        const roll = r();
        const at = Math.floor(r() * l.entries.length);
        const same = c.entries.findIndex(([k]) => k === l.entries[at][0]);
        if (step < 2) {
          // The request's first pairs as they were: the second is kept.
        } else if (roll < 0.5 && same >= 0) {
          editMember(l, at, r);
          editMember(c, same, r);
        } else if (roll < 0.6) {
          editMember(l, at, r);
        } else if (roll < 0.7 && c.entries.length > 0) {
          editMember(c, Math.floor(r() * c.entries.length), r);
        } else if (roll < 0.8) {
          editMember(l, at, r);
          if (c.entries.length > 0) editMember(c, Math.floor(r() * c.entries.length), r);
        } else if (roll < 0.9) {
          // Several members on each side (a timestamp at the root and meta.requestId, say).
          for (const doc of [l, c]) for (let k = 0, n = 1 + Math.floor(r() * 5); k < n && doc.entries.length > 0; k++) editMember(doc, Math.floor(r() * doc.entries.length), r);
        } else {
          mutate(r() < 0.5 ? l : c, r);
        }
        const a = write(l, pretty);
        const b = write(c, pretty);
        compiled.forEach(([name, rules], k) => agree(a, b, rules, memos[k], name));
        compared += compiled.length;
      }
      for (const m of memos) hits += m.stats().hits;
    }
    expect(compared).toBeGreaterThan(20_000);
    // Without the kept pairs none is answered from them and this fails. (Many pairs here cannot be: a wide number
    // or a repeated root key in the request's documents, invalid JSON, or a kept pair edited in one
    // member and the next in another.)
    expect(hits).toBeGreaterThan(compared / 6);
  });

  it('answers the bench-like sequence (one noisy id per answer) from kept pairs, and stays exact', () => {
    const rules = rulesOf();
    const recent = new RecentPairs(1 << 20);
    const doc = (flavour: string, rid: string): string =>
      JSON.stringify({
        id: 1037,
        name: flavour === 'legacy' ? 'Widget' : 'Widget ',
        price: flavour === 'legacy' ? 12.5 : '12.50',
        meta: { servedBy: `${flavour}-1`, requestId: rid },
        lines: Array.from({ length: 40 }, (_, n) => ({ line: n, note: 'sturdy steel housing', qty: n % 7 })),
        ...(flavour === 'legacy' ? { legacyOnly: true } : { added: 'x' }),
      });
    for (let n = 0; n < 50; n++) agree(doc('legacy', `l-${n}`), doc('new', `n-${n}`), rules, recent, 'none');
    // The first pair is a sighting, the second is kept, the other 48 are answered from it.
    expect(recent.stats()).toMatchObject({ hits: 48, misses: 0, entries: 1 });
    // With the noisy field ignored, its member has no difference of its own and still serves.
    const ignoring = rulesOf({ ignore: ['$.meta.requestId'] });
    const quiet = new RecentPairs(1 << 20);
    for (let n = 0; n < 10; n++) agree(doc('legacy', `l-${n}`), doc('new', `n-${n}`), ignoring, quiet, 'ignore');
    expect(quiet.stats().hits).toBe(8);
    // Two noisy members per side, as many APIs answer (a timestamp at the root, meta.requestId).
    const twice = (flavour: string, n: number): string =>
      JSON.stringify({ id: 1, generatedAt: `2026-11-30T09:00:${String(n).padStart(2, '0')}Z`, body: 'b'.repeat(600), flavour, meta: { requestId: `${flavour}-${n}` } });
    const both = new RecentPairs(1 << 20);
    for (let n = 0; n < 10; n++) agree(twice('legacy', n), twice('new', n + 1), rules, both, 'none');
    expect(both.stats().hits).toBe(8);
    // Noise in a member only one side has, a different one on each side: the root reports both.
    const apart = (flavour: string, n: number): string =>
      JSON.stringify(flavour === 'legacy' ? { id: 1, meta: { requestId: 'fixed' }, body: 'b'.repeat(600), legacyOnly: { at: n } } : { traceId: `t-${n}`, id: 1, meta: {}, body: 'b'.repeat(600) });
    const spread = new RecentPairs(1 << 20);
    for (let n = 0; n < 10; n++) agree(apart('legacy', n), apart('new', n), rules, spread, 'none');
    expect(spread.stats().hits).toBe(8);
  });

  it('falls back to the full path where a kept pair cannot answer, and then keeps the new pair', () => {
    const rules = rulesOf();
    const recent = new RecentPairs(1 << 20);
    const pad = 'p'.repeat(600);
    const pairs: [string, string][] = [
      [`{"a":1,"b":{"x":1},"pad":"${pad}"}`, `{"a":2,"b":{"x":1},"pad":"${pad}"}`],
      [`{"a":1,"b":{"x":1},"pad":"${pad}"}`, `{"a":2,"b":{"x":1},"pad":"${pad}"}`], // kept
      [`{"a":1,"b":{"x":2},"pad":"${pad}"}`, `{"a":2,"b":{"x":1},"pad":"${pad}"}`], // b had no difference: full
      [`{"a":1,"c":{"x":1},"pad":"${pad}"}`, `{"a":2,"b":{"x":1},"pad":"${pad}"}`], // a key changed: full
      [`{"a":1,"b":{"x":1},"pad":"${pad}"}`, `{"a":9007199254740993,"b":{"x":1},"pad":"${pad}"}`], // wide: full
      [`{"a":1,"b":{"x":1},"pad":"${pad}"}`, `{"a":1,"b":{"x":1},"pad":"${pad}"}`], // equal bytes: the fast path before
      [`{"a":1,"b":{"x":1},"pad":"${pad}"}`, `{"a":1.0,"b":{"x":1},"pad":"${pad}"}`], // only a number text: full
      [`{"a":3,"b":{"x":1},"pad":"${pad}"}`, `{"a":4,"b":{"x":1},"pad":"${pad}"}`],
    ];
    for (const [a, b] of pairs) agree(a, b, rules, recent, 'none');
    // Keys past the path bound (cut, with a hash): still exact, served or not.
    const long = (k: string, n: number, v: number): string => JSON.stringify({ [k.repeat(300)]: { deep: { n } }, [`${k.repeat(300)}x`]: v, pad: 'p'.repeat(600) });
    const cut = new RecentPairs(1 << 20);
    for (let n = 0; n < 6; n++) agree(long('k', n, 1), long('k', n + 1, 2), rules, cut, 'none');
    const { hits, misses } = recent.stats();
    expect(hits).toBeGreaterThanOrEqual(1);
    expect(misses).toBeGreaterThanOrEqual(4);
  });

  it('never lets a list reach the cap, and forgets the least recently used pairs past its bytes', () => {
    const rules = rulesOf();
    const many = (v: number): string => JSON.stringify({ list: Array.from({ length: MAX_DIFFERENCES + 5 }, (_, i) => i * v), meta: { rid: `r${v}` } });
    const capped = new RecentPairs(1 << 20);
    for (let n = 0; n < 4; n++) agree(many(1), many(2).replace('"r2"', `"r${n}"`), rules, capped, 'none');
    expect(capped.stats()).toMatchObject({ hits: 0, entries: 0 });
    // A kept pair under the cap (301 differences), then one whose changed member adds 250 more: the
    // list would pass the cap, so it is compared in full and cut there as the full path cuts it.
    const range = (n: number, plus: number): number[] => Array.from({ length: n }, (_, i) => i + plus);
    const doc = (rid: string, a: number, b: number): string => JSON.stringify({ rid, a: range(300, a), b: range(250, b) });
    const near = new RecentPairs(4 << 20);
    for (let n = 0; n < 2; n++) agree(doc('l', 0, 0), doc('n', 1000, 0), rules, near, 'none');
    agree(doc('l', 0, 0), doc('n', 1000, 1000), rules, near, 'none');
    expect(near.stats()).toMatchObject({ hits: 0, misses: 1 });
    // 64 KiB of room, each pair charged its ~0.9 KB of bodies, 1 KiB and 512 bytes per difference:
    // not all 30 fit.
    const small = new RecentPairs(64 * 1024);
    const body = (id: number, rid: number): Captured => cap(JSON.stringify({ id, note: 'n'.repeat(400), rid }));
    for (let round = 0; round < 3; round++) {
      for (let id = 0; id < 30; id++) {
        const got = compareResponses(body(id, round), body(id, round + 100), rules, { route: 'r', method: 'GET', path: `/items/${id}` }, { recent: small });
        expect(got).toEqual(full(JSON.stringify({ id, note: 'n'.repeat(400), rid: round }), JSON.stringify({ id, note: 'n'.repeat(400), rid: round + 100 }), rules));
      }
    }
    const s = small.stats();
    expect(s.bytes).toBeLessThanOrEqual(64 * 1024);
    expect(s.entries).toBeGreaterThan(20);
    expect(s.entries).toBeLessThan(30);
    // The third round was answered from the pairs still kept.
    expect(s.hits).toBeGreaterThan(0);
  });

  it('keeps no pair whose differences came from the number texts, and walks no member under an ignored body', () => {
    const P = 'p'.repeat(600);
    // 0.1 against 0.10000000000000001 (one float, two numbers) is found by reading the texts, which
    // only happens when the walk finds nothing else: a later pair that also changes y must not
    // still list it.
    const rules = rulesOf();
    const recent = new RecentPairs(1 << 20);
    const l = `{"x":0.1,"y":"a","pad":"${P}"}`;
    for (let i = 0; i < 3; i++) agree(l, `{"x":0.10000000000000001,"y":"a","pad":"${P}"}`, rules, recent, 'none');
    agree(l, `{"x":0.10000000000000001,"y":"b","pad":"${P}"}`, rules, recent, 'none');
    // ignore: ["$"] compares status and headers only.
    const whole = rulesOf({ ignore: ['$'] });
    const kept = new RecentPairs(1 << 20);
    const lw = `{"a":1,"b":1,"pad":"${P}"}`;
    for (let i = 0; i < 2; i++) agree(lw, `{"a":1,"b":2,"pad":"${P}"}`, whole, kept, 'ignore the body');
    agree(lw, `{"a":5,"b":2,"pad":"${P}"}`, whole, kept, 'ignore the body');
  });

  it('a byte-equal repeat with more header differences than its kept pair still stops at the cap, flagged', () => {
    const rules = rulesOf({ headers: ['content-type', 'x-a', 'x-b'] });
    const n = MAX_DIFFERENCES - 1;
    const a = JSON.stringify({ a: Array(n).fill(0) });
    const b = JSON.stringify({ a: Array(n).fill(1) });
    const ctx = { route: 'r', method: 'GET', path: '/x' };
    const recent = new RecentPairs(8 << 20);
    // Seen, then kept: 499 body differences and no header difference.
    for (let i = 0; i < 2; i++) compareResponses(cap(a), cap(b), rules, ctx, { recent });
    // The same bodies, now with two compared headers that differ: 501 differences before the cap.
    const withHeaders = (text: string, v: string): Captured => ({ ...cap(text), headers: { 'content-type': 'application/json', 'x-a': v, 'x-b': v } });
    const got = compareResponses(withHeaders(a, '1'), withHeaders(b, '2'), rules, ctx, { recent });
    const want = compareResponses(withHeaders(a, '1'), withHeaders(b, '2'), rules, ctx);
    expect(want.differences).toHaveLength(MAX_DIFFERENCES);
    expect(want.differencesCapped).toBe(true);
    expect(got).toEqual(want);
  });

  it('charges a kept pair its layout too: roots of many small members cannot outgrow the bound', () => {
    // 120 root members of ~8 bytes per side, and one that changes (rid): ~1 KB bodies, whose layouts
    // hold ~25 KB (~100 bytes per member). Charged their bodies alone, all 40 paths would be kept in
    // 1 MiB; with their layouts, 37.
    const rules = rulesOf();
    const recent = new RecentPairs(1 << 20);
    const doc = (rid: number): string => JSON.stringify({ rid, ...Object.fromEntries(Array.from({ length: 120 }, (_, i) => [`k${i}`, 1])) });
    for (let round = 0; round < 3; round++) {
      for (let id = 0; id < 40; id++) {
        const got = compareResponses(cap(doc(round)), cap(doc(round + 100)), rules, { route: 'r', method: 'GET', path: `/items/${id}` }, { recent });
        expect(got).toEqual(full(doc(round), doc(round + 100), rules));
      }
    }
    const s = recent.stats();
    expect(s.bytes).toBeLessThanOrEqual(1 << 20);
    expect(s.entries).toBeLessThan(40);
    // Those still kept answered the third round through their layouts.
    expect(s.hits).toBeGreaterThan(0);
  });

  it('a request whose layout is past its share reads it again only after 1, 2, 4, 8 ... pairs, and still serves byte-equal repeats', () => {
    const rules = rulesOf();
    // 300 small root members, every seventh differing: a layout of ~60 KB, past 1 MiB / 16.
    const doc = (rid: string, side: string): string => JSON.stringify(Object.fromEntries([['rid', rid], ...Array.from({ length: 300 }, (_, i) => [`k${i}`, i % 7 === 0 ? `${side}${i}` : i])]));
    const recent = new RecentPairs(1 << 20);
    for (let i = 0; i < 20; i++) agree(doc(`a${i}`, 'L'), doc(`b${i}`, 'C'), rules, recent, 'none');
    const s = recent.stats();
    expect(s).toMatchObject({ hits: 0, entries: 1 });
    // Pairs 3..20 could not be answered; their layouts were read at 6 of them, not at all 18.
    expect(s.misses).toBe(18);
    expect(s.layouts).toBeGreaterThan(0);
    expect(s.layouts).toBeLessThanOrEqual(6);
    // The last kept pair, repeated byte for byte, is still answered from it.
    agree(doc('a19', 'L'), doc('b19', 'C'), rules, recent, 'none');
    expect(recent.stats().hits).toBe(1);
  });

  it('keeps no pair for a request path past 1,024 characters', () => {
    const recent = new RecentPairs(1 << 20);
    const rules = rulesOf();
    const body = (rid: number): Captured => cap(JSON.stringify({ rid, note: 'n'.repeat(600) }));
    for (const path of ['/short', `/long?q=${'x'.repeat(1100)}`]) {
      for (let n = 0; n < 4; n++) compareResponses(body(n), body(n + 100), rules, { route: 'r', method: 'GET', path }, { recent });
    }
    expect(recent.stats()).toMatchObject({ hits: 2, entries: 1 });
  });
});
