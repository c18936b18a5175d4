/**
 * The lockstep fast path must give exactly the full path's answer. The full path is forced with an
 * identity transform (a transform turns the fast path off and changes nothing else), and both
 * Comparisons (result, every difference with its paths and example values, error, cap) must be
 * equal, over thousands of seeded random documents and small mutations, and over targeted cases.
 */
import { describe, expect, it } from 'vitest';
import type { CompareSettings } from '../src/config/load.js';
import { findWindow, planLockstep } from '../src/compare/lockstep.js';
import { prng } from '../src/demo/backends.js';
import { KEYS, NUMBERS, RULE_SETS, WIDE, agreeUnderEveryRuleSet, cap, clone, fast, full, gen, genContainer, identity, mutate, padded, rulesOf, write, writeAligned, type Node } from './helpers/json-docs.js';

describe('lockstep fast path', () => {
  it('gives the full path answer on thousands of random documents and edits', () => {
    const r = prng(20261129);
    let windows = 0;
    let cases = 0;
    const compiled = RULE_SETS.map(([name, over]) => [name, rulesOf(over)] as const);
    for (let i = 0; i < 4000; i++) {
      const doc: Node = { t: 'obj', entries: [['pad', { t: 'str', v: 'p'.repeat(1500) }], ['doc', genContainer(r, 5)], ['tail', gen(r, 3)]] };
      const edited = clone(doc);
      const edits = 1 + Math.floor(r() * 2);
      for (let e = 0; e < edits; e++) mutate(edited, r);
      const pretty = r() < 0.2;
      const a = write(doc, pretty);
      const b = write(edited, pretty);
      if (a === b) continue;
      if (findWindow(Buffer.from(a), Buffer.from(b))) windows++;
      cases += agreeUnderEveryRuleSet(a, b, compiled);
    }
    expect(cases).toBeGreaterThan(20_000);
    // The fast path must actually answer most of these, or the equality above proves nothing.
    expect(windows).toBeGreaterThan(1000);
  });

  it('gives the full path answer when the differing bytes begin in the spaces before a value (column-aligned printing)', () => {
    const P = 'p'.repeat(600);
    const compiled = RULE_SETS.map(([name, over]) => [name, rulesOf(over)] as const);
    // Found by review: the scan stopped at the token after the spaces, and the candidate's bytes from
    // the first difference up to there were never read ("match", or 1 against "23" for 1 against 123).
    for (const [a, b] of [
      [`{"a": 1,"pad":"${P}"}`, `{"a":11,"pad":"${P}"}`],
      [`{"a": 1,"pad":"${P}"}`, `{"a":123,"pad":"${P}"}`],
      [`{"pad":"${P}",      "b":1}`, `{"pad":"${P}","k":1,"b":1}`],
      [`{"pad":"${P}","a":[1,    2]}`, `{"pad":"${P}","a":[1,3,4,2]}`],
      [`{"pad":"${P}",  "b":1}`, `{"pad":"${P}",5 "b":1}`],
    ]) agreeUnderEveryRuleSet(a, b, compiled);
    const r = prng(20261130);
    let cases = 0;
    for (let i = 0; i < 1500; i++) {
      const doc: Node = { t: 'obj', entries: [['pad', { t: 'str', v: 'p'.repeat(700) }], ['doc', genContainer(r, 4)], ['tail', gen(r, 2)]] };
      const edited = clone(doc);
      mutate(edited, r);
      const a = writeAligned(doc);
      const b = writeAligned(edited);
      if (a !== b) cases += agreeUnderEveryRuleSet(a, b, compiled);
    }
    expect(cases).toBeGreaterThan(5000);
  });

  it('gives the full path answer when both ends of a big root object change (several windows)', () => {
    const r = prng(20261130);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
    let members = 0;
    let tried = 0;
    let cases = 0;
    const compiled = RULE_SETS.map(([name, over]) => [name, rulesOf(over)] as const);
    /** An edit of one root member at an end of the object: its value, its key, or the member itself. */
    const edit = (root: { t: 'obj'; entries: [string, Node][] }, from: number, to: number): void => {
      const at = from + Math.floor(r() * Math.max(1, to - from));
      const op = Math.floor(r() * 8);
      const e = root.entries;
      if (at > e.length || (at === e.length && op !== 1)) return;
      if (op === 0) e[at] = [e[at][0], gen(r, 2)];
      else if (op === 1) e.splice(at, 0, [r() < 0.2 ? pick(KEYS) : `${pick(KEYS)}+`, gen(r, 1)]); // now and then a key already there
      else if (op === 2) e.splice(at, 1);
      else if (op === 3 && at + 1 < to && at + 1 < e.length) [e[at], e[at + 1]] = [e[at + 1], e[at]];
      else if (op === 4) e[at] = [`${e[at][0]}2`, e[at][1]];
      else if (op === 5 && e[at][1].t !== 'obj' && e[at][1].t !== 'arr') e[at] = [e[at][0], { t: 'num', text: r() < 0.5 ? '1.0' : pick(WIDE) }];
      else {
        const holder: Node = { t: 'obj', entries: [['v', e[at][1]]] };
        mutate(holder, r);
        e[at] = [e[at][0], (holder as { entries: [string, Node][] }).entries[0]?.[1] ?? gen(r, 0)];
      }
    };
    for (let i = 0; i < 1500; i++) {
      const keys = [...KEYS].sort(() => r() - 0.5);
      const head: [string, Node][] = keys.slice(0, 2 + Math.floor(r() * 4)).map((k) => [k, gen(r, 3)]);
      const tail: [string, Node][] = keys.slice(8, 9 + Math.floor(r() * 4)).map((k) => [k, gen(r, 3)]);
      // The long middle that both sides share, as the order lines of the bench's documents.
      const lines: Node = { t: 'arr', items: Array.from({ length: 30 + Math.floor(r() * 30) }, (_, n) => ({ t: 'obj', entries: [['line', { t: 'num', text: String(n) }], ['note', { t: 'str', v: 'order line with a note' }], ['qty', { t: 'num', text: pick(NUMBERS) }]] }) as Node) };
      const doc = { t: 'obj' as const, entries: [...head, ['lines', lines] as [string, Node], ...tail] };
      const edited = clone(doc) as typeof doc;
      edit(edited, 0, head.length);
      const tailFrom = edited.entries.findIndex(([k]) => k === 'lines') + 1;
      edit(edited, tailFrom, edited.entries.length + 1);
      if (r() < 0.3) edit(edited, 0, edited.entries.length);
      if (r() < 0.05) edited.entries.push(['lines', gen(r, 1)]); // a repeated key far from the first
      const pretty = r() < 0.2;
      const a = write(doc, pretty);
      const b = write(edited, pretty);
      if (a === b) continue;
      tried++;
      const plan = planLockstep(Buffer.from(a), Buffer.from(b));
      if (plan && 'members' in plan) members++;
      cases += agreeUnderEveryRuleSet(a, b, compiled);
    }
    expect(cases).toBeGreaterThan(7000);
    // A good share of these must go through the member windows (the rest meet a wide number, a
    // repeated key or invalid JSON outside them, and take the full path), or this proves nothing.
    expect(members).toBeGreaterThan(tried / 4);
  });

  const targeted: [string, string, string, Partial<CompareSettings>?][] = [
    ['escaped quote in a string', '{"meta":{"note":"say \\"hi\\""},"n":1}', '{"meta":{"note":"say \\"ho\\""},"n":1}'],
    ['a quote escaped on one side only', '{"meta":{"note":"a\\"b","x":"c"},"n":1}', '{"meta":{"note":"a","b":"x","x":"c"},"n":1}'],
    ['number grows at the boundary', '{"meta":{"v":12,"w":3},"n":1}', '{"meta":{"v":123,"w":3},"n":1}'],
    ['number shrinks at the boundary', '{"meta":{"v":123},"n":1}', '{"meta":{"v":12},"n":1}'],
    ['1 becomes 1.0', '{"meta":{"v":1},"n":1}', '{"meta":{"v":1.0},"n":1}'],
    ['1 becomes 1.0, lenient', '{"meta":{"v":1},"n":1}', '{"meta":{"v":1.0},"n":1}', { numberFormat: 'lenient' }],
    ['wide integer moved by one', '{"meta":{"v":9007199254740993},"n":1}', '{"meta":{"v":9007199254740992},"n":1}'],
    ['wide number outside, 1 → 1.0 inside', '{"big":9007199254740993,"meta":{"v":1,"w":2},"n":1}', '{"big":9007199254740993,"meta":{"v":1.0,"w":3},"n":1}'],
    ['key name changed', '{"meta":{"name":1},"n":1}', '{"meta":{"nome":1},"n":1}'],
    ['key name with an escape', '{"meta":{"a\\"b":1},"n":1}', '{"meta":{"a\\"c":1},"n":1}'],
    ['difference at the root', '{"a":1,"b":2}', '{"a":1,"b":3}'],
    ['first element of an array', '{"items":[{"id":1,"v":1},{"id":2,"v":2}]}', '{"items":[{"id":1,"v":9},{"id":2,"v":2}]}'],
    ['last element of an array', '{"items":[{"id":1,"v":1},{"id":2,"v":2}]}', '{"items":[{"id":1,"v":1},{"id":2,"v":9}]}'],
    ['element inserted', '{"items":[{"id":1},{"id":2}],"n":1}', '{"items":[{"id":1},{"id":3},{"id":2}],"n":1}'],
    ['element removed at the end', '{"items":[1,2,3],"n":1}', '{"items":[1,2],"n":1}'],
    ['ignored changed path', '{"meta":{"requestId":"r-1","page":1},"n":1}', '{"meta":{"requestId":"r-2","page":1},"n":1}', { ignore: ['$.doc.meta.requestId'] }],
    ['ignored ancestor', '{"meta":{"requestId":"r-1"},"n":1}', '{"meta":{"requestId":"r-2"},"n":1}', { ignore: ['$.doc.meta'] }],
    ['recursive ignore', '{"meta":{"etag":"1"},"n":1}', '{"meta":{"etag":"2"},"n":1}', { ignore: ['$..etag'] }],
    ['unordered ancestor', '{"tags":[{"v":1},{"v":2}],"n":1}', '{"tags":[{"v":2},{"v":2}],"n":1}', { unordered: ['$.doc.tags'] }],
    ['duplicate key after the window', '{"meta":{"v":1},"meta":{"v":1}}', '{"meta":{"v":2},"meta":{"v":1}}'],
    ['duplicate key written with an escape', '{"meta":{"v":1},"m\\u0065ta":{"v":1}}', '{"meta":{"v":2},"m\\u0065ta":{"v":1}}'],
    ['invalid JSON outside', '{"meta":{"v":1},"n":01}', '{"meta":{"v":2},"n":01}'],
    ['invalid JSON inside, one side', '{"meta":{"v":1},"n":1}', '{"meta":{"v":tru},"n":1}'],
    ['type change to a container', '{"meta":{"v":1},"n":1}', '{"meta":{"v":[1]},"n":1}'],
    ['unicode around the change', '{"meta":{"v":"é😀a"},"n":1}', '{"meta":{"v":"é😀b"},"n":1}'],
    ['tolerance covers it', '{"meta":{"v":1.001},"n":1}', '{"meta":{"v":1.002},"n":1}', { tolerance: { absolute: 0.01, relative: 0 } }],
    ['sensitive path', '{"user":{"password":"a"},"n":1}', '{"user":{"password":"b"},"n":1}', { sensitive: ['$.doc.user.password'] }],
    ['trailing garbage', '{"meta":{"v":1},"n":1}', '{"meta":{"v":2},"n":1}x'],
  ];
  for (const [name, a0, b0, over] of targeted) {
    it(`agrees: ${name}`, () => {
      const rules = rulesOf(over);
      const a = padded(a0);
      const b = padded(b0);
      expect(fast(a, b, rules)).toEqual(full(a, b, rules));
    });
  }

  const big = `"lines":[${Array.from({ length: 40 }, (_, i) => `{"line":${i},"note":"order line ${i}"}`).join(',')}]`;
  const rootRuns: [string, string, string, Partial<CompareSettings>?][] = [
    ['a field near the top and meta after it', `{"id":1,"price":12.5,"meta":{"requestId":"a"},${big}}`, `{"id":1,"price":"12.50","meta":{"requestId":"b"},${big}}`],
    ['the same, meta ignored', `{"id":1,"price":12.5,"meta":{"requestId":"a"},${big}}`, `{"id":1,"price":"12.50","meta":{"requestId":"b"},${big}}`, { ignore: ['$.meta.requestId'] }],
    ['a member added and one removed', `{"id":1,"a":1,"m":0,"z":2,${big}}`, `{"id":1,"b":1,"m":0,"y":2,${big}}`],
    ['a key of the run repeated outside it', `{"id":1,"a":1,"m":0,"z":2,${big},"a":5}`, `{"id":1,"a":2,"m":0,"z":3,${big},"a":5}`],
    ['a key of the run repeated before it', `{"a":5,"id":1,"a":1,"m":0,"z":2,${big}}`, `{"a":5,"id":1,"a":2,"m":0,"z":3,${big}}`],
    ['numbers written two ways in two members', `{"id":1,"v":1,"m":0,"w":2.0,${big}}`, `{"id":1,"v":1.0,"m":0,"w":2,${big}}`],
    ['a root array is never split', `[1,0,2,${big.slice(8)}]`, `[3,0,4,${big.slice(8)}]`],
  ];
  for (const [name, a, b, over] of rootRuns) {
    it(`agrees on a run of root members: ${name}`, () => {
      const rules = rulesOf(over);
      expect(fast(a, b, rules)).toEqual(full(a, b, rules));
    });
  }

  // Differences at both ends of a long shared middle: the member windows, or the full path.
  const mid = `"lines":[${Array.from({ length: 60 }, (_, i) => `{"line":${i},"note":"order line ${i}"}`).join(',')}]`;
  const bothEnds: [string, string, string, boolean, Partial<CompareSettings>?][] = [
    ['a number that goes on past the legacy member', `{"v":12,${mid},"w":1}`, `{"v":123,${mid},"w":2}`, true],
    ['the last member\'s number goes on', `{"v":1,${mid},"w":12}`, `{"v":2,${mid},"w":123}`, true],
    ['a member removed at each end', `{"v":1,"x":0,${mid},"w":1,"y":0}`, `{"x":0,${mid},"y":0}`, true],
    ['root members reordered', `{"v":1,"x":0,${mid},"w":1}`, `{"x":0,"v":2,${mid},"w":2}`, true],
    ['a key repeated in the candidate', `{"v":1,${mid},"w":1}`, `{"v":2,${mid},"w":2,"v":3}`, false],
    ['a key written with an escape on one side', `{"v":1,${mid},"w":1}`, `{"\\u0076":2,${mid},"w":2}`, true],
    ['a wide number in the shared middle', `{"v":1,"big":9007199254740993,${mid},"w":1}`, `{"v":1.0,"big":9007199254740993,${mid},"w":1}`, false],
    ['invalid JSON in the shared middle', `{"v":1,${mid.replace('"line":7', '"line":07')},"w":1}`, `{"v":2,${mid.replace('"line":7', '"line":07')},"w":2}`, false],
    ['trailing bytes after the candidate', `{"v":1,${mid},"w":1}`, `{"v":2,${mid},"w":2} x`, false],
    ['numbers written two ways at both ends', `{"v":1,${mid},"w":2.50}`, `{"v":1.0,${mid},"w":2.5}`, true],
    ['integer-like keys, which Object.keys puts first', `{"b":1,"2":1,${mid},"1":1,"a":1}`, `{"b":2,"2":2,${mid},"1":2,"a":2}`, true],
    ['ignored at one end', `{"meta":{"requestId":"a"},${mid},"w":1}`, `{"meta":{"requestId":"b"},${mid},"w":2}`, true, { ignore: ['$.meta.requestId'] }],
  ];
  for (const [name, a, b, taken, over] of bothEnds) {
    it(`agrees at both ends of a big root object: ${name}`, () => {
      const rules = rulesOf(over);
      expect(fast(a, b, rules)).toEqual(full(a, b, rules));
      const plan = planLockstep(Buffer.from(a), Buffer.from(b));
      expect(plan !== undefined && 'members' in plan).toBe(taken);
    });
  }

  // Values the tokenizer reads whole (skipContainer): a root member left out of the member windows,
  // a container below the window's ancestors after it, and one inside a window read to its end.
  // Whatever such a value holds, the fast path must give way exactly where run() would.
  // The last entry: whether a wide number there leaves the fast path on (the window's own are walked).
  const wholeShapes: [string, (v: string, k: number) => string, 'members' | 'window', boolean][] = [
    ['a root member between the member windows', (v, k) => `{"v":${k},"big":${v},${mid},"w":${k}}`, 'members', false],
    ['a container after the window', (v, k) => `{"meta":{"v":${k}},"rest":{"deep":${v}},"pad":"${'p'.repeat(600)}"}`, 'window', false],
    ['a container inside the window', (v, k) => `{"a":{"v${k}":1,"deep":${v}},"pad":"${'p'.repeat(600)}"}`, 'window', true],
  ];
  const planned = (a: string, b: string, kind: 'members' | 'window'): boolean => {
    const plan = planLockstep(Buffer.from(a), Buffer.from(b));
    return plan !== undefined && kind in plan;
  };
  const deep = (n: number): string => `${'['.repeat(n)}${']'.repeat(n)}`;
  // The last entry: 'ok', 'wide' (valid, with a number beyond ±2^53) or false (invalid, or too deep).
  const whole: [string, string, 'ok' | 'wide' | false][] = [
    ['valid', '{"x":[1,-2.5e3,"s\\"\\u00e9",true,false,null,{},[],{"y":{"z":[0]}}],"k":"v"}', 'ok'],
    ['nested as deep as the scan goes', `{"x":${deep(60)}}`, 'ok'],
    ['nested deeper than MAX_DEPTH', `{"x":${deep(70)}}`, false],
    ['a wide integer', '{"x":[1,9007199254740993]}', 'wide'],
    ['a wide negative integer', '{"x":{"y":-12345678901234567890}}', 'wide'],
    ['a wide exponent', '{"x":[1e400]}', 'wide'],
    ['16 integer digits, not wide', '{"x":[1000000000000000.5,-0.12345678901234567890]}', 'ok'],
    ['a bad escape', '{"x":["a\\qb"]}', false],
    ['a short \\u escape', '{"x":["\\u12"]}', false],
    ['a control byte in a string', '{"x":["a\u0001b"]}', false],
    ['a raw newline in a key', '{"x":{"a\nb":1}}', false],
    ['an unclosed bracket', '{"x":[1,2}', false],
    ['a stray closing bracket', '{"x":[1,2]]}', false],
    ['a mismatched bracket', '{"x":{"y":1]}', false],
    ['a trailing comma in an array', '{"x":[1,2,]}', false],
    ['a trailing comma in an object', '{"x":{"y":1,}}', false],
    ['a leading comma', '{"x":[,1]}', false],
    ['a missing comma', '{"x":[1 2]}', false],
    ['a missing colon', '{"x":{"y" 1}}', false],
    ['a missing value', '{"x":{"y":}}', false],
    ['a key that is not a string', '{"x":{y:1}}', false],
    ['a value without a key', '{"x":{"a":[],2}}', false],
    ['a leading zero', '{"x":[01]}', false],
    ['a lone minus', '{"x":[-]}', false],
    ['a number ending in a dot', '{"x":[1.]}', false],
    ['an exponent without digits', '{"x":[1e]}', false],
    ['an exponent sign without digits', '{"x":[1e+]}', false],
    ['a plus sign', '{"x":[+1]}', false],
    ['a bad literal', '{"x":[tru]}', false],
    ['a literal run on', '{"x":[nulll]}', false],
    ['a single-quoted string', "{\"x\":['a']}", false],
  ];
  for (const [shape, doc, kind, wideOk] of wholeShapes) {
    for (const [name, v, what] of whole) {
      it(`agrees when ${shape} holds ${name}`, () => {
        const a = doc(v, 1);
        const b = doc(v, 2);
        expect(fast(a, b, rulesOf())).toEqual(full(a, b, rulesOf()));
        // Taken exactly when the value is valid and has no wide number: else this proves nothing.
        expect(planned(a, b, kind)).toBe(what === 'ok' || (what === 'wide' && wideOk));
      });
    }
  }

  it('gives the full path answer when a value read whole is corrupted anywhere', () => {
    const r = prng(20261201);
    const EDITS = ['', '"', '\\', ',', ':', '[', ']', '{', '}', '0', '-', '.', 'e', 'E', '+', '\u0001', '\n', ' ', 'x', 't', 'n', '1', '\\u', '9007199254740993'];
    const compiled = [['none', rulesOf()] as const];
    let invalid = 0;
    let taken = 0;
    for (let i = 0; i < 1500; i++) {
      const v = write(genContainer(r, 5), r() < 0.2);
      let bad: string;
      const brackets = [...v.matchAll(/[[\]{}]/g)].map((m) => m.index);
      if (r() < 0.25 && brackets.length > 2) {
        // A bracket of the other kind: still balanced in number, so only matching can tell.
        const at = brackets[1 + Math.floor(r() * (brackets.length - 2))];
        bad = v.slice(0, at) + ({ '[': '{', '{': '[', ']': '}', '}': ']' } as Record<string, string>)[v[at]] + v.slice(at + 1);
      } else {
        const at = Math.floor(r() * (v.length + 1));
        bad = v.slice(0, at) + EDITS[Math.floor(r() * EDITS.length)] + v.slice(at + (r() < 0.5 ? 1 : 0));
      }
      let ok = true;
      try {
        JSON.parse(bad);
      } catch {
        ok = false;
        invalid++;
      }
      const [, doc, kind] = wholeShapes[i % wholeShapes.length];
      const a = doc(bad, 1);
      const b = doc(bad, 2);
      const plan = planned(a, b, kind);
      // Never taken over invalid JSON; the walk decides the rest.
      if (!ok) expect(plan).toBe(false);
      if (plan) taken++;
      agreeUnderEveryRuleSet(a, b, compiled);
    }
    expect(invalid).toBeGreaterThan(500);
    expect(taken).toBeGreaterThan(300);
  });

  it('compares a run of root members when the differences are far apart', () => {
    const [, a, b] = rootRuns[0];
    const w = findWindow(Buffer.from(a), Buffer.from(b));
    expect(w?.outside).toEqual(['id', 'lines']);
    expect(a.slice(w!.start, w!.endA + 1)).toBe(`"price":12.5,"meta":{"requestId":"a"}`);
    const [, ra, rb] = rootRuns[3];
    // Found, but the comparison gives way: "a" is also outside the run (it is checked once parsed).
    expect(findWindow(Buffer.from(ra), Buffer.from(rb))?.outside).toEqual(['id', 'lines', 'a']);
  });

  it('compares only the differing root members of a document changed at both ends', () => {
    // The shape of bench/backend.mjs's legacy and new documents: a type and a value changed near
    // the top, an order, a removed link, meta, and a field added after the long list of lines.
    const lines = Array.from({ length: 60 }, (_, i) => ({ line: i, sku: `SKU-${i}`, qty: 1 + (i % 9), unitPrice: i * 1.25, note: 'sturdy compact steel' }));
    const legacy = { id: 7, sku: 'SKU-7', price: 12.5, status: 'active', tags: ['a', 'b'], links: { self: '/items/7', legacyHref: '/cgi?id=7' }, meta: { servedBy: 'legacy-1', requestId: 'r-1' }, lines };
    const candidate = { ...legacy, price: '12.50', status: 'ACTIVE', tags: ['b', 'a'], links: { self: '/items/7' }, meta: { servedBy: 'new-1', requestId: 'r-2' }, lines, schemaVersion: 2 };
    const a = JSON.stringify(legacy);
    const b = JSON.stringify(candidate);
    const plan = planLockstep(Buffer.from(a), Buffer.from(b));
    expect(plan && 'members' in plan ? plan.members : undefined).toEqual({
      legacy: JSON.stringify({ price: 12.5, status: 'active', tags: ['a', 'b'], links: legacy.links, meta: legacy.meta }),
      candidate: JSON.stringify({ price: '12.50', status: 'ACTIVE', tags: ['b', 'a'], links: candidate.links, meta: candidate.meta, schemaVersion: 2 }),
      members: 3,
    });
    for (const over of [{}, { ignore: ['$.meta.requestId'] }, { unordered: ['$.tags'] }]) {
      const rules = rulesOf(over);
      const got = fast(a, b, rules);
      expect(got).toEqual(full(a, b, rules));
      expect(got.differences.map((d) => `${d.kind} ${d.path}`)).toContain('extra $.schemaVersion');
    }
  });

  it('parses only the container that holds the difference, named by its path', () => {
    const a = padded('{"meta":{"requestId":"r-1","page":1},"items":[{"id":1,"tags":["a","b"]},{"id":2,"tags":["c"]}]}');
    const b = padded('{"meta":{"requestId":"r-22","page":1},"items":[{"id":1,"tags":["a","b"]},{"id":2,"tags":["c"]}]}');
    const w = findWindow(Buffer.from(a), Buffer.from(b));
    expect(w?.keys).toEqual(['doc', 'meta', 'requestId']);
    const c = padded('{"meta":{"requestId":"r-1","page":1},"items":[{"id":1,"tags":["a","b"]},{"id":2,"tags":["d"]}]}');
    expect(findWindow(Buffer.from(a), Buffer.from(c))?.keys).toEqual(['doc', 'items', 1, 'tags', 0]);
    // Outside the window, nothing: a difference in the window is reported at its full path.
    const got = fast(a, c, rulesOf());
    expect(got.differences.map((d) => `${d.path} ${d.field} ${d.kind}`)).toEqual(["$.doc.items[1].tags[0] $.doc.items[].tags[] value"]);
    // A number cut by the shared prefix (`12` → `123`) is read whole, inside its container.
    expect(findWindow(Buffer.from(padded('{"meta":{"v":12,"w":3},"n":1}')), Buffer.from(padded('{"meta":{"v":123,"w":3},"n":1}')))?.keys).toEqual(['doc', 'meta', 'v']);
    // A key renamed: the object holding it.
    expect(findWindow(Buffer.from(padded('{"meta":{"v":1,"w":3},"n":1}')), Buffer.from(padded('{"meta":{"u":1,"w":3},"n":1}')))?.keys).toEqual(['doc', 'meta']);
    // Not taken where it could not be equivalent.
    expect(findWindow(Buffer.from('{"meta":{"v":1},"meta":{"v":1}}'.padEnd(600)), Buffer.from('{"meta":{"v":2},"meta":{"v":1}}'.padEnd(600)))).toBeUndefined();
    // A member of the root is a window of its own; the root itself never is.
    expect(findWindow(Buffer.from(padded('{"a":1}')), Buffer.from(padded('{"a":2}')))?.keys).toEqual(['doc', 'a']);
    expect(findWindow(Buffer.from(`{"a":1,"p":"${'x'.repeat(600)}"}`), Buffer.from(`{"a":2,"p":"${'x'.repeat(600)}"}`))?.keys).toEqual(['a']);
    expect(findWindow(Buffer.from(`{"a":1,"p":"${'x'.repeat(600)}"}`), Buffer.from(`{"a":1,"q":"${'x'.repeat(600)}"}`))).toBeUndefined();
  });
});
