/**
 * The lockstep fast path for JSON bodies that differ in a small span (a noisy `meta.requestId`, one
 * changed field). The two bodies are P + X + R and P + Y + R with a shared prefix P and suffix R; a
 * strict tokenizer (no values built) finds the smallest container holding the differing span on
 * both sides, checks that everything outside it is valid JSON that cannot change the answer, and
 * only that container is parsed and walked, from its own path and matcher state. Anything it is not
 * sure about returns undefined and the caller takes the full path; test/compare-lockstep.test.ts
 * holds the two to the same answers.
 */
import { diffJson, diffNumberTexts, type WalkBase, type WalkContext } from './json.js';
import { IGNORE, UNORDERED, flagsOf, step, type PathKey, type PathMatcher, type PathNode } from './path.js';
import type { Difference } from './types.js';

/** The container is parsed only when both its texts together are at most this share of both bodies. */
const MAX_SHARE = 0.5;
/** Below this the full path costs a few µs: the scan would not pay for itself. */
const MIN_BODY_BYTES = 512;

const ERR = -1;
const STOP = 0;
const END = 1;
const OPEN = 2;
const CLOSE = 3;
const KEY = 4;
const SCALAR = 5;
const NUMBER = 6;
const PUNCT = 7;

// What the tokenizer expects next.
const S_VALUE = 0;
const S_VALUE_OR_CLOSE = 1;
const S_KEY_OR_CLOSE = 2;
const S_KEY = 3;
const S_COLON = 4;
const S_AFTER = 5;
const S_DONE = 6;

/** JSON's four whitespace bytes. */
function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function isHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);
}

/**
 * A strict JSON tokenizer over UTF-8 bytes (their validity is checked apart, with isUtf8) that keeps
 * only the open containers: their kind, offset, and the key or index currently being read in each.
 */
class Scanner {
  buf: Buffer;
  pos = 0;
  state = S_VALUE;
  depth = 0;
  /** 1 = array, 0 = object, per open container. */
  isArr: number[] = [];
  open: number[] = [];
  index: number[] = [];
  keyStart: number[] = [];
  keyEnd: number[] = [];
  tokStart = 0;
  tokEnd = 0;

  constructor(buf: Buffer) {
    this.buf = buf;
  }

  clone(buf: Buffer): Scanner {
    const s = new Scanner(buf);
    s.pos = this.pos;
    s.state = this.state;
    s.depth = this.depth;
    s.isArr = this.isArr.slice(0, this.depth);
    s.open = this.open.slice(0, this.depth);
    s.index = this.index.slice(0, this.depth);
    s.keyStart = this.keyStart.slice(0, this.depth);
    s.keyEnd = this.keyEnd.slice(0, this.depth);
    return s;
  }

  private afterValue(): void {
    this.state = this.depth === 0 ? S_DONE : S_AFTER;
  }

  /**
   * Reads one token. With `limit`, a token is taken only when it (and, for numbers and literals,
   * the byte that ends it) lies before `limit`; otherwise STOP, with pos left at its start.
   */
  next(limit: number): number {
    const buf = this.buf;
    const len = buf.length;
    let i = this.pos;
    while (i < len && isWs(buf[i])) i++;
    this.pos = i;
    if (i >= len) return END;
    const t = i;
    const c = buf[i];
    this.tokStart = t;
    const st = this.state;
    if (st === S_AFTER) {
      if (c === 0x2c) {
        if (t + 1 > limit) return STOP;
        const d = this.depth - 1;
        if (this.isArr[d]) {
          this.index[d]++;
          this.state = S_VALUE;
        } else this.state = S_KEY;
        this.pos = this.tokEnd = t + 1;
        return PUNCT;
      }
      if (c === 0x5d || c === 0x7d) return this.close(c, t, limit);
      return ERR;
    }
    if (st === S_COLON) {
      if (c !== 0x3a) return ERR;
      if (t + 1 > limit) return STOP;
      this.state = S_VALUE;
      this.pos = this.tokEnd = t + 1;
      return PUNCT;
    }
    if (st === S_KEY_OR_CLOSE || st === S_KEY) {
      if (c === 0x7d && st === S_KEY_OR_CLOSE) return this.close(c, t, limit);
      if (c !== 0x22) return ERR;
      const end = this.string(t, limit);
      if (end < 0) return end === -2 ? STOP : ERR;
      const d = this.depth - 1;
      this.keyStart[d] = t;
      this.keyEnd[d] = end;
      this.state = S_COLON;
      this.pos = this.tokEnd = end;
      return KEY;
    }
    if (st === S_DONE) return ERR;
    // S_VALUE or S_VALUE_OR_CLOSE
    if (c === 0x5d && st === S_VALUE_OR_CLOSE) return this.close(c, t, limit);
    if (c === 0x7b || c === 0x5b) {
      if (t + 1 > limit) return STOP;
      const d = this.depth++;
      const arr = c === 0x5b ? 1 : 0;
      this.isArr[d] = arr;
      this.open[d] = t;
      this.index[d] = 0;
      this.keyStart[d] = -1;
      this.keyEnd[d] = -1;
      this.state = arr ? S_VALUE_OR_CLOSE : S_KEY_OR_CLOSE;
      this.pos = this.tokEnd = t + 1;
      return OPEN;
    }
    let end: number;
    let kind = SCALAR;
    if (c === 0x22) {
      end = this.string(t, limit);
      if (end < 0) return end === -2 ? STOP : ERR;
    } else {
      if (c === 0x2d || (c >= 48 && c <= 57)) {
        end = this.number(t);
        kind = NUMBER;
      } else if (c === 0x74) end = this.literal(t, 'true');
      else if (c === 0x66) end = this.literal(t, 'false');
      else if (c === 0x6e) end = this.literal(t, 'null');
      else return ERR;
      if (end < 0) return ERR;
      // The byte that ends a number or a literal must be shared too: `12` may go on as `123`.
      if (end >= limit) return STOP;
    }
    this.afterValue();
    this.pos = this.tokEnd = end;
    return kind;
  }

  private close(c: number, t: number, limit: number): number {
    const d = this.depth - 1;
    if (d < 0 || (c === 0x5d) !== (this.isArr[d] === 1)) return ERR;
    if (t + 1 > limit) return STOP;
    this.depth = d;
    this.afterValue();
    this.pos = this.tokEnd = t + 1;
    return CLOSE;
  }

  /** End (exclusive) of the string at t; -1 invalid, -2 it does not end before limit. */
  private string(t: number, limit: number): number {
    const buf = this.buf;
    const len = buf.length;
    let i = t + 1;
    for (;;) {
      if (i >= len) return -1;
      const c = buf[i];
      if (c === 0x22) {
        if (i + 1 > limit) return -2;
        return i + 1;
      }
      if (c < 0x20) return -1;
      if (c === 0x5c) {
        const e = buf[i + 1];
        if (e === 0x75) {
          if (!(isHex(buf[i + 2]) && isHex(buf[i + 3]) && isHex(buf[i + 4]) && isHex(buf[i + 5]))) return -1;
          i += 6;
        } else if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) i += 2;
        else return -1;
      } else i++;
    }
  }

  /** `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?`; end (exclusive) or -1. */
  private number(t: number): number {
    const buf = this.buf;
    let i = t;
    if (buf[i] === 0x2d) i++;
    const d0 = buf[i];
    if (d0 === 0x30) i++;
    else if (d0 >= 0x31 && d0 <= 0x39) {
      i++;
      while (buf[i] >= 0x30 && buf[i] <= 0x39) i++;
    } else return -1;
    if (buf[i] === 0x2e) {
      i++;
      if (!(buf[i] >= 0x30 && buf[i] <= 0x39)) return -1;
      while (buf[i] >= 0x30 && buf[i] <= 0x39) i++;
    }
    if (buf[i] === 0x65 || buf[i] === 0x45) {
      i++;
      if (buf[i] === 0x2b || buf[i] === 0x2d) i++;
      if (!(buf[i] >= 0x30 && buf[i] <= 0x39)) return -1;
      while (buf[i] >= 0x30 && buf[i] <= 0x39) i++;
    }
    return i;
  }

  private literal(t: number, word: string): number {
    for (let k = 0; k < word.length; k++) if (this.buf[t + k] !== word.charCodeAt(k)) return -1;
    return t + word.length;
  }
}

/** A number the walk would note as wide (beyond ±2^53): then the verdict may rest on number texts. */
function isWideToken(buf: Buffer, start: number, end: number): boolean {
  if (end - start < 16) {
    let exp = false;
    for (let i = start; i < end; i++) if (buf[i] === 0x65 || buf[i] === 0x45) exp = true;
    if (!exp) return false;
  }
  const v = Number(buf.toString('latin1', start, end));
  return !(v <= Number.MAX_SAFE_INTEGER && v >= -Number.MAX_SAFE_INTEGER);
}

function commonPrefix(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  // Native compares over growing chunks, then bytes: a few calls even for a megabyte.
  for (let chunk = 64; i < n; chunk = Math.min(chunk * 2, 65536)) {
    const e = Math.min(n, i + chunk);
    if (a.compare(b, i, e, i, e) !== 0) break;
    i = e;
  }
  while (i < n && a[i] === b[i]) i++;
  return i;
}

function commonSuffix(a: Buffer, b: Buffer, max: number): number {
  const la = a.length;
  const lb = b.length;
  let k = 0;
  for (let chunk = 64; k < max; chunk = Math.min(chunk * 2, 65536)) {
    const e = Math.min(max, k + chunk);
    if (a.compare(b, lb - e, lb - k, la - e, la - k) !== 0) break;
    k = e;
  }
  while (k < max && a[la - 1 - k] === b[lb - 1 - k]) k++;
  return k;
}

function keyText(buf: Buffer, start: number, end: number): string {
  for (let i = start + 1; i < end - 1; i++) if (buf[i] === 0x5c) return JSON.parse(buf.toString('utf8', start, end)) as string;
  return buf.toString('utf8', start + 1, end - 1);
}

/** The container both differing spans lie in: its offsets on each side and its path from the root. */
export interface Window {
  start: number;
  /** Offset of its closing bracket in the legacy body. */
  endA: number;
  /** Offset of its closing bracket in the candidate body. */
  endB: number;
  keys: PathKey[];
}

/**
 * Finds the smallest container, below the root, that holds every differing byte of both bodies
 * (which are valid UTF-8 and differ), such that the bodies are valid JSON outside it, no key on its
 * path is repeated later in its object (JSON.parse keeps the last), and no number outside it is
 * wide (the walk would then read number texts across the whole body). Undefined otherwise.
 */
export function findWindow(a: Buffer, b: Buffer): Window | undefined {
  const la = a.length;
  const lb = b.length;
  if (la + lb < MIN_BODY_BYTES) return undefined;
  const p = commonPrefix(a, b);
  const s = commonSuffix(a, b, Math.min(la, lb) - p);
  const budget = (la + lb) * MAX_SHARE;
  // The differing spans end here on each side; a container holding them starts before p.
  const midEndA = la - s;
  const midEndB = lb - s;

  // Phase 1: the shared prefix, strictly, up to the token that reaches into the differing span.
  const sc = new Scanner(a);
  let wideAt = -1;
  for (;;) {
    const tok = sc.next(p);
    if (tok === STOP) break;
    if (tok === ERR || tok === END) return undefined;
    if (tok === NUMBER && wideAt < 0 && isWideToken(a, sc.tokStart, sc.tokEnd)) wideAt = sc.tokStart;
  }
  // Only the root open: the difference touches the root, which is the full path's work.
  if (sc.depth < 2) return undefined;

  // Phase 2: from the innermost open container outwards, find where it closes on each side.
  const sa = sc.clone(a);
  const sb = sc.clone(b);
  for (let j = sc.depth - 1; j >= 1; j--) {
    const start = sc.open[j];
    if (midEndA - start + (midEndB - start) > budget) return undefined; // this and every outer one are too big
    if (wideAt >= 0 && wideAt < start) return undefined;
    const endA = closeOf(sa, j);
    const endB = closeOf(sb, j);
    if (endA < 0 || endB < 0) return undefined;
    if (endA - start + 1 + (endB - start + 1) > budget) return undefined;
    // Both closing brackets at one place in the shared suffix: what follows is the same bytes.
    if (endA < midEndA || endB < midEndB || endA - midEndA !== endB - midEndB) continue;

    const keys: PathKey[] = [];
    const raw: (string | undefined)[] = [];
    for (let f = 0; f < j; f++) {
      if (sc.isArr[f]) {
        keys.push(sc.index[f]);
        raw.push(undefined);
      } else {
        keys.push(keyText(a, sc.keyStart[f], sc.keyEnd[f]));
        raw.push(a.toString('latin1', sc.keyStart[f], sc.keyEnd[f]));
      }
    }
    return restIsPlain(sa, j, endA, keys, raw) ? { start, endA, endB, keys } : undefined;
  }
  return undefined;
}

/** Scans on until the container at depth j closes; the offset of its closing bracket, or -1. */
function closeOf(sc: Scanner, j: number): number {
  while (sc.depth > j) {
    const tok = sc.next(Infinity);
    if (tok === ERR || tok === END) return -1;
  }
  return sc.tokStart;
}

/**
 * Phase 3: the legacy body after the container, strictly to its end. The ancestors' keys met there
 * must not repeat the path's key at their level, and no number there may be wide.
 */
function restIsPlain(sa: Scanner, j: number, endA: number, keys: PathKey[], raw: (string | undefined)[]): boolean {
  // closeOf left the scanner just past the container, with its ancestors open.
  const sc = sa;
  const buf = sc.buf;
  if (sc.depth !== j || sc.pos !== endA + 1) return false;
  // Containers below this depth are still the ancestors; deeper ones are their other members.
  let ancestors = j;
  for (;;) {
    const tok = sc.next(Infinity);
    if (tok === END) return sc.state === S_DONE;
    if (tok === ERR) return false;
    if (tok === CLOSE) {
      if (sc.depth < ancestors) ancestors = sc.depth;
    } else if (tok === KEY) {
      const f = sc.depth - 1;
      if (f < ancestors && f < j) {
        const r = raw[f];
        const k = buf.toString('latin1', sc.tokStart, sc.tokEnd);
        if (k === r) return false;
        if ((k.includes('\\') || r!.includes('\\')) && keyText(buf, sc.tokStart, sc.tokEnd) === keys[f]) return false;
      }
    } else if (tok === NUMBER) {
      if (isWideToken(buf, sc.tokStart, sc.tokEnd)) return false;
    }
  }
}

export interface LockstepRules {
  body: PathMatcher;
  tolerance: { absolute: number; relative: number };
  numberFormat: 'strict' | 'lenient';
}

/**
 * Compares two differing UTF-8 JSON bodies through their differing container only, appending to
 * `out` what the full path would; returns whether the list was capped, or undefined when the full
 * path must answer. The caller has already ruled out mappings and transforms.
 */
export function lockstepJson(lb: Buffer, cb: Buffer, rules: LockstepRules, out: Difference[]): { capped: boolean } | undefined {
  const w = findWindow(lb, cb);
  if (w === undefined) return undefined;
  const m = rules.body;
  let st = m.initial;
  let node: PathNode | null = null;
  let ignored = st.length !== 0 && (flagsOf(m, st) & IGNORE) !== 0;
  for (const k of w.keys) {
    // An unordered array matches its elements by value, not by place: the full walk must decide.
    if (typeof k === 'number' && st.length !== 0 && (flagsOf(m, st) & UNORDERED) !== 0) return undefined;
    st = step(m, st, k);
    if (st.length !== 0 && (flagsOf(m, st) & IGNORE) !== 0) ignored = true;
    node = { parent: node, key: k };
  }
  const lt = lb.toString('utf8', w.start, w.endA + 1);
  const ct = cb.toString('utf8', w.start, w.endB + 1);
  let lv: unknown;
  let cv: unknown;
  try {
    lv = JSON.parse(lt);
    cv = JSON.parse(ct);
  } catch {
    return undefined;
  }
  if (ignored) return { capped: false };
  const base: WalkBase = { s: st, node };
  const walk: WalkContext = { m, tolerance: rules.tolerance, out, capped: false, work: 0 };
  const before = out.length;
  diffJson(lv, cv, walk, base);
  // As on the full path (see compareJson); outside the window every number text is shared.
  if (!walk.capped && (out.length === before || walk.wideNumbers === true)) {
    diffNumberTexts(lt, ct, lv, cv, walk, rules.numberFormat === 'strict', base);
  }
  return { capped: walk.capped };
}
