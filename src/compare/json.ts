/**
 * The typed JSON walk. Every traversal here uses an explicit stack, so body depth is limited by
 * memory, not by the call stack; every array strategy is linear or n·log n, never O(n·m).
 */
import { hasLossyNumber, lossyNumbers, textDifference, type NumberText } from './numbers.js';
import { IGNORE, UNORDERED, concretePath, fieldPath, flagsOf, ignoredAt, step, type PathKey, type PathMatcher, type PathNode } from './path.js';
import type { DiffKind, Difference } from './types.js';

/** Enough for any real mismatch; past it the examples would not get more useful, only costlier. */
export const MAX_DIFFERENCES = 500;
/** Nodes hashed or deep-compared per comparison before giving up with `too_complex`. */
const WORK_LIMIT = 5_000_000;
/** One step of the budget per 4 characters of canonical keys built (a step is a value visited). */
const KEY_CHARS_PER_STEP_SHIFT = 2;
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
  /**
   * Set when two equal parsed numbers were met that a 64-bit float may have rounded (beyond ±2^53,
   * or infinite): their texts can still differ, so the caller checks the number texts.
   */
  wideNumbers?: boolean;
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

/** Notes an equal number pair that may hide different texts; always true, so it can sit in a return. */
function wide(v: number, ctx: WalkContext): true {
  if (v > MAX_SAFE || v < -MAX_SAFE || v !== v) ctx.wideNumbers = true;
  return true;
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

function tick(ctx: WalkContext, steps = 1): void {
  if ((ctx.work += steps) > WORK_LIMIT) throw new TooComplexError();
}

/** A bounded preview: small values are kept as they are, bigger ones become a cut JSON string. */
export function preview(v: unknown): unknown {
  if (typeof v === 'string') return v.length > PREVIEW_CHARS ? `${v.slice(0, PREVIEW_CHARS)}…` : v;
  // A number past a double's range (1e400) parses to ±Infinity, which JSON would show as null.
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
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
  if (!isContainer(root)) {
    if (typeof root === 'number') wide(root, ctx);
    return primitiveKey(root);
  }
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
      if (ignoredAt(ctx.m, cs)) continue;
      tick(ctx);
      const child = f.keys ? (f.v as Obj)[k as string] : (f.v as unknown[])[k as number];
      const label = f.keys ? `${JSON.stringify(k)}:` : '';
      if (isContainer(child)) {
        f.pending = label;
        stack.push(frame(child, cs));
      } else {
        if (typeof child === 'number') wide(child, ctx);
        f.parts.push(label + primitiveKey(child));
      }
      continue;
    }
    stack.pop();
    if (f.unordered) f.parts.sort();
    const s = f.keys ? `{${f.parts.join(',')}}` : `[${f.parts.join(',')}]`;
    // The characters built are work too: every level copies its children's strings, so a deep value
    // costs depth² characters per key, and keys taken again at each level of an array diff depth³.
    // Counted against the same budget, such a body ends as too_complex within it, not seconds later.
    tick(ctx, s.length >> KEY_CHARS_PER_STEP_SHIFT);
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
    if (ignoredAt(ctx.m, cs)) continue;
    const k = canonicalKey(a[i], cs, ctx);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  for (let i = 0; i < b.length; i++) {
    const cs = step(ctx.m, s, i);
    if (ignoredAt(ctx.m, cs)) continue;
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
  if (a === b) return typeof a !== 'number' || wide(a, ctx);
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
      if (!ignoredAt(m, cs) && !equalShallow(aa[i], bb[i], cs, ctx, depth + 1)) return false;
    }
    return true;
  }
  const ao = a as Obj;
  const bo = b as Obj;
  const ak = Object.keys(ao);
  let seen = 0;
  for (const k of ak) {
    const cs = step(m, s, k);
    if (ignoredAt(m, cs)) continue;
    if (!hasOwn(bo, k)) return false;
    seen++;
    if (!equalShallow(ao[k], bo[k], cs, ctx, depth + 1)) return false;
  }
  const bk = Object.keys(bo);
  // Same key count and every legacy key present: no key of the candidate can be extra.
  if (bk.length === ak.length && seen === ak.length) return true;
  for (const k of bk) if (!hasOwn(ao, k) && !ignoredAt(m, step(m, s, k))) return false;
  return true;
}

function equalDeep(a0: unknown, b0: unknown, s0: readonly number[], ctx: WalkContext): boolean {
  const stack: [unknown, unknown, readonly number[]][] = [[a0, b0, s0]];
  const m = ctx.m;
  while (stack.length) {
    const [a, b, s] = stack.pop()!;
    if (a === b) {
      if (typeof a === 'number') wide(a, ctx);
      continue;
    }
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
        if (!ignoredAt(m, cs)) stack.push([aa[i], bb[i], cs]);
      }
    } else if (ta === 'object') {
      const ao = a as Obj;
      const bo = b as Obj;
      for (const k of Object.keys(ao)) {
        const cs = step(m, s, k);
        if (ignoredAt(m, cs)) continue;
        if (!hasOwn(bo, k)) return false;
        stack.push([ao[k], bo[k], cs]);
      }
      for (const k of Object.keys(bo)) if (!hasOwn(ao, k) && !ignoredAt(m, step(m, s, k))) return false;
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

/**
 * Where a walk starts: the root, or (for the lockstep fast path) one container inside the bodies,
 * given by its matcher state and its path node, so rules and paths come out as from the root.
 */
export interface WalkBase {
  s: readonly number[];
  node: PathNode | null;
}

/** Compares two parsed bodies (or two values at `base`) and appends their differences to ctx.out. */
export function diffJson(legacy: unknown, candidate: unknown, ctx: WalkContext, base?: WalkBase): void {
  const m = ctx.m;
  const stack: Frame[] = [{ a: legacy, b: candidate, s: base ? base.s : m.initial, node: base ? base.node : null }];
  const children: Frame[] = [];
  while (stack.length && !ctx.capped) {
    const f = stack.pop()!;
    const flags = f.s.length ? flagsOf(m, f.s) : 0;
    if (flags & IGNORE) continue;
    const { a, b } = f;
    if (a === b) {
      if (typeof a === 'number') wide(a, ctx);
      continue;
    }
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
    if (ignoredAt(m, cs)) continue;
    const node = { parent: f.node, key: k };
    // hasOwn, not `in`: `constructor` or `__proto__` must be data here, never Object.prototype.
    if (hasOwn(b, k)) children.push({ a: a[k], b: b[k], s: cs, node });
    else emit(ctx, node, 'missing', { legacy: a[k] });
  }
  for (const k of Object.keys(b)) {
    if (hasOwn(a, k)) continue;
    if (ignoredAt(m, step(m, f.s, k))) continue;
    emit(ctx, { parent: f.node, key: k }, 'extra', { candidate: b[k] });
  }
}

function pair(a: unknown[], b: unknown[], i: number, j: number, f: Frame, ctx: WalkContext, children: Frame[]): void {
  // Paired elements are reported at the legacy index: that is where a reader of the old API looks.
  children.push({ a: a[i], b: b[j], s: step(ctx.m, f.s, i), node: { parent: f.node, key: i } });
}

function missing(a: unknown[], i: number, f: Frame, ctx: WalkContext): void {
  if (!ignoredAt(ctx.m, step(ctx.m, f.s, i))) emit(ctx, { parent: f.node, key: i }, 'missing', { legacy: a[i] });
}

function extra(b: unknown[], j: number, f: Frame, ctx: WalkContext): void {
  if (!ignoredAt(ctx.m, step(ctx.m, f.s, j))) emit(ctx, { parent: f.node, key: j }, 'extra', { candidate: b[j] });
}

function elementEqual(a: unknown[], b: unknown[], i: number, j: number, f: Frame, ctx: WalkContext): boolean {
  const cs = step(ctx.m, f.s, i);
  return ignoredAt(ctx.m, cs) || deepEqual(a[i], b[j], cs, ctx);
}

function keysOf(arr: unknown[], idx: number[], f: Frame, ctx: WalkContext): string[] {
  return idx.map((i) => canonicalKey(arr[i], step(ctx.m, f.s, i), ctx));
}

/** The identity value of an element, and its string form for matching across a type change (22 → "22"). */
function idOf(el: unknown, key: string): string | number {
  return (el as Obj)[key] as string | number;
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

/**
 * Where each candidate id is. Ids are looked up as they are first, then by their string form, so a
 * migration that turned numeric ids into strings still pairs its records; the walk then reports the
 * id's `type` change once per record and every real change inside it. A string form shared by two
 * candidates (22 and "22") is ambiguous and not used.
 */
function idIndex(b: unknown[], bi: number[], key: string): (id: string | number) => number | undefined {
  const exact = new Map<unknown, number>();
  for (const j of bi) exact.set(idOf(b[j], key), j);
  let loose: Map<string, number> | undefined;
  return (id) => {
    const j = exact.get(id);
    if (j !== undefined) return j;
    if (loose === undefined) {
      loose = new Map();
      const dup = new Set<string>();
      for (const jj of bi) {
        const s = String(idOf(b[jj], key));
        if (loose.has(s)) dup.add(s);
        loose.set(s, jj);
      }
      for (const s of dup) loose.delete(s);
    }
    return loose.get(String(id));
  };
}

/** Pairs elements by identity; reports the rest as missing/extra and one `order` if pairs cross. */
function alignByIdentity(a: unknown[], ai: number[], b: unknown[], bi: number[], key: string, f: Frame, ctx: WalkContext, children: Frame[]): void {
  const where = idIndex(b, bi, key);
  const used = new Set<number>();
  let last = -1;
  let crossed = false;
  for (const i of ai) {
    const j = where(idOf(a[i], key));
    if (j === undefined || used.has(j)) {
      missing(a, i, f, ctx);
      continue;
    }
    used.add(j);
    if (j < last) crossed = true;
    last = j;
    if (!elementEqual(a, b, i, j, f, ctx)) pair(a, b, i, j, f, ctx, children);
  }
  if (crossed) emit(ctx, f.node, 'order', { legacy: ai.map((i) => idOf(a[i], key)), candidate: bi.map((j) => idOf(b[j], key)) });
  for (const j of bi) if (!used.has(j)) extra(b, j, f, ctx);
}

/** Same-length arrays: element-wise; a permutation is one `order`; records moved and edited align by id. */
function diffOrdered(a: unknown[], b: unknown[], f: Frame, ctx: WalkContext, children: Frame[]): void {
  if (a.length === b.length) {
    // One element cannot be out of order: descend without the equality pre-pass, which would
    // otherwise re-walk the subtree at every level of `[[[…]]]` and turn depth into depth².
    if (a.length === 1) {
      if (!ignoredAt(ctx.m, step(ctx.m, f.s, 0))) pair(a, b, 0, 0, f, ctx, children);
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
      // Most positions differ: a record inserted at the top of a page shifts every other one, which
      // zipping would report as a change of every element. Align the differing span instead.
      if (differing.length * 2 > a.length) {
        const lo = differing[0];
        const hi = differing[differing.length - 1] + 1;
        alignByHash(a, range(lo, hi), b, range(lo, hi), f, ctx, children);
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

/** Edit-graph steps (about N·D) spent on one array before falling back to the greedy alignment. */
const ALIGN_BUDGET = 200_000;

/**
 * Aligns two spans of elements by their canonical keys and reports the result: elements equal under
 * the rules are matched, the gaps between matches are paired position by position (an edited
 * element stays one element with changes inside), and what a gap has left over is missing or
 * extra. The matching is the longest common subsequence found by Myers' O(N·D) diff, so a page
 * shifted by one record is one missing and one extra and [1,2,3] → [1,3,4] is −2 +4; it costs
 * linear time when few elements differ. Past ALIGN_BUDGET steps a greedy monotone matching (linear,
 * not always minimal) takes over, so no body can make this quadratic.
 */
function alignByHash(a: unknown[], ai: number[], b: unknown[], bi: number[], f: Frame, ctx: WalkContext, children: Frame[]): void {
  const ka = keysOf(a, ai, f, ctx);
  const kb = keysOf(b, bi, f, ctx);
  // The search is charged to the comparison's work budget too, so many mid-sized arrays cannot add
  // up to quadratic time; when the budget is spent, the greedy matching (linear) answers.
  const meter = { steps: 0 };
  const budget = Math.min(ALIGN_BUDGET, WORK_LIMIT - ctx.work);
  const matches = (anyCommon(ka, kb) ? lcsMatches(ka, kb, budget, meter) : []) ?? greedyMatches(ka, kb);
  ctx.work += meter.steps;
  let prevA = -1;
  let prevB = -1;
  const flushGap = (toA: number, toB: number): void => {
    let x = prevA + 1;
    let y = prevB + 1;
    for (; x < toA && y < toB; x++, y++) pair(a, b, ai[x], bi[y], f, ctx, children);
    for (; x < toA; x++) missing(a, ai[x], f, ctx);
    for (; y < toB; y++) extra(b, bi[y], f, ctx);
  };
  for (const [x, y] of matches) {
    flushGap(x, y);
    prevA = x;
    prevB = y;
  }
  flushGap(ka.length, kb.length);
}

/** Matched index pairs (into ka, kb) of a longest common subsequence, or undefined past the budget. */
export function lcsMatches(ka: readonly string[], kb: readonly string[], budget: number, meter: { steps: number } = { steps: 0 }): [number, number][] | undefined {
  const n = ka.length;
  const m = kb.length;
  const max = n + m;
  const offset = max + 1;
  const v = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  let steps = 0;
  let found = -1;
  for (let d = 0; d <= max && found < 0; d++) {
    // Only the diagonals round d can read are kept, so memory grows like D², within the budget.
    trace.push(v.slice(offset - d - 1, offset + d + 2));
    steps += 2 * d + 3;
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[offset + k - 1] < v[offset + k + 1]) ? v[offset + k + 1] : v[offset + k - 1] + 1;
      let y = x - k;
      while (x < n && y < m && ka[x] === kb[y]) {
        x++;
        y++;
        steps++;
      }
      v[offset + k] = x;
      if (++steps > budget) {
        meter.steps += steps;
        return undefined;
      }
      if (x >= n && y >= m) {
        found = d;
        break;
      }
    }
  }
  meter.steps += steps;
  // Walk the trace back from (n, m), collecting the diagonal moves (the matches).
  const out: [number, number][] = [];
  let x = n;
  let y = m;
  for (let d = found; d >= 0; d--) {
    const vd = trace[d];
    const at = (kk: number): number => vd[kk + d + 1];
    const k = x - y;
    let prevK: number;
    if (d === 0) prevK = k;
    else prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = d === 0 ? 0 : at(prevK);
    const prevY = prevX - prevK;
    const startX = d === 0 ? 0 : prevK === k + 1 ? prevX : prevX + 1;
    while (x > startX && y > startX - k) {
      x--;
      y--;
      out.push([x, y]);
    }
    x = prevX;
    y = prevY;
  }
  return out.reverse();
}

/** Whether any element of one side equals one of the other: without one, there is nothing to align. */
function anyCommon(ka: readonly string[], kb: readonly string[]): boolean {
  const set = new Set(kb);
  for (const k of ka) if (set.has(k)) return true;
  return false;
}

/** Greedy monotone matching: each legacy key takes the next unused equal candidate key after the last match. */
function greedyMatches(ka: readonly string[], kb: readonly string[]): [number, number][] {
  const positions = new Map<string, { list: number[]; next: number }>();
  kb.forEach((k, y) => {
    const p = positions.get(k);
    if (p) p.list.push(y);
    else positions.set(k, { list: [y], next: 0 });
  });
  const out: [number, number][] = [];
  let prevB = -1;
  ka.forEach((k, x) => {
    const p = positions.get(k);
    if (!p) return;
    while (p.next < p.list.length && p.list[p.next] <= prevB) p.next++;
    if (p.next === p.list.length) return;
    prevB = p.list[p.next++];
    out.push([x, prevB]);
  });
  return out;
}

/** Multiset comparison: equal elements cancel by canonical key; leftovers pair by identity, else in order. */
function diffUnordered(a: unknown[], b: unknown[], f: Frame, ctx: WalkContext, children: Frame[]): void {
  const m = ctx.m;
  const pool = new Map<string, number[]>();
  for (let j = 0; j < b.length; j++) {
    const cs = step(m, f.s, j);
    if (ignoredAt(m, cs)) continue;
    const k = canonicalKey(b[j], cs, ctx);
    const list = pool.get(k);
    if (list) list.push(j);
    else pool.set(k, [j]);
  }
  const leftA: number[] = [];
  for (let i = 0; i < a.length; i++) {
    const cs = step(m, f.s, i);
    if (ignoredAt(m, cs)) continue;
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
  // In a multiset, a scalar left over on each side is one gone and one new (a set {1,2,3} that
  // became {2,3,4} lost 1 and gained 4); only records are worth pairing, to show their changed fields.
  const records = leftA.every((i) => isContainer(a[i])) && leftB.every((j) => isContainer(b[j]));
  const n = records ? Math.min(leftA.length, leftB.length) : 0;
  for (let x = 0; x < n; x++) pair(a, b, leftA[x], leftB[x], f, ctx, children);
  for (let x = n; x < leftA.length; x++) missing(a, leftA[x], f, ctx);
  for (let x = n; x < leftB.length; x++) extra(b, leftB[x], f, ctx);
}

/**
 * The second look at numbers, after the walk: where both bodies hold a number at one path with one
 * parsed value but different texts, decide on the texts. Different numbers (`…993` vs `…992`,
 * `1e400` vs `1e401`) are a `value` difference unless a tolerance covers them; one number written
 * two ways (`1` vs `1.0`) is `number_format`, reported unless `numberFormat` is lenient.
 * Paths are compared as they stand in both bodies (a mapping's renamed field is not followed, and
 * arrays compared as multisets are skipped), which is where such values meet in practice.
 */
export function diffNumberTexts(
  legacyText: string,
  candidateText: string,
  legacy: unknown,
  candidate: unknown,
  ctx: WalkContext,
  formatMatters: boolean,
  base?: WalkBase,
): void {
  const la = hasLossyNumber(legacyText) ? lossyNumbers(legacyText) : undefined;
  const ca = hasLossyNumber(candidateText) ? lossyNumbers(candidateText) : undefined;
  if (la === undefined && ca === undefined) return;
  const seen = new Set<string>();
  for (const side of [la, ca]) {
    if (side === undefined) continue;
    for (const [key, { keys }] of side) {
      if (seen.has(key)) continue;
      seen.add(key);
      const a = valueAt(legacy, keys);
      const b = valueAt(candidate, keys);
      if (typeof a !== 'number' || typeof b !== 'number' || a !== b) continue;
      const ta = textOf(la?.get(key), a);
      const tb = textOf(ca?.get(key), b);
      const kind = textDifference(ta, tb);
      if (kind === undefined) continue;
      if (kind === 'format' && !formatMatters) continue;
      // Finite equal floats within any tolerance stay equal; infinities (1e400) never are.
      if (kind === 'value' && Number.isFinite(a) && (ctx.tolerance.absolute > 0 || ctx.tolerance.relative > 0)) continue;
      const node = nodeOf(keys, ctx, base);
      if (node === undefined) continue;
      emit(ctx, node, kind === 'format' ? 'number_format' : 'value', { legacy: ta, candidate: tb });
    }
  }
}

function textOf(found: NumberText | undefined, value: number): string {
  // A transform may have replaced the value that stood in the text: then the text no longer applies.
  return found !== undefined && Number(found.text) === value ? found.text : String(value);
}

function valueAt(root: unknown, keys: readonly PathKey[]): unknown {
  let v = root;
  for (const k of keys) {
    if (typeof k === 'number') {
      if (!Array.isArray(v)) return undefined;
      v = v[k];
    } else {
      if (typeOf(v) !== 'object' || !hasOwn(v as Obj, k)) return undefined;
      v = (v as Obj)[k];
    }
  }
  return v;
}

/** The path node for keys, or undefined when a rule ignores it or an array on the way is unordered. */
function nodeOf(keys: readonly PathKey[], ctx: WalkContext, base?: WalkBase): PathNode | null | undefined {
  let s = base ? base.s : ctx.m.initial;
  let node: PathNode | null = base ? base.node : null;
  // An ignored root (`$`) ignores every number text under it.
  if (ignoredAt(ctx.m, s)) return undefined;
  for (const k of keys) {
    if (s.length !== 0 && typeof k === 'number' && flagsOf(ctx.m, s) & UNORDERED) return undefined;
    s = step(ctx.m, s, k);
    if (ignoredAt(ctx.m, s)) return undefined;
    node = { parent: node, key: k };
  }
  return node;
}
