/**
 * The typed JSON walk. Every traversal here uses an explicit stack, so body depth is limited by
 * memory, not by the call stack; every array strategy is linear or n·log n, never O(n·m).
 */
import { IGNORE, UNORDERED, concretePath, fieldPath, flagsOf, step, type PathMatcher, type PathNode } from './path.js';
import type { DiffKind, Difference } from './types.js';

/** Enough for any real mismatch; past it the examples would not get more useful, only costlier. */
export const MAX_DIFFERENCES = 500;
/** Nodes hashed or deep-compared per comparison before giving up with `too_complex`. */
const WORK_LIMIT = 5_000_000;
const PREVIEW_CHARS = 200;
/** Object fields that identify an element, tried in this order, for aligning arrays of records. */
const IDENTITY_KEYS = ['id', '_id', 'uuid', 'key', 'name'];

export class TooComplexError extends Error {
  constructor() {
    super('too_complex: the body needs more than 5,000,000 steps to align; compare smaller captures');
  }
}

/** State of one comparison; lives only for that call, which keeps the module free of shared state. */
export interface WalkContext {
  m: PathMatcher;
  tolerance: { absolute: number; relative: number };
  out: Difference[];
  capped: boolean;
  work: number;
}

type Obj = Record<string, unknown>;
type JsonType = 'null' | 'array' | 'object' | 'number' | 'string' | 'boolean' | 'other';

const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

function typeOf(v: unknown): JsonType {
  if (v === null) return 'null';
  const t = typeof v;
  if (t === 'object') return Array.isArray(v) ? 'array' : 'object';
  if (t === 'number' || t === 'string' || t === 'boolean') return t;
  return 'other'; // only a transform can produce undefined, bigint, functions…
}

function isContainer(v: unknown): v is Obj | unknown[] {
  return typeof v === 'object' && v !== null;
}

function numbersEqual(a: number, b: number, tol: { absolute: number; relative: number }): boolean {
  if (a === b) return true;
  const d = Math.abs(a - b);
  return d <= tol.absolute || d <= tol.relative * Math.max(Math.abs(a), Math.abs(b));
}

function ignored(m: PathMatcher, s: readonly number[]): boolean {
  return s.length !== 0 && (flagsOf(m, s) & IGNORE) !== 0;
}

function tick(ctx: WalkContext): void {
  if (++ctx.work > WORK_LIMIT) throw new TooComplexError();
}

/** A bounded preview: small values are kept as they are, bigger ones become a cut JSON string. */
export function preview(v: unknown): unknown {
  if (typeof v === 'string') return v.length > PREVIEW_CHARS ? `${v.slice(0, PREVIEW_CHARS)}…` : v;
  if (!isContainer(v)) return v;
  const parts: string[] = [];
  const complete = writeBounded(v, parts, { left: PREVIEW_CHARS });
  return complete ? v : `${parts.join('').slice(0, PREVIEW_CHARS)}…`;
}

/** Recursion is safe: every level spends at least one character of a 200-character budget. */
function writeBounded(v: unknown, parts: string[], budget: { left: number }): boolean {
  if (budget.left <= 0) return false;
  if (!isContainer(v)) {
    const s = v === undefined ? 'null' : typeof v === 'bigint' ? String(v) : JSON.stringify(v) ?? 'null';
    parts.push(s);
    budget.left -= s.length;
    return budget.left >= 0;
  }
  const isArr = Array.isArray(v);
  parts.push(isArr ? '[' : '{');
  budget.left--;
  const keys = isArr ? null : Object.keys(v);
  const n = isArr ? v.length : keys!.length;
  for (let i = 0; i < n; i++) {
    if (i) {
      parts.push(',');
      budget.left--;
    }
    if (keys) {
      const k = `${JSON.stringify(keys[i])}:`;
      parts.push(k);
      budget.left -= k.length;
    }
    if (!writeBounded(isArr ? v[i] : (v as Obj)[keys![i]], parts, budget)) return false;
  }
  parts.push(isArr ? ']' : '}');
  budget.left--;
  return budget.left >= 0;
}

function primitiveKey(v: unknown): string {
  switch (typeof v) {
    case 'number':
      return `n${v}`;
    case 'string':
      return JSON.stringify(v);
    case 'boolean':
      return v ? 't' : 'f';
    default:
      return v === null ? 'z' : `u${String(v)}`;
  }
}

/**
 * An exact canonical string of a value under the rules: keys sorted, ignored paths left out,
 * unordered arrays sorted. Equal strings mean equal values, so it serves as a collision-free hash.
 */
export function canonicalKey(root: unknown, rootState: readonly number[], ctx: WalkContext): string {
  if (!isContainer(root)) return primitiveKey(root);
  interface Frame {
    v: Obj | unknown[];
    s: readonly number[];
    keys: string[] | null;
    i: number;
    parts: string[];
    unordered: boolean;
    pending: string;
  }
  const frame = (v: Obj | unknown[], s: readonly number[]): Frame => ({
    v,
    s,
    keys: Array.isArray(v) ? null : Object.keys(v).sort(),
    i: 0,
    parts: [],
    unordered: Array.isArray(v) && s.length !== 0 && (flagsOf(ctx.m, s) & UNORDERED) !== 0,
    pending: '',
  });
  const stack: Frame[] = [frame(root, rootState)];
  for (;;) {
    const f = stack[stack.length - 1];
    const n = f.keys ? f.keys.length : (f.v as unknown[]).length;
    if (f.i < n) {
      const k: string | number = f.keys ? f.keys[f.i] : f.i;
      f.i++;
      const cs = step(ctx.m, f.s, k);
      if (ignored(ctx.m, cs)) continue;
      tick(ctx);
      const child = f.keys ? (f.v as Obj)[k as string] : (f.v as unknown[])[k as number];
      const label = f.keys ? `${JSON.stringify(k)}:` : '';
      if (isContainer(child)) {
        f.pending = label;
        stack.push(frame(child, cs));
      } else f.parts.push(label + primitiveKey(child));
      continue;
    }
    stack.pop();
    if (f.unordered) f.parts.sort();
    const s = f.keys ? `{${f.parts.join(',')}}` : `[${f.parts.join(',')}]`;
    if (stack.length === 0) return s;
    const parent = stack[stack.length - 1];
    parent.parts.push(parent.pending + s);
  }
}

function multisetEqual(a: unknown[], b: unknown[], s: readonly number[], ctx: WalkContext): boolean {
  if (a.length !== b.length) return false;
  const counts = new Map<string, number>();
  for (let i = 0; i < a.length; i++) {
    const cs = step(ctx.m, s, i);
    if (ignored(ctx.m, cs)) continue;
    const k = canonicalKey(a[i], cs, ctx);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  for (let i = 0; i < b.length; i++) {
    const cs = step(ctx.m, s, i);
    if (ignored(ctx.m, cs)) continue;
    const k = canonicalKey(b[i], cs, ctx);
    const c = counts.get(k);
    if (!c) return false;
    counts.set(k, c - 1);
  }
  return true;
}

/** Recursion is several times faster than the explicit stack for the shallow values that real bodies hold. */
const RECURSION_DEPTH = 200;

/** Equality under the rules (ignore, unordered, tolerance), with early exit. */
export function deepEqual(a: unknown, b: unknown, s: readonly number[], ctx: WalkContext): boolean {
  return equalShallow(a, b, s, ctx, 0);
}

function equalShallow(a: unknown, b: unknown, s: readonly number[], ctx: WalkContext, depth: number): boolean {
  if (a === b) return true;
  // Past the recursion budget the explicit-stack version takes over, so no depth can overflow.
  if (depth > RECURSION_DEPTH) return equalDeep(a, b, s, ctx);
  tick(ctx);
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) {
    return typeof a === 'number' && typeof b === 'number' ? numbersEqual(a, b, ctx.tolerance) : typeOf(a) === 'other' && Object.is(a, b);
  }
  const m = ctx.m;
  const isArr = Array.isArray(a);
  if (isArr !== Array.isArray(b)) return false;
  if (isArr) {
    const aa = a as unknown[];
    const bb = b as unknown[];
    if (s.length !== 0 && flagsOf(m, s) & UNORDERED) return multisetEqual(aa, bb, s, ctx);
    if (aa.length !== bb.length) return false;
    for (let i = 0; i < aa.length; i++) {
      const cs = step(m, s, i);
      if (!ignored(m, cs) && !equalShallow(aa[i], bb[i], cs, ctx, depth + 1)) return false;
    }
    return true;
  }
  const ao = a as Obj;
  const bo = b as Obj;
  const ak = Object.keys(ao);
  let seen = 0;
  for (const k of ak) {
    const cs = step(m, s, k);
    if (ignored(m, cs)) continue;
    if (!hasOwn(bo, k)) return false;
    seen++;
    if (!equalShallow(ao[k], bo[k], cs, ctx, depth + 1)) return false;
  }
  const bk = Object.keys(bo);
  // Same key count and every legacy key present: no key of the candidate can be extra.
  if (bk.length === ak.length && seen === ak.length) return true;
  for (const k of bk) if (!hasOwn(ao, k) && !ignored(m, step(m, s, k))) return false;
  return true;
}

function equalDeep(a0: unknown, b0: unknown, s0: readonly number[], ctx: WalkContext): boolean {
  const stack: [unknown, unknown, readonly number[]][] = [[a0, b0, s0]];
  const m = ctx.m;
  while (stack.length) {
    const [a, b, s] = stack.pop()!;
    if (a === b) continue;
    tick(ctx);
    const ta = typeOf(a);
    if (ta !== typeOf(b)) return false;
    if (ta === 'number') {
      if (!numbersEqual(a as number, b as number, ctx.tolerance)) return false;
    } else if (ta === 'array') {
      const aa = a as unknown[];
      const bb = b as unknown[];
      if (s.length !== 0 && flagsOf(m, s) & UNORDERED) {
        if (!multisetEqual(aa, bb, s, ctx)) return false;
        continue;
      }
      if (aa.length !== bb.length) return false;
      for (let i = aa.length - 1; i >= 0; i--) {
        const cs = step(m, s, i);
        if (!ignored(m, cs)) stack.push([aa[i], bb[i], cs]);
      }
    } else if (ta === 'object') {
      const ao = a as Obj;
      const bo = b as Obj;
      for (const k of Object.keys(ao)) {
        const cs = step(m, s, k);
        if (ignored(m, cs)) continue;
        if (!hasOwn(bo, k)) return false;
        stack.push([ao[k], bo[k], cs]);
      }
      for (const k of Object.keys(bo)) if (!hasOwn(ao, k) && !ignored(m, step(m, s, k))) return false;
    } else if (ta === 'other') {
      if (!Object.is(a, b)) return false;
    } else return false; // strings and booleans that failed ===
  }
  return true;
}

interface Frame {
  a: unknown;
  b: unknown;
  s: readonly number[];
  node: PathNode | null;
}

function emit(ctx: WalkContext, node: PathNode | null, kind: DiffKind, values: { legacy?: unknown; candidate?: unknown }): void {
  if (ctx.out.length >= MAX_DIFFERENCES) {
    ctx.capped = true;
    return;
  }
  const d: Difference = { field: fieldPath(node), path: concretePath(node), kind };
  if ('legacy' in values) d.legacy = preview(values.legacy);
  if ('candidate' in values) d.candidate = preview(values.candidate);
  ctx.out.push(d);
}

/** Compares two parsed bodies and appends their differences to ctx.out. */
export function diffJson(legacy: unknown, candidate: unknown, ctx: WalkContext): void {
  const m = ctx.m;
  const stack: Frame[] = [{ a: legacy, b: candidate, s: m.initial, node: null }];
  const children: Frame[] = [];
  while (stack.length && !ctx.capped) {
    const f = stack.pop()!;
    const flags = f.s.length ? flagsOf(m, f.s) : 0;
    if (flags & IGNORE) continue;
    const { a, b } = f;
    if (a === b) continue;
    const ta = typeOf(a);
    const tb = typeOf(b);
    if (ta !== tb) {
      emit(ctx, f.node, 'type', { legacy: a, candidate: b });
      continue;
    }
    children.length = 0;
    if (ta === 'number') {
      if (!numbersEqual(a as number, b as number, ctx.tolerance)) emit(ctx, f.node, 'value', { legacy: a, candidate: b });
    } else if (ta === 'object') {
      diffObjects(a as Obj, b as Obj, f, ctx, children);
    } else if (ta === 'array') {
      if (flags & UNORDERED) diffUnordered(a as unknown[], b as unknown[], f, ctx, children);
      else diffOrdered(a as unknown[], b as unknown[], f, ctx, children);
    } else if (ta !== 'other' || !Object.is(a, b)) {
      emit(ctx, f.node, 'value', { legacy: a, candidate: b });
    }
    // Reversed so that the stack pops children in document order.
    for (let i = children.length - 1; i >= 0; i--) stack.push(children[i]);
  }
}

function diffObjects(a: Obj, b: Obj, f: Frame, ctx: WalkContext, children: Frame[]): void {
  const m = ctx.m;
  for (const k of Object.keys(a)) {
    const cs = step(m, f.s, k);
    if (ignored(m, cs)) continue;
    const node = { parent: f.node, key: k };
    // hasOwn, not `in`: `constructor` or `__proto__` must be data here, never Object.prototype.
    if (hasOwn(b, k)) children.push({ a: a[k], b: b[k], s: cs, node });
    else emit(ctx, node, 'missing', { legacy: a[k] });
  }
  for (const k of Object.keys(b)) {
    if (hasOwn(a, k)) continue;
    if (ignored(m, step(m, f.s, k))) continue;
    emit(ctx, { parent: f.node, key: k }, 'extra', { candidate: b[k] });
  }
}

function pair(a: unknown[], b: unknown[], i: number, j: number, f: Frame, ctx: WalkContext, children: Frame[]): void {
  // Paired elements are reported at the legacy index: that is where a reader of the old API looks.
  children.push({ a: a[i], b: b[j], s: step(ctx.m, f.s, i), node: { parent: f.node, key: i } });
}

function missing(a: unknown[], i: number, f: Frame, ctx: WalkContext): void {
  if (!ignored(ctx.m, step(ctx.m, f.s, i))) emit(ctx, { parent: f.node, key: i }, 'missing', { legacy: a[i] });
}

function extra(b: unknown[], j: number, f: Frame, ctx: WalkContext): void {
  if (!ignored(ctx.m, step(ctx.m, f.s, j))) emit(ctx, { parent: f.node, key: j }, 'extra', { candidate: b[j] });
}

function elementEqual(a: unknown[], b: unknown[], i: number, j: number, f: Frame, ctx: WalkContext): boolean {
  const cs = step(ctx.m, f.s, i);
  return ignored(ctx.m, cs) || deepEqual(a[i], b[j], cs, ctx);
}

function keysOf(arr: unknown[], idx: number[], f: Frame, ctx: WalkContext): string[] {
  return idx.map((i) => canonicalKey(arr[i], step(ctx.m, f.s, i), ctx));
}

/** The first identity field that every given element carries with a unique scalar value, per side. */
function identityField(a: unknown[], ai: number[], b: unknown[], bi: number[]): string | undefined {
  outer: for (const key of IDENTITY_KEYS) {
    for (const [arr, idx] of [
      [a, ai],
      [b, bi],
    ] as const) {
      const seen = new Set<unknown>();
      for (const i of idx) {
        const el = arr[i];
        if (typeOf(el) !== 'object' || !hasOwn(el as Obj, key)) continue outer;
        const id = (el as Obj)[key];
        if ((typeof id !== 'string' && typeof id !== 'number') || seen.has(id)) continue outer;
        seen.add(id);
      }
    }
    return key;
  }
  return undefined;
}

/** Pairs elements by identity; reports the rest as missing/extra and one `order` if pairs cross. */
function alignByIdentity(a: unknown[], ai: number[], b: unknown[], bi: number[], key: string, f: Frame, ctx: WalkContext, children: Frame[]): void {
  const where = new Map<unknown, number>();
  for (const j of bi) where.set((b[j] as Obj)[key], j);
  const used = new Set<number>();
  let last = -1;
  let crossed = false;
  for (const i of ai) {
    const j = where.get((a[i] as Obj)[key]);
    if (j === undefined) {
      missing(a, i, f, ctx);
      continue;
    }
    used.add(j);
    if (j < last) crossed = true;
    last = j;
    if (!elementEqual(a, b, i, j, f, ctx)) pair(a, b, i, j, f, ctx, children);
  }
  if (crossed) emit(ctx, f.node, 'order', { legacy: ai.map((i) => (a[i] as Obj)[key]), candidate: bi.map((j) => (b[j] as Obj)[key]) });
  for (const j of bi) if (!used.has(j)) extra(b, j, f, ctx);
}

/** Same-length arrays: element-wise; a permutation is one `order`; records moved and edited align by id. */
function diffOrdered(a: unknown[], b: unknown[], f: Frame, ctx: WalkContext, children: Frame[]): void {
  if (a.length === b.length) {
    // One element cannot be out of order: descend without the equality pre-pass, which would
    // otherwise re-walk the subtree at every level of `[[[…]]]` and turn depth into depth².
    if (a.length === 1) {
      if (!ignored(ctx.m, step(ctx.m, f.s, 0))) pair(a, b, 0, 0, f, ctx, children);
      return;
    }
    const differing: number[] = [];
    for (let i = 0; i < a.length; i++) if (!elementEqual(a, b, i, i, f, ctx)) differing.push(i);
    if (differing.length >= 2) {
      const ka = keysOf(a, differing, f, ctx);
      const kb = keysOf(b, differing, f, ctx);
      if (sameMultiset(ka, kb)) {
        emit(ctx, f.node, 'order', { legacy: a[differing[0]], candidate: b[differing[0]] });
        return;
      }
      const id = identityField(a, differing, b, differing);
      if (id) {
        alignByIdentity(a, differing, b, differing, id, f, ctx, children);
        return;
      }
    }
    for (const i of differing) pair(a, b, i, i, f, ctx, children);
    return;
  }
  emit(ctx, f.node, 'length', { legacy: a.length, candidate: b.length });
  let lo = 0;
  while (lo < a.length && lo < b.length && elementEqual(a, b, lo, lo, f, ctx)) lo++;
  let endA = a.length;
  let endB = b.length;
  while (endA > lo && endB > lo && elementEqual(a, b, endA - 1, endB - 1, f, ctx)) {
    endA--;
    endB--;
  }
  const ai = range(lo, endA);
  const bi = range(lo, endB);
  if (ai.length === 0 || bi.length === 0) {
    for (const i of ai) missing(a, i, f, ctx);
    for (const j of bi) extra(b, j, f, ctx);
    return;
  }
  const id = identityField(a, ai, b, bi);
  if (id) alignByIdentity(a, ai, b, bi, id, f, ctx, children);
  else alignByHash(a, ai, b, bi, f, ctx, children);
}

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let i = from; i < to; i++) out.push(i);
  return out;
}

function sameMultiset(ka: string[], kb: string[]): boolean {
  const counts = new Map<string, number>();
  for (const k of ka) counts.set(k, (counts.get(k) ?? 0) + 1);
  for (const k of kb) {
    const c = counts.get(k);
    if (!c) return false;
    counts.set(k, c - 1);
  }
  return true;
}

/**
 * Greedy monotone matching of equal elements (each candidate index is looked up in a hash map and
 * only moves forward), then the gaps between matches are paired position by position; what is
 * left over in a gap is missing or extra. Linear, unlike an LCS.
 */
function alignByHash(a: unknown[], ai: number[], b: unknown[], bi: number[], f: Frame, ctx: WalkContext, children: Frame[]): void {
  const kb = keysOf(b, bi, f, ctx);
  const positions = new Map<string, { list: number[]; next: number }>();
  kb.forEach((k, n) => {
    const p = positions.get(k);
    if (p) p.list.push(bi[n]);
    else positions.set(k, { list: [bi[n]], next: 0 });
  });
  const ka = keysOf(a, ai, f, ctx);
  let prevA = ai[0] - 1;
  let prevB = bi[0] - 1;
  const flushGap = (toA: number, toB: number): void => {
    let i = prevA + 1;
    let j = prevB + 1;
    for (; i < toA && j < toB; i++, j++) pair(a, b, i, j, f, ctx, children);
    for (; i < toA; i++) missing(a, i, f, ctx);
    for (; j < toB; j++) extra(b, j, f, ctx);
  };
  ka.forEach((k, n) => {
    const p = positions.get(k);
    if (!p) return;
    while (p.next < p.list.length && p.list[p.next] <= prevB) p.next++;
    if (p.next === p.list.length) return;
    const i = ai[n];
    const j = p.list[p.next++];
    flushGap(i, j);
    prevA = i;
    prevB = j;
  });
  flushGap(ai[ai.length - 1] + 1, bi[bi.length - 1] + 1);
}

/** Multiset comparison: equal elements cancel by canonical key; leftovers pair by identity, else in order. */
function diffUnordered(a: unknown[], b: unknown[], f: Frame, ctx: WalkContext, children: Frame[]): void {
  const m = ctx.m;
  const pool = new Map<string, number[]>();
  for (let j = 0; j < b.length; j++) {
    const cs = step(m, f.s, j);
    if (ignored(m, cs)) continue;
    const k = canonicalKey(b[j], cs, ctx);
    const list = pool.get(k);
    if (list) list.push(j);
    else pool.set(k, [j]);
  }
  const leftA: number[] = [];
  for (let i = 0; i < a.length; i++) {
    const cs = step(m, f.s, i);
    if (ignored(m, cs)) continue;
    const list = pool.get(canonicalKey(a[i], cs, ctx));
    if (list && list.length) list.pop();
    else leftA.push(i);
  }
  const leftB: number[] = [];
  for (const list of pool.values()) leftB.push(...list);
  leftB.sort((x, y) => x - y);
  if (a.length !== b.length) emit(ctx, f.node, 'length', { legacy: a.length, candidate: b.length });
  if (leftA.length === 0 || leftB.length === 0) {
    for (const i of leftA) missing(a, i, f, ctx);
    for (const j of leftB) extra(b, j, f, ctx);
    return;
  }
  const id = identityField(a, leftA, b, leftB);
  if (id) {
    // Order is not a difference here, so pair by identity without the crossing check.
    const where = new Map<unknown, number>();
    for (const j of leftB) where.set((b[j] as Obj)[id], j);
    const used = new Set<number>();
    for (const i of leftA) {
      const j = where.get((a[i] as Obj)[id]);
      if (j === undefined) missing(a, i, f, ctx);
      else {
        used.add(j);
        pair(a, b, i, j, f, ctx, children);
      }
    }
    for (const j of leftB) if (!used.has(j)) extra(b, j, f, ctx);
    return;
  }
  const n = Math.min(leftA.length, leftB.length);
  for (let x = 0; x < n; x++) pair(a, b, leftA[x], leftB[x], f, ctx, children);
  for (let x = n; x < leftA.length; x++) missing(a, leftA[x], f, ctx);
  for (let x = n; x < leftB.length; x++) extra(b, leftB[x], f, ctx);
}
