/**
 * The lockstep fast path for JSON bodies that differ in a small span (a noisy `meta.requestId`, one
 * changed field). The two bodies are P + X + R and P + Y + R with a shared prefix P and suffix R; a
 * strict tokenizer (no values built) finds the smallest value (a member, an element, or a container)
 * below the root holding the differing span on both sides, checks that everything outside it is valid JSON that cannot change the answer, and
 * only that container is parsed and walked, from its own path and matcher state. Values whose insides
 * cannot matter (most of a big body) are only checked, by a leaner loop than the tokenizer's, or
 * recognised as values checked before (known.ts). Anything it is not
 * sure about returns undefined and the caller takes the full path; test/compare-lockstep.test.ts
 * holds the two to the same answers (test/compare-known.test.ts, with and without kept values).
 */
import { diffJson, diffNumberTexts, type WalkBase, type WalkContext } from './json.js';
import { KNOWN_MIN_BYTES, LOOKUP_AFTER_BYTES, type KnownSpans } from './known.js';
import { UNORDERED, flagsOf, ignoredAt, step, type PathKey, type PathMatcher, type PathNode } from './path.js';
import type { Difference } from './types.js';

/** The container is parsed only when both its texts together are at most this share of both bodies. */
const MAX_SHARE = 0.5;
/** Below this the full path costs a few µs: the scan would not pay for itself. */
const MIN_BODY_BYTES = 512;

/** Containers deeper than this are left to the full path (which walks any depth); it keeps the scan small. */
const MAX_DEPTH = 64;

// What run() stopped at.
const ERR = -1;
const STOP = 0;
const END = 1;
const CLOSED = 2;

// What the tokenizer expects next.
const S_VALUE = 0;
const S_VALUE_OR_CLOSE = 1;
const S_KEY_OR_CLOSE = 2;
const S_KEY = 3;
const S_COLON = 4;
const S_AFTER = 5;
const S_DONE = 6;

/**
 * A strict JSON tokenizer's state over UTF-8 bytes (their validity is checked apart, with isUtf8).
 * It keeps only the open containers: kind, offset, and the key or index being read in each.
 */
interface Scan {
  buf: Buffer;
  pos: number;
  state: number;
  depth: number;
  /** 1 = array, 0 = object, per open container. */
  isArr: number[];
  open: number[];
  index: number[];
  /** Where the key being read starts (its end is found again when needed: see keyEndAt). */
  keyStart: number[];
  /** Offset of the last closing bracket read. */
  closedAt: number;
  /** Offset of the first wide number read, or -1. */
  wideAt: number;
  /** Phase 3: objects below this depth are the window's ancestors, and `path` their keys (raw). */
  ancestors: number;
  path: (string | undefined)[];
  keys: PathKey[];
  /** Start and end offsets of every key read in the root object. */
  rootKeys: number[];
  /** Big values read before (see known.ts), or undefined. */
  known: KnownSpans | undefined;
}

const zeros = (): number[] => new Array<number>(MAX_DEPTH).fill(0);

function newScan(buf: Buffer, known: KnownSpans | undefined): Scan {
  return {
    buf,
    pos: 0,
    state: S_VALUE,
    depth: 0,
    // Plain arrays: a typed array costs more to allocate than a small body costs to scan.
    isArr: zeros(),
    open: zeros(),
    index: zeros(),
    keyStart: zeros(),
    closedAt: -1,
    wideAt: -1,
    ancestors: 0,
    path: [],
    keys: [],
    rootKeys: [],
    known,
  };
}

function cloneScan(sc: Scan, buf: Buffer): Scan {
  return { ...sc, buf, rootKeys: sc.rootKeys.slice(), isArr: sc.isArr.slice(), open: sc.open.slice(), index: sc.index.slice(), keyStart: sc.keyStart.slice() };
}

const isHex = (c: number): boolean => (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);

/** 1 for the bytes a string holds as they are: not a quote, a backslash or a control byte. */
const PLAIN = new Uint8Array(256).fill(1, 0x20);
PLAIN[0x22] = 0;
PLAIN[0x5c] = 0;

/** End (exclusive) of the valid string whose quote is at t, or -1. */
function stringEnd(buf: Buffer, t: number): number {
  const last4 = buf.length - 4;
  let j = t + 1;
  for (;;) {
    // The hot loop: plain bytes (anything but a quote, a backslash or a control byte), four at a
    // time while four are left (a byte past the end is undefined, which the table must not see),
    // then one at a time.
    while (j <= last4 && (PLAIN[buf[j]] & PLAIN[buf[j + 1]] & PLAIN[buf[j + 2]] & PLAIN[buf[j + 3]]) !== 0) j += 4;
    let c = buf[j];
    while (c > 0x5c || (c >= 0x20 && c !== 0x22 && c !== 0x5c)) c = buf[++j];
    if (c === 0x22) return j + 1;
    if (c !== 0x5c) return -1; // a control byte, or the end of the body
    const e = buf[j + 1];
    if (e === 0x75) {
      if (!(isHex(buf[j + 2]) && isHex(buf[j + 3]) && isHex(buf[j + 4]) && isHex(buf[j + 5]))) return -1;
      j += 6;
    } else if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) j += 2;
    else return -1;
  }
}

/**
 * `-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?` at t: its end (exclusive), or -1; or the end's
 * complement (below -1) when it may be beyond ±2^53, which only a number with 16 integer digits or
 * more, or an exponent, can be (the one case worth parsing it to see).
 */
function numberEnd(buf: Buffer, t: number): number {
  let j = buf[t] === 0x2d ? t + 1 : t;
  let maybeWide = false;
  let d = buf[j];
  if (d === 0x30) d = buf[++j];
  else if (d >= 0x31 && d <= 0x39) {
    const from = j;
    do d = buf[++j];
    while (d >= 0x30 && d <= 0x39);
    maybeWide = j - from >= 16;
  } else return -1;
  if (d === 0x2e) {
    d = buf[++j];
    if (!(d >= 0x30 && d <= 0x39)) return -1;
    do d = buf[++j];
    while (d >= 0x30 && d <= 0x39);
  }
  if (d === 0x65 || d === 0x45) {
    maybeWide = true;
    d = buf[++j];
    if (d === 0x2b || d === 0x2d) d = buf[++j];
    if (!(d >= 0x30 && d <= 0x39)) return -1;
    do d = buf[++j];
    while (d >= 0x30 && d <= 0x39);
  }
  return maybeWide ? ~j : j;
}

function literalEnd(buf: Buffer, t: number, c: number): number {
  if (c === 0x74) return buf[t + 1] === 0x72 && buf[t + 2] === 0x75 && buf[t + 3] === 0x65 ? t + 4 : -1;
  if (c === 0x66) return buf[t + 1] === 0x61 && buf[t + 2] === 0x6c && buf[t + 3] === 0x73 && buf[t + 4] === 0x65 ? t + 5 : -1;
  if (c === 0x6e) return buf[t + 1] === 0x75 && buf[t + 2] === 0x6c && buf[t + 3] === 0x6c ? t + 4 : -1;
  return -1;
}

/** The kinds of the containers skipContainer is inside (a closing bracket, per level). */
const closers = new Uint8Array(MAX_DEPTH);

/**
 * Offset of the bracket that closes the container opened at t (the depth-th one open), when all it
 * holds is valid and no number in it may be wide; -1 otherwise, or when a token in it (the closing
 * bracket too) does not end before `past` (see run), or when it nests deeper than MAX_DEPTH. A lean
 * reading of what run would read, for the containers whose insides the caller does not look at: no
 * state is kept but the brackets; at -1 run reads the container itself, to the exact outcome (the
 * error, the stop or the wide number) and state. With `known`, a big container whose bytes are a kept
 * value's ends where that value does (its reading would be the same), and one read whole here is
 * offered to be kept.
 */
function skipContainer(buf: Buffer, t: number, depth: number, past: number, known: KnownSpans | undefined): number {
  let i = t + 1;
  let top = 0;
  // How deep it nests below its own bracket, for `known`.
  let nesting = 0;
  // With big values kept, one still open this far on is looked up there, once (small values are
  // read faster than they are looked up); the rest of the time this is `past`.
  let stop = known !== undefined && known.size > 0 && t + LOOKUP_AFTER_BYTES < past ? t + LOOKUP_AFTER_BYTES : past;
  let closer = buf[t] + 2; // `[` + 2 is `]`, `{` + 2 is `}`
  // At the start of a container's content, where it may close at once.
  let first = true;
  // Where an object's key comes (a string, then a colon).
  let key = closer === 0x7d;
  let c: number;
  for (;;) {
    c = buf[i];
    if (c <= 0x20) while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = buf[++i];
    if (!first || c !== closer) {
      if (c === 0x22) {
        i = stringEnd(buf, i);
        if (i < 0) return -1;
        if (key) {
          c = buf[i];
          if (c <= 0x20) while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = buf[++i];
          if (c !== 0x3a) return -1;
          i++;
          key = false;
          first = false;
          continue;
        }
      } else if (key) return -1;
      else if (c === 0x7b || c === 0x5b) {
        if (depth + top >= MAX_DEPTH) return -1;
        if (top >= nesting) nesting = top + 1;
        closers[top++] = closer;
        closer = c + 2;
        first = true;
        key = c === 0x7b;
        i++;
        continue;
      } else {
        i = c === 0x2d || (c >= 0x30 && c <= 0x39) ? numberEnd(buf, i) : literalEnd(buf, i, c);
        if (i < 0) return -1;
      }
    }
    first = false;
    // After a value (or at an empty container's end): closing brackets, then a comma.
    for (;;) {
      c = buf[i];
      if (c <= 0x20) while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = buf[++i];
      if (i >= stop) {
        if (stop === past) return -1;
        stop = past;
        const e = known!.lookup(buf, t, depth, past, MAX_DEPTH);
        if (e >= 0) return e;
      }
      if (c === 0x2c) break;
      if (c !== closer) return -1;
      if (top === 0) {
        if (known !== undefined && i - t >= KNOWN_MIN_BYTES) known.offer(buf, t, i, nesting);
        return i;
      }
      closer = closers[--top];
      i++;
    }
    key = closer === 0x7d;
    i++;
  }
}

/**
 * Reads tokens strictly. Stops (STOP, pos at the token's start) at a token that does not end before
 * `limit` (for numbers and literals, the byte that ends them must be before it too: `12` may go on
 * as `123`); after the closing bracket that brings the depth down to `stopDepth` (CLOSED); at the
 * end of the body (END); or at anything invalid (ERR). With `ancestors`, a key of an ancestor that
 * repeats the window's is ERR (JSON.parse keeps the last one). With `whole`, a container whose
 * insides the caller does not look at (below stopDepth and the keys it records or checks) is read
 * by skipContainer, to the same outcome. A scan meant to stop inside containers (the shared prefix)
 * goes without: skipContainer would read each one holding the limit up to it, in vain.
 */
function run(sc: Scan, limit: number, stopDepth: number, checkKeys: boolean, whole = true): number {
  const buf = sc.buf;
  const len = buf.length;
  // The limit as two integers no token end can pass unless it crosses the limit (it may be
  // Infinity or fractional, which would make every comparison a float one): a token ending at
  // `end` crosses it when end > past, a number or literal when end > pastNumber.
  const past = limit > len ? len + 1 : Math.floor(limit);
  const pastNumber = limit > len ? len + 1 : Math.ceil(limit) - 1;
  const { isArr, open, index, keyStart } = sc;
  // The tokenizer's whole state lives in locals while it reads (property writes per token cost more
  // than the reading itself) and is written back once.
  let i = sc.pos;
  let state = sc.state;
  let depth = sc.depth;
  let ancestors = sc.ancestors;
  let closedAt = sc.closedAt;
  let wideAt = sc.wideAt;
  // After a scalar at this depth or above, the scan either stops or the root is done.
  const floor = stopDepth > 0 ? stopDepth : 0;
  // Whether the innermost open container is an array (isArr's last entry, read at each comma).
  let inArr = depth > 0 ? isArr[depth - 1] : 0;
  // Keys deeper than this are only validated: the root's are recorded, the ancestors' checked (it
  // follows `ancestors` down).
  let keyDepth = checkKeys && ancestors > 1 ? ancestors : 1;
  // Containers opened below this depth and keyDepth hold nothing the caller reads (no key recorded
  // or checked, no stop), only their extent and validity.
  const skipFrom = whole ? stopDepth : MAX_DEPTH;
  let code: number;
  let c = 0;
  let t = 0;
  loop: for (;;) {
    // A closing bracket reached from any state that takes one breaks out of this block.
    close: {
      // Each case reads one token and falls through to the state that follows it, so a member
      // (key, colon, value, comma) costs one dispatch. A byte past the end is undefined, which
      // takes no branch but the one that tells the end (END) from an invalid byte (ERR).
      switch (state) {
        case S_KEY_OR_CLOSE:
        case S_KEY: {
          c = buf[i];
          if (c <= 0x20) while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = buf[++i];
          t = i;
          if (c !== 0x22) {
            if (c === 0x7d && state === S_KEY_OR_CLOSE) break close;
            code = i >= len ? END : ERR;
            break loop;
          }
          const end = stringEnd(buf, t);
          if (end < 0) {
            code = ERR;
            break loop;
          }
          if (end > past) {
            code = STOP;
            break loop;
          }
          if (depth <= keyDepth) {
            if (checkKeys && depth <= ancestors && repeatsPathKey(sc, depth - 1, t, end)) {
              code = ERR;
              break loop;
            }
            if (depth === 1) sc.rootKeys.push(t, end);
          }
          keyStart[depth - 1] = t;
          state = S_COLON;
          i = end;
        }
        // falls through
        case S_COLON: {
          c = buf[i];
          if (c <= 0x20) while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = buf[++i];
          if (c !== 0x3a) {
            code = i >= len ? END : ERR;
            break loop;
          }
          if (i + 1 > past) {
            code = STOP;
            break loop;
          }
          state = S_VALUE;
          i++;
        }
        // falls through
        case S_VALUE:
        case S_VALUE_OR_CLOSE: {
          c = buf[i];
          if (c <= 0x20) while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = buf[++i];
          t = i;
          let end: number;
          if (c === 0x22) {
            end = stringEnd(buf, t);
            if (end > past) {
              code = STOP;
              break loop;
            }
            if (end < 0) {
              code = ERR;
              break loop;
            }
          } else if (c === 0x7b || c === 0x5b) {
            if (t + 1 > past) {
              code = STOP;
              break loop;
            }
            if (depth >= MAX_DEPTH) {
              code = ERR;
              break loop;
            }
            const arr = c === 0x5b;
            inArr = arr ? 1 : 0;
            isArr[depth] = inArr;
            open[depth] = t;
            index[depth] = 0;
            depth++;
            if (depth > skipFrom && depth > keyDepth) {
              const e = skipContainer(buf, t, depth, past, sc.known);
              if (e >= 0) {
                // Its closing bracket, which the code below reads as it would have.
                t = e;
                c = buf[e];
                break close;
              }
            }
            state = arr ? S_VALUE_OR_CLOSE : S_KEY_OR_CLOSE;
            i = t + 1;
            continue loop;
          } else if (c === 0x5d && state === S_VALUE_OR_CLOSE) {
            break close;
          } else {
            end = -1;
            let maybeWide = false;
            if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
              end = numberEnd(buf, t);
              if (end < -1) {
                end = ~end;
                maybeWide = true;
              }
            } else if (c === 0x74 || c === 0x66 || c === 0x6e) end = literalEnd(buf, t, c);
            else if (i >= len) {
              code = END;
              break loop;
            }
            if (end > pastNumber) {
              code = end < 0 ? ERR : STOP;
              break loop;
            }
            if (end < 0) {
              code = ERR;
              break loop;
            }
            if (maybeWide && wideAt < 0 && isWide(buf, t, end)) wideAt = t;
          }
          i = end;
          if (depth <= floor) {
            if (depth <= stopDepth) {
              // The one value asked for was a scalar.
              state = depth === 0 ? S_DONE : S_AFTER;
              closedAt = end - 1;
              code = CLOSED;
              break loop;
            }
            state = S_DONE;
            continue loop;
          }
          state = S_AFTER;
        }
        // falls through
        case S_AFTER: {
          c = buf[i];
          if (c <= 0x20) while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = buf[++i];
          t = i;
          if (c === 0x2c) {
            if (t + 1 > past) {
              code = STOP;
              break loop;
            }
            if (inArr) {
              index[depth - 1]++;
              state = S_VALUE;
            } else state = S_KEY;
            i = t + 1;
            continue loop;
          }
          if (c === 0x5d || c === 0x7d) break close;
          code = i >= len ? END : ERR;
          break loop;
        }
        default: {
          // S_DONE: only spaces may follow.
          c = buf[i];
          if (c <= 0x20) while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = buf[++i];
          code = i >= len ? END : ERR;
          break loop;
        }
      }
    }
    // A closing bracket at t, expected in this state: it must match the open container.
    if (depth === 0 || (c === 0x5d) !== (inArr === 1)) {
      code = ERR;
      break;
    }
    if (t + 1 > past) {
      code = STOP;
      break;
    }
    depth--;
    inArr = depth > 0 ? isArr[depth - 1] : 0;
    if (depth < ancestors) {
      ancestors = depth;
      if (keyDepth > 1) keyDepth = depth > 1 ? depth : 1;
    }
    state = depth === 0 ? S_DONE : S_AFTER;
    i = t + 1;
    closedAt = t;
    if (depth <= stopDepth) {
      code = CLOSED;
      break;
    }
  }
  sc.pos = i;
  sc.state = state;
  sc.depth = depth;
  sc.ancestors = ancestors;
  sc.closedAt = closedAt;
  sc.wideAt = wideAt;
  return code;
}

/** End (exclusive) of the key being read at level f, a string the scan has found valid. */
function keyEndAt(sc: Scan, f: number): number {
  return stringEnd(sc.buf, sc.keyStart[f]);
}

/** Whether the key at [t, end) in the ancestor object at level f is the window's key there. */
function repeatsPathKey(sc: Scan, f: number, t: number, end: number): boolean {
  const raw = sc.path[f];
  if (raw === undefined) return false;
  const k = sc.buf.toString('latin1', t, end);
  if (k === raw) return true;
  return (k.includes('\\') || raw.includes('\\')) && keyText(sc.buf, t, end) === sc.keys[f];
}

/** A number the walk would note as wide (beyond ±2^53): then the verdict may rest on number texts. */
function isWide(buf: Buffer, start: number, end: number): boolean {
  const v = Number(buf.toString('latin1', start, end));
  return !(v <= Number.MAX_SAFE_INTEGER && v >= -Number.MAX_SAFE_INTEGER);
}

/** Native compares over growing chunks, then halving ones inside the first differing chunk, then bytes. */
export function commonPrefix(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  let chunk = 64;
  for (; i < n; chunk = Math.min(chunk * 2, 65536)) {
    const e = Math.min(n, i + chunk);
    if (a.compare(b, i, e, i, e) !== 0) break;
    i = e;
  }
  for (chunk >>= 1; chunk >= 32 && i < n; chunk >>= 1) {
    const e = Math.min(n, i + chunk);
    if (a.compare(b, i, e, i, e) === 0) i = e;
  }
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** The bytes a and b share at their ends, at most `max`. */
function commonSuffix(a: Buffer, b: Buffer, max: number): number {
  const la = a.length;
  const lb = b.length;
  let k = 0;
  let chunk = 64;
  for (; k < max; chunk = Math.min(chunk * 2, 65536)) {
    const e = Math.min(max, k + chunk);
    if (a.compare(b, lb - e, lb - k, la - e, la - k) !== 0) break;
    k = e;
  }
  for (chunk >>= 1; chunk >= 32 && k < max; chunk >>= 1) {
    const e = Math.min(max, k + chunk);
    if (a.compare(b, lb - e, lb - k, la - e, la - k) === 0) k = e;
  }
  while (k < max && a[la - 1 - k] === b[lb - 1 - k]) k++;
  return k;
}

/** Opening and closing brackets in [from, to), as one number (opening ones in the high part). */
function brackets(buf: Buffer, from: number, to: number): number {
  let open = 0;
  let close = 0;
  for (let i = from; i < to; i++) {
    const c = buf[i];
    if (c === 0x7b || c === 0x5b) open++;
    else if (c === 0x7d || c === 0x5d) close++;
  }
  return open * 0x200000 + close;
}

function keyText(buf: Buffer, start: number, end: number): string {
  for (let i = start + 1; i < end - 1; i++) if (buf[i] === 0x5c) return JSON.parse(buf.toString('utf8', start, end)) as string;
  return buf.toString('utf8', start + 1, end - 1);
}

/** The value both differing spans lie in: its offsets on each side and its path from the root. */
export interface Window {
  start: number;
  /** Offset of its last byte in the legacy body. */
  endA: number;
  /** Offset of its last byte in the candidate body. */
  endB: number;
  keys: PathKey[];
  /**
   * Set when the window is a run of members of the root object rather than one value: the keys of
   * the root's other members, which the run's keys must not repeat.
   */
  outside?: string[];
}

/**
 * Finds the smallest value below the root (the one the differing span starts in, else an enclosing
 * container) that holds every differing byte of both bodies
 * (which are valid UTF-8 and differ), such that the bodies are valid JSON outside it, no key on its
 * path is repeated later in its object (JSON.parse keeps the last), and no number outside it is
 * wide (the walk would then read number texts across the whole body). Undefined otherwise.
 */
export function findWindow(a: Buffer, b: Buffer): Window | undefined {
  const la = a.length;
  const lb = b.length;
  if (la + lb < MIN_BODY_BYTES) return undefined;
  const p = commonPrefix(a, b);
  return findWindowAt(a, b, p, commonSuffix(a, b, Math.min(la, lb) - p), undefined);
}

/** findWindow, given the shared prefix p and suffix s. */
function findWindowAt(a: Buffer, b: Buffer, p: number, s: number, known: KnownSpans | undefined): Window | undefined {
  const la = a.length;
  const lb = b.length;
  const budget = (la + lb) * MAX_SHARE;
  // The differing spans end here on each side; a container holding them starts before p.
  const midEndA = la - s;
  const midEndB = lb - s;

  // Differing spans with brackets in different numbers change the shape of a container (a record
  // inserted into a list), so the window would be that container, mostly too big to pay for the
  // scan: give way before scanning anything. (Brackets inside strings count too; this only decides
  // whether to try.)
  if (brackets(a, p, midEndA) !== brackets(b, p, midEndB)) return undefined;

  // Phase 1: the shared prefix, strictly, up to the token that reaches into the differing span.
  const sc = newScan(a, known);
  if (run(sc, p, -1, false, false) !== STOP) return undefined;
  if (sc.depth < 1) return undefined;
  // The scan stops at a token's first byte, past any spaces before it: when the differing span
  // begins in those spaces, the candidate's bytes from p on would never be read.
  if (sc.pos > p) return undefined;
  const state1 = sc.state;
  const rootKeyAt = sc.keyStart[0];

  // Phase 2: candidate windows from the innermost outwards: the value the differing span starts in
  // (when the prefix stopped at a value), then each open container but the root. Each side reads on
  // only as far as the window could stay within the budget.
  // The legacy side reads on in sc itself: it only ever changes the containers it is still inside.
  const sa = sc;
  const sb = cloneScan(sc, b);
  const depth = sc.depth;
  const valueAt = sc.pos;
  const atValue = sc.state === S_VALUE || sc.state === S_VALUE_OR_CLOSE;
  for (let level = atValue ? depth : depth - 1; level >= 1; level--) {
    const start = level === depth ? valueAt : sc.open[level];
    if (midEndA - start + (midEndB - start) > budget) return undefined; // this and every outer one are too big
    if (sc.wideAt >= 0 && sc.wideAt < start) return undefined;
    if (run(sa, start + budget - (midEndB - start), level, false) !== CLOSED) return undefined;
    const endA = sa.closedAt;
    if (run(sb, start + budget - (endA - start), level, false) !== CLOSED) return undefined;
    const endB = sb.closedAt;
    if (endA - start + 1 + (endB - start + 1) > budget) return undefined;
    // The window ends at one place in the shared suffix on both sides: what follows is the same bytes.
    if (endA + 1 < midEndA || endB + 1 < midEndB || endA - midEndA !== endB - midEndB) continue;

    const keys: PathKey[] = [];
    const path: (string | undefined)[] = [];
    for (let f = 0; f < level; f++) {
      if (sc.isArr[f]) {
        keys.push(sc.index[f]);
        path.push(undefined);
      } else {
        const end = keyEndAt(sc, f);
        keys.push(keyText(a, sc.keyStart[f], end));
        path.push(a.toString('latin1', sc.keyStart[f], end));
      }
    }
    // Phase 3: the legacy body after the window, strictly to its end (the candidate's is the same
    // bytes), with the ancestors' later keys checked against the window's path.
    sa.wideAt = -1;
    sa.ancestors = level;
    sa.path = path;
    sa.keys = keys;
    if (run(sa, Infinity, -1, true) !== END || sa.state !== S_DONE || sa.wideAt >= 0) return undefined;
    return { start, endA, endB, keys };
  }
  return rootMembers(sc, sb, atValue || depth >= 2 || state1 === S_COLON ? rootKeyAt : valueAt, atValue || depth >= 2, midEndA, midEndB, budget);
}

/**
 * The last candidate: differences in several members of a root object (a changed field near the
 * top and a noisy `meta` further on in a big answer). The window is the run of members from the
 * one the differing span starts in to the first member end that lies at one place in the shared
 * suffix on both sides; it is compared as an object of its own, which the walk reads as it would
 * the root's members, provided no key of the run is also a key outside it.
 */
function rootMembers(sa: Scan, sb: Scan, first: number, read: boolean, midEndA: number, midEndB: number, budget: number): Window | undefined {
  const a = sa.buf;
  if (sa.isArr[0] || first < 0 || a[first] !== 0x22) return undefined;
  if (sa.wideAt >= 0 && sa.wideAt < first) return undefined;
  // Each side ends a member at a time (CLOSED at depth 1); the root closing ends the search.
  const member = (sc: Scan, limit: number): number => (run(sc, limit, 1, false) === CLOSED && sc.depth === 1 ? sc.closedAt : -1);
  let endA = read ? sa.closedAt : member(sa, first + budget);
  let endB = read ? sb.closedAt : member(sb, first + budget);
  if (read && (sa.depth !== 1 || sb.depth !== 1 || sa.state !== S_AFTER || sb.state !== S_AFTER)) return undefined;
  for (;;) {
    if (endA < 0 || endB < 0 || endA - first + 1 + (endB - first + 1) > budget) return undefined;
    if (endA + 1 >= midEndA && endB + 1 >= midEndB && endA - midEndA === endB - midEndB) break;
    if (endA - midEndA < endB - midEndB) endA = member(sa, first + budget - (endB - first));
    else endB = member(sb, first + budget - (endA - first));
  }
  sa.wideAt = -1;
  sa.ancestors = 0;
  if (run(sa, Infinity, -1, false) !== END || sa.state !== S_DONE || sa.wideAt >= 0) return undefined;
  const outside: string[] = [];
  const rk = sa.rootKeys;
  for (let i = 0; i < rk.length; i += 2) if (rk[i] < first || rk[i] > endA) outside.push(keyText(a, rk[i], rk[i + 1]));
  return { start: first, endA, endB, keys: [], outside };
}

/**
 * The root object's members that differ, as two object texts: what the full walk would meet
 * outside the members byte-equal on both sides. `members` counts the legacy members left out.
 */
export interface MemberWindows {
  legacy: string;
  candidate: string;
  members: number;
}

/**
 * Reads the next member of the root object `sc` is in (the scan then stands at the end of its
 * value, its key at keyStart[0]): its decoded key; null at the end of a valid body; undefined at
 * anything invalid.
 */
function readMember(sc: Scan): string | null | undefined {
  if (run(sc, Infinity, 1, false) !== CLOSED) return undefined;
  if (sc.depth === 0) return run(sc, Infinity, -1, false) === END && sc.state === S_DONE ? null : undefined;
  return keyText(sc.buf, sc.keyStart[0], keyEndAt(sc, 0));
}

const isSpace = (c: number): boolean => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const endsValue = (c: number): boolean => c === 0x2c || c === 0x7d || isSpace(c);

/**
 * For differences spread over a big root object (a price near the top, `meta` and an added field
 * after a long list): every legacy member is tokenized once, to find its span; the candidate is
 * then read member by member in lockstep, and a member whose bytes (with the delimiter before it)
 * are the legacy one's is confirmed by a native compare, never tokenized. Only candidate members
 * that differ are tokenized, paired by key, and kept with their legacy partners. The walk of the two
 * kept objects then reports what the full walk would: keys are unique on both sides (else
 * undefined), so pairing by key is JSON.parse's; Object.keys orders a subset as it orders the whole;
 * a member byte-equal on both sides is equal under every rule and adds no difference. Undefined
 * when the bodies are not a valid root object each, keys repeat, a kept member would push both
 * texts past `budget` bytes, or a wide number lies in a member left out.
 */
export function rootMemberWindows(a: Buffer, b: Buffer, budget: number, known?: KnownSpans): MemberWindows | undefined {
  const la = a.length;
  const lb = b.length;
  let f = 0;
  while (isSpace(a[f])) f++;
  if (a[f] !== 0x7b) return undefined;
  let g = 0;
  while (isSpace(b[g])) g++;
  if (b[g] !== 0x7b) return undefined;
  // The legacy members, tokenized as the candidate needs them: key start, value end (exclusive),
  // decoded key, any wide number, and whether the member is kept for the walk.
  const sa = newScan(a, known);
  const keyAt: number[] = [];
  const ends: number[] = [];
  const names: string[] = [];
  const wide: boolean[] = [];
  const kept: boolean[] = [];
  const index = new Map<string, number>();
  let aDone = false;
  /** One more legacy member: 1, or 0 at the end of a valid body, or -1 (invalid, a repeated key). */
  const next = (): number => {
    if (aDone) return 0;
    const name = readMember(sa);
    if (name === null) {
      aDone = true;
      return 0;
    }
    if (name === undefined || index.has(name)) return -1;
    index.set(name, names.length);
    keyAt.push(sa.keyStart[0]);
    ends.push(sa.pos);
    names.push(name);
    wide.push(sa.wideAt >= 0);
    kept.push(true);
    sa.wideAt = -1;
    return 1;
  };
  const rest = (): boolean => {
    let c: number;
    while ((c = next()) > 0);
    return c === 0;
  };

  const seen = new Set<string>();
  const sb = newScan(b, known);
  const keptB: number[] = [];
  // Bytes of both texts to be parsed, counted as soon as a member is sure to be kept.
  let used = 0;
  let q = 0;
  let i = 0;
  for (;;) {
    if (i === names.length && next() < 0) return undefined;
    // The legacy member i with the bytes before it (the opening brace or the comma), or the end.
    const last = i === names.length;
    const from = i === 0 ? 0 : ends[i - 1];
    const to = last ? la : ends[i];
    const len = to - from;
    // The value must end there in the candidate too (`,`, `}` or a space follows), or `12` would be
    // confirmed where `123` stands.
    if (q + len <= lb && (last ? q + len === lb : endsValue(b[q + len])) && a.compare(b, q, q + len, from, to) === 0) {
      if (last) break;
      if (wide[i] || seen.has(names[i])) return undefined;
      seen.add(names[i]);
      kept[i] = false;
      q += len;
      i++;
      continue;
    }
    // A candidate member that differs (or the end of the candidate's root): tokenize it.
    sb.pos = q;
    sb.state = q === 0 ? S_VALUE : S_AFTER;
    sb.depth = q === 0 ? 0 : 1;
    sb.isArr[0] = 0;
    sb.rootKeys.length = 0;
    if (run(sb, q + (budget - used), 1, false) !== CLOSED) return undefined;
    if (sb.depth === 0) {
      if (run(sb, Infinity, -1, false) !== END || sb.state !== S_DONE) return undefined;
      break;
    }
    const ks = sb.keyStart[0];
    const name = keyText(b, ks, keyEndAt(sb, 0));
    if (seen.has(name)) return undefined;
    seen.add(name);
    let j = i < names.length && names[i] === name ? i : index.get(name);
    if (j === undefined) {
      if (!rest()) return undefined;
      j = index.get(name);
    }
    if (j !== undefined && j >= i) {
      // Members i … j-1 come later in the candidate or not at all: they are kept.
      for (; i < j; i++) used += ends[i] - keyAt[i] + 1;
      i = j + 1;
      if (sb.pos - ks === ends[j] - keyAt[j] && a.compare(b, ks, sb.pos, keyAt[j], ends[j]) === 0) {
        if (wide[j]) return undefined;
        kept[j] = false;
        q = sb.pos;
        continue;
      }
      used += ends[j] - keyAt[j] + 1;
    }
    keptB.push(ks, sb.pos);
    used += sb.pos - ks + 1;
    if (used > budget) return undefined;
    q = sb.pos;
  }
  // The legacy members after the last one the candidate reached are kept; all must be valid.
  if (!rest()) return undefined;
  for (; i < names.length; i++) used += ends[i] - keyAt[i] + 1;
  if (used > budget) return undefined;
  const legacy: string[] = [];
  let members = 0;
  for (let k = 0; k < names.length; k++) {
    if (kept[k]) legacy.push(a.toString('utf8', keyAt[k], ends[k]));
    else members++;
  }
  const candidate: string[] = [];
  for (let k = 0; k < keptB.length; k += 2) candidate.push(b.toString('utf8', keptB[k], keptB[k + 1]));
  return { legacy: `{${legacy.join(',')}}`, candidate: `{${candidate.join(',')}}`, members };
}

/**
 * The members of a root object: where each value starts (`valueAt`, past the colon and any space)
 * and ends (`ends`, exclusive), its decoded key, and whether a number anywhere in the body may be
 * wide (beyond ±2^53). Undefined when the body is not one valid JSON object or a key repeats
 * (JSON.parse would keep the last).
 */
export interface RootMembers {
  valueAt: number[];
  ends: number[];
  names: string[];
  /** Member index by decoded key. */
  index: Map<string, number>;
  wide: boolean;
}

export function readRootMembers(buf: Buffer): RootMembers | undefined {
  let f = 0;
  while (isSpace(buf[f])) f++;
  if (buf[f] !== 0x7b) return undefined;
  const sc = newScan(buf, undefined);
  const out: RootMembers = { valueAt: [], ends: [], names: [], index: new Map(), wide: false };
  for (;;) {
    const name = readMember(sc);
    if (name === null) break;
    if (name === undefined || out.index.has(name)) return undefined;
    let v = keyEndAt(sc, 0);
    while (buf[v] !== 0x3a) v++;
    v++;
    while (isSpace(buf[v])) v++;
    out.index.set(name, out.names.length);
    out.valueAt.push(v);
    out.ends.push(sc.pos);
    out.names.push(name);
  }
  out.wide = sc.wideAt >= 0;
  return out;
}

/**
 * End (exclusive) of the JSON value that starts at t, or -1: a lean reading of its extent (a string,
 * a number, a literal, or a container with no number in it that may be beyond ±2^53). Validity past
 * the extent is the caller's to check.
 */
export function valueEnd(buf: Buffer, t: number): number {
  const c = buf[t];
  if (c === 0x22) return stringEnd(buf, t);
  if (c === 0x7b || c === 0x5b) {
    const e = skipContainer(buf, t, 1, buf.length + 1, undefined);
    return e < 0 ? -1 : e + 1;
  }
  if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
    const e = numberEnd(buf, t);
    return e < -1 ? ~e : e;
  }
  return literalEnd(buf, t, c);
}

export interface LockstepRules {
  body: PathMatcher;
  tolerance: { absolute: number; relative: number };
  numberFormat: 'strict' | 'lenient';
}

/**
 * What the fast path will parse: one window, or the root members that differ; undefined: the full
 * path. With `known`, big values read before are recognised rather than read again (known.ts).
 */
export function planLockstep(a: Buffer, b: Buffer, known?: KnownSpans): { window: Window } | { members: MemberWindows } | undefined {
  const la = a.length;
  const lb = b.length;
  if (la + lb < MIN_BODY_BYTES) return undefined;
  const p = commonPrefix(a, b);
  const s = commonSuffix(a, b, Math.min(la, lb) - p);
  const budget = (la + lb) * MAX_SHARE;
  // Any one window holds the whole differing span: past the budget, only several windows can pay.
  if (la - s - p + (lb - s - p) > budget) {
    const members = rootMemberWindows(a, b, budget, known);
    return members && { members };
  }
  const window = findWindowAt(a, b, p, s, known);
  return window && { window };
}

/** `texts`: the number-text pass added to the list (its differences belong to no single member). */
export interface Walked {
  capped: boolean;
  texts: boolean;
}

/**
 * Compares two differing UTF-8 JSON bodies through their differing container (or root members)
 * only, appending to `out` what the full path would; returns whether the list was capped and
 * whether the number texts added to it, or undefined when the full path must answer. The caller
 * has already ruled out mappings and transforms.
 */
export function lockstepJson(lb: Buffer, cb: Buffer, rules: LockstepRules, out: Difference[], known?: KnownSpans): Walked | undefined {
  const plan = planLockstep(lb, cb, known);
  if (plan === undefined) return undefined;
  if ('members' in plan) return walkWindow(plan.members.legacy, plan.members.candidate, rules, rules.body.initial, null, out);
  const w = plan.window;
  const m = rules.body;
  let st = m.initial;
  let node: PathNode | null = null;
  let ignored = ignoredAt(m, st);
  for (const k of w.keys) {
    // An unordered array matches its elements by value, not by place: the full walk must decide.
    if (typeof k === 'number' && st.length !== 0 && (flagsOf(m, st) & UNORDERED) !== 0) return undefined;
    st = step(m, st, k);
    if (ignoredAt(m, st)) ignored = true;
    node = { parent: node, key: k };
  }
  const members = w.outside !== undefined;
  const lt = members ? `{${lb.toString('utf8', w.start, w.endA + 1)}}` : lb.toString('utf8', w.start, w.endA + 1);
  const ct = members ? `{${cb.toString('utf8', w.start, w.endB + 1)}}` : cb.toString('utf8', w.start, w.endB + 1);
  const parsed = parseBoth(lt, ct);
  if (parsed === undefined) return undefined;
  const [lv, cv] = parsed;
  if (members) {
    // A key both in the run and outside it: JSON.parse would keep only the last of the whole body.
    const outside = new Set(w.outside);
    for (const v of [lv, cv]) for (const k of Object.keys(v as object)) if (outside.has(k)) return undefined;
  }
  if (ignored) return { capped: false, texts: false };
  return walkParsed(lt, ct, lv, cv, rules, st, node, out);
}

function parseBoth(lt: string, ct: string): [unknown, unknown] | undefined {
  try {
    return [JSON.parse(lt), JSON.parse(ct)];
  } catch {
    return undefined;
  }
}

/** Parses two window texts and walks them from the root (the root members' windows). */
function walkWindow(lt: string, ct: string, rules: LockstepRules, st: readonly number[], node: PathNode | null, out: Difference[]): Walked | undefined {
  const parsed = parseBoth(lt, ct);
  return parsed && walkParsed(lt, ct, parsed[0], parsed[1], rules, st, node, out);
}

function walkParsed(lt: string, ct: string, lv: unknown, cv: unknown, rules: LockstepRules, st: readonly number[], node: PathNode | null, out: Difference[]): Walked {
  const base: WalkBase = { s: st, node };
  const walk: WalkContext = { m: rules.body, tolerance: rules.tolerance, out, capped: false, work: 0 };
  const before = out.length;
  diffJson(lv, cv, walk, base);
  const walked = out.length;
  // As on the full path (see compareJson); outside the window every number text is shared.
  if (!walk.capped && (out.length === before || walk.wideNumbers === true)) {
    diffNumberTexts(lt, ct, lv, cv, walk, rules.numberFormat === 'strict', base);
  }
  return { capped: walk.capped, texts: out.length > walked };
}
