import { describe, expect, it } from 'vitest';
import { BUILTIN_COMPARE } from '../src/config/load.js';
import { compareResponses, compileRules, withoutSecrets, type Captured } from '../src/compare/index.js';

const ctx = { route: 'r', method: 'GET', path: '/x' };
const json = (v: unknown): Captured => ({ status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(v)), truncated: false });
const diffs = (a: unknown, b: unknown) => compareResponses(json(a), json(b), compileRules({ ...BUILTIN_COMPARE }), ctx).differences;
const KEY = 'sk_live_SecretKey0042abcd';

/** The request's own credential echoed as an object key, wherever the rendered field or path puts it (found by review). */
describe('withoutSecrets: a key in any rendered position', () => {
  it('A: key followed by a dynamic key ({*}) in the field form', () => {
    const d = diffs({ usage: { [KEY]: { '2024-01-01': 5 } } }, { usage: { [KEY]: { '2024-01-01': 6 } } });
    const out = withoutSecrets(d, [KEY]);
    expect(out.some((x) => x.field.includes(KEY) || x.path.includes(KEY))).toBe(false);
  });
  it('B: key at the 32nd step of a deep path (cut by MAX_RENDERED_STEPS)', () => {
    let a: unknown = { v: 1 };
    let b: unknown = { v: 2 };
    for (let i = 0; i < 20; i++) { a = { n: a }; b = { n: b }; }
    a = { [KEY]: a }; b = { [KEY]: b };
    for (let i = 0; i < 31; i++) { a = { m: a }; b = { m: b }; }
    const d = diffs(a, b);
    const out = withoutSecrets(d, [KEY]);
    expect(out.some((x) => x.field.includes(KEY) || x.path.includes(KEY))).toBe(false);
  });
  it('C: concrete path cut by MAX_PATH_CHARS while the field form keeps the key', () => {
    // 30 nested arrays at index 10: the path spells [10] (4 chars) where the field spells [] (2).
    const mk = (v: number) => {
      let x: unknown = { [KEY]: v };
      for (let i = 0; i < 31; i++) x = [...Array(100).fill(0), x];
      for (let i = 0; i < 7; i++) x = { ['p'.repeat(119) + i]: x };
      return x;
    };
    const d = diffs(mk(1), mk(2));
    const out = withoutSecrets(d, [KEY]);
    expect(out.some((x) => x.field.includes(KEY) || x.path.includes(KEY))).toBe(false);
  });
  it('D: a path and field cut at MAX_PATH_CHARS inside the key lose the start it kept', () => {
    const key = 'sk_live_SecretKey0042abcdEFGH';
    // Rendered keys summing to 1001 characters: the cut lands 12 characters into the key.
    const keys: string[] = [];
    for (let left = 1001, i = 0; left > 0; i++) {
      const n = Math.min(121, left);
      keys.push('p'.repeat(n - 2) + String.fromCharCode(97 + i));
      left -= n;
    }
    const mk = (v: number) => keys.reduceRight<unknown>((x, k) => ({ [k]: x }), { [key]: v });
    const out = withoutSecrets(diffs(mk(1), mk(2)), [key]);
    expect(out.length).toBeGreaterThan(0);
    expect(out.some((x) => x.field.includes(key.slice(0, 12)) || x.path.includes(key.slice(0, 12)))).toBe(false);
  });

  /** Diffs whose concrete path is cut `want` characters into KEY, behind `prefixKeys` and fillers. */
  function cutInside(prefixKeys: string[], want: number) {
    const nest = (keys: string[], leaf: unknown) => keys.reduceRight<unknown>((x, k) => ({ [k]: x }), leaf);
    for (let pad = 1; pad < 2000; pad++) {
      const fillers: string[] = [];
      for (let left = pad, i = 0; left > 0; i++) {
        const n = Math.min(120, left);
        fillers.push('q'.repeat(n - 1) + String.fromCharCode(97 + (i % 26)));
        left -= n;
      }
      const keys = [...prefixKeys, ...fillers, KEY];
      const d = diffs(nest(keys, 1), nest(keys, 2));
      if ((d[0]?.path ?? '').includes(`.${KEY.slice(0, want)}…`)) return d;
    }
    throw new Error('no layout found');
  }

  it('E: the cut start goes even when the path holds a character whose lower case is longer ("İ")', () => {
    const out = withoutSecrets(cutInside(['İstanbul'], 12), [KEY]);
    expect(out[0].path.includes(KEY.slice(0, 12))).toBe(false);
  });

  it('F: only the final cut counts: a whole key before a deep-path marker "…(N steps)…" that shares the secret\'s start is kept', () => {
    const legit = KEY.slice(0, 21);
    const out = withoutSecrets(cutInside([...Array<string>(31).fill('m'), legit, ...Array<string>(25).fill('n')], 12), [KEY]);
    expect(out[0].path).toContain(`.${legit}…(`);
    expect(out[0].path.includes(`${KEY.slice(0, 12)}…`)).toBe(false);
  });
});
