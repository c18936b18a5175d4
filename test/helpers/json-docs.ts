/**
 * Seeded JSON documents and edits for the comparison engine's fast paths, and the full path they
 * must agree with (test/compare-lockstep.test.ts, test/compare-recent.test.ts). The texts keep
 * number texts and duplicate keys as written.
 */
import { expect } from 'vitest';
import { BUILTIN_COMPARE, type CompareSettings } from '../../src/config/load.js';
import { compareResponses, compileRules, type Captured, type CompareState, type Comparison, type CompiledRules } from '../../src/compare/index.js';

export const ctx = { route: 'r', method: 'GET', path: '/x' };

export function rulesOf(over: Partial<CompareSettings> = {}): CompiledRules {
  return compileRules({ ...BUILTIN_COMPARE, ...over });
}

export function cap(text: string): Captured {
  return { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(text), truncated: false };
}

export const identity = (legacy: unknown, candidate: unknown): { legacy: unknown; candidate: unknown } => ({ legacy, candidate });

export function full(a: string, b: string, rules: CompiledRules): Comparison {
  return compareResponses(cap(a), cap(b), { ...rules, transform: identity, transformName: 'identity' }, ctx);
}

export function fast(a: string, b: string, rules: CompiledRules, state?: CompareState): Comparison {
  return compareResponses(cap(a), cap(b), rules, ctx, state);
}

/** Pads a document past the fast path's minimum size without changing what differs. */
export function padded(inner: string): string {
  return `{"pad":"${'p'.repeat(600)}","doc":${inner}}`;
}

// ---- a seeded generator of JSON texts that keeps number texts and duplicate keys as written ----

export type Node = { t: 'num'; text: string } | { t: 'str'; v: string } | { t: 'lit'; v: 'true' | 'false' | 'null' } | { t: 'arr'; items: Node[] } | { t: 'obj'; entries: [string, Node][] };

export const KEYS = ['id', 'name', 'meta', 'requestId', 'items', 'tags', 'price', 'etag', 'updatedAt', 'a', 'b', 'with "quote"', 'back\\slash', 'é', '1', '__proto__', 'x y'];
export const NUMBERS = ['0', '1', '-1', '12', '123', '1.0', '1.5', '0.1', '1e5', '-0', '3.14159', '2.50', '100', '1E2', '0.0000001', '-12.5e-3'];
/** Beyond ±2^53: rarer, since one outside the window sends the comparison down the full path. */
export const WIDE = ['9007199254740993', '9007199254740992', '12345678901234567890', '1e400'];

export function number(r: () => number): Node {
  return { t: 'num', text: r() < 0.05 ? WIDE[Math.floor(r() * WIDE.length)] : NUMBERS[Math.floor(r() * NUMBERS.length)] };
}
export const STRINGS = ['', 'a', 'abc', 'say "hi"', 'back\\slash', 'line\nbreak', 'é', '😀', '\u2028', 'tab\t', 'req-1', 'req-2', '2024-05-01T12:00:00Z', 'x'.repeat(30)];

export function gen(r: () => number, depth: number): Node {
  const roll = r();
  if (depth <= 0 || roll < 0.45) {
    const k = r();
    if (k < 0.4) return number(r);
    if (k < 0.85) return { t: 'str', v: STRINGS[Math.floor(r() * STRINGS.length)] };
    return { t: 'lit', v: (['true', 'false', 'null'] as const)[Math.floor(r() * 3)] };
  }
  if (roll < 0.7) {
    const n = Math.floor(r() * 5);
    // Sometimes an array of records with ids, which the walk aligns by identity.
    if (r() < 0.4) return { t: 'arr', items: Array.from({ length: n + 1 }, (_, i) => ({ t: 'obj', entries: [['id', { t: 'num', text: String(i + 1) }], ['name', gen(r, depth - 2)]] }) as Node) };
    return { t: 'arr', items: Array.from({ length: n }, () => gen(r, depth - 1)) };
  }
  const n = Math.floor(r() * 5);
  const entries: [string, Node][] = [];
  const used = new Set<string>();
  for (let i = 0; i < n; i++) {
    const k = KEYS[Math.floor(r() * KEYS.length)];
    if (used.has(k)) continue;
    used.add(k);
    entries.push([k, gen(r, depth - 1)]);
  }
  return { t: 'obj', entries };
}

export function write(n: Node, pretty: boolean, indent = ''): string {
  const nl = pretty ? `\n${indent}  ` : '';
  const end = pretty ? `\n${indent}` : '';
  switch (n.t) {
    case 'num':
      return n.text;
    case 'str':
      return JSON.stringify(n.v);
    case 'lit':
      return n.v;
    case 'arr':
      return n.items.length ? `[${n.items.map((x) => nl + write(x, pretty, `${indent}  `)).join(',')}${end}]` : '[]';
    case 'obj':
      return n.entries.length ? `{${n.entries.map(([k, v]) => `${nl}${JSON.stringify(k)}:${pretty ? ' ' : ''}${write(v, pretty, `${indent}  `)}`).join(',')}${end}}` : '{}';
  }
}

/**
 * Compact, but every number and literal right-aligned in 8 columns, as column-aligned printers
 * write them (`"n":      12`): an edit to a value then also changes the spaces before it.
 */
export function writeAligned(n: Node): string {
  switch (n.t) {
    case 'num':
      return n.text.padStart(8);
    case 'lit':
      return n.v.padStart(8);
    case 'str':
      return JSON.stringify(n.v);
    case 'arr':
      return `[${n.items.map(writeAligned).join(',')}]`;
    case 'obj':
      return `{${n.entries.map(([k, v]) => `${JSON.stringify(k)}:${writeAligned(v)}`).join(',')}}`;
  }
}

/** Every node with the container holding it, so a mutation can pick any place. */
export function places(root: Node): { parent: Node | null; at: number; node: Node }[] {
  const out: { parent: Node | null; at: number; node: Node }[] = [{ parent: null, at: -1, node: root }];
  for (let i = 0; i < out.length; i++) {
    const n = out[i].node;
    if (n.t === 'arr') n.items.forEach((c, at) => out.push({ parent: n, at, node: c }));
    else if (n.t === 'obj') n.entries.forEach(([, c], at) => out.push({ parent: n, at, node: c }));
  }
  return out;
}

export function replace(parent: Node, at: number, node: Node): void {
  if (parent.t === 'arr') parent.items[at] = node;
  else if (parent.t === 'obj') parent.entries[at] = [parent.entries[at][0], node];
}

/** One small random edit, in place. */
export function mutate(root: Node, r: () => number): void {
  // The root is left alone: a difference there is the full path's by definition.
  const all = places(root).slice(1);
  const pick = all[Math.floor(r() * all.length)];
  const { parent, at, node } = pick;
  const op = Math.floor(r() * 10);
  const containers = all.filter((p) => p.node.t === 'arr' || p.node.t === 'obj');
  if (containers.length === 0) return;
  const c = containers[Math.floor(r() * containers.length)].node;
  switch (op) {
    case 0: // change a scalar's value
      if (parent && node.t === 'num') replace(parent, at, r() < 0.5 ? { t: 'num', text: `${node.text}3` } : number(r));
      else if (parent && node.t === 'str') replace(parent, at, { t: 'str', v: r() < 0.5 ? `${node.v}"x` : STRINGS[Math.floor(r() * STRINGS.length)] });
      else if (parent) replace(parent, at, gen(r, 0));
      return;
    case 1: // change a type
      if (parent) replace(parent, at, node.t === 'str' ? { t: 'num', text: '1' } : { t: 'str', v: '1' });
      return;
    case 2: // add a key or an element
      if (c.t === 'obj') c.entries.splice(Math.floor(r() * (c.entries.length + 1)), 0, [KEYS[Math.floor(r() * KEYS.length)], gen(r, 1)]);
      else if (c.t === 'arr') c.items.splice(Math.floor(r() * (c.items.length + 1)), 0, c.items.length && r() < 0.5 ? c.items[0] : gen(r, 1));
      return;
    case 3: // remove a key or an element
      if (c.t === 'obj' && c.entries.length) c.entries.splice(Math.floor(r() * c.entries.length), 1);
      else if (c.t === 'arr' && c.items.length) c.items.splice(Math.floor(r() * c.items.length), 1);
      return;
    case 4: // reorder keys or elements
      if (c.t === 'obj') c.entries.reverse();
      else if (c.t === 'arr') c.items.reverse();
      return;
    case 5: // rename a key
      if (c.t === 'obj' && c.entries.length) {
        const i = Math.floor(r() * c.entries.length);
        c.entries[i] = [`${c.entries[i][0]}${r() < 0.5 ? '"' : '2'}`, c.entries[i][1]];
      }
      return;
    case 6: // a number written another way, or a wide number moved by one
      if (parent && node.t === 'num') replace(parent, at, { t: 'num', text: node.text.includes('.') ? `${node.text}0` : node.text === '9007199254740993' ? '9007199254740992' : `${node.text}.0` });
      return;
    case 7: // a duplicate key later in an object (JSON.parse keeps the last)
      if (c.t === 'obj' && c.entries.length) c.entries.push([c.entries[0][0], gen(r, 1)]);
      return;
    case 8: // the noisy field of real answers
      if (c.t === 'obj') c.entries.push(['requestId', { t: 'str', v: `req-${Math.floor(r() * 1000)}` }]);
      return;
    default: // invalid JSON now and then
      if (parent && r() < 0.3) replace(parent, at, { t: 'lit', v: 'tru' as 'true' });
      else if (parent) replace(parent, at, { t: 'num', text: r() < 0.5 ? '01' : '1.' });
  }
}

/** A container, so that most edits land below the root. */
export function genContainer(r: () => number, depth: number): Node {
  for (;;) {
    const n = gen(r, depth);
    if (n.t === 'obj' || n.t === 'arr') return n;
  }
}

export function clone(n: Node): Node {
  return structuredClone(n);
}

export const RULE_SETS: [string, Partial<CompareSettings>][] = [
  ['none', {}],
  ['ignore', { ignore: ['$.doc.meta.requestId', '$..etag', '$.doc.items[*].name', '$..requestId'] }],
  ['ignore a container', { ignore: ['$.doc.meta', '$.doc.a'] }],
  ['unordered', { unordered: ['$.doc.tags', '$..items', '$.doc'] }],
  ['tolerance', { tolerance: { absolute: 0.01, relative: 0 } }],
  ['lenient numbers', { numberFormat: 'lenient' }],
  ['sensitive', { sensitive: ['$.doc.name', 'price'] }],
  ['ignore the body', { ignore: ['$'] }],
];


/** Asserts fast = full under each rule set; returns how many comparisons that was. */
export function agreeUnderEveryRuleSet(a: string, b: string, compiled: readonly (readonly [string, CompiledRules])[]): number {
  for (const [name, rules] of compiled) {
    const got = fast(a, b, rules);
    const want = full(a, b, rules);
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      // The case that broke, in full, so it can be pasted into a targeted test.
      expect({ rules: name, a, b, got }).toEqual({ rules: name, a, b, got: want });
    }
  }
  return compiled.length;
}

