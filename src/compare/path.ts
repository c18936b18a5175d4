/**
 * Body paths: parsing the rule syntax once, a small automaton that tracks which rules apply while a
 * walk descends (so no path string is built or regex run per node), and rendering of concrete and
 * grouping paths for the differences that are actually reported.
 */
import { CutoverError } from '../errors.js';
import { boundName, MAX_PATH_CHARS } from './bound.js';

/**
 * One step of a rule path. `any` is `*` / `[*]` (any member or element); `recursive` marks a step
 * written after `..`, which may match at any depth below the previous step.
 */
export type Segment =
  | { kind: 'key'; key: string; recursive: boolean }
  | { kind: 'index'; index: number; recursive: boolean }
  | { kind: 'any'; recursive: boolean };

export type PathKey = string | number;

export class PathSyntaxError extends CutoverError {
  constructor(where: string, path: string, problem: string) {
    super('CUTOVER_BAD_COMPARE_PATH', `${where}: cannot parse path "${path}": ${problem}; use e.g. $.meta.requestId, $.items[*].updatedAt or $..etag`);
    this.name = 'PathSyntaxError';
  }
}

/** Parses `$.a.b`, `$['a b']`, `$.items[*].x`, `$.items[0]`, `$..etag`, `$.*`. */
export function parsePath(path: string, where: string): Segment[] {
  if (path[0] !== '$') throw new PathSyntaxError(where, path, 'it must start with "$"');
  const segments: Segment[] = [];
  let i = 1;
  while (i < path.length) {
    let recursive = false;
    const c = path[i];
    if (c === '.') {
      i++;
      if (path[i] === '.') {
        recursive = true;
        i++;
      }
      if (path[i] === '[') {
        if (!recursive) throw new PathSyntaxError(where, path, `unexpected "[" after "." at ${i}`);
        continue; // `..[*]` / `..['k']`: the bracket branch below reads it; carry the flag through
      }
      let end = i;
      while (end < path.length && path[end] !== '.' && path[end] !== '[') end++;
      const name = path.slice(i, end);
      if (!name) throw new PathSyntaxError(where, path, `empty name at ${i}`);
      if (/[\]'"\s]/.test(name)) throw new PathSyntaxError(where, path, `"${name}" needs brackets, e.g. ['${name}']`);
      segments.push(name === '*' ? { kind: 'any', recursive } : { kind: 'key', key: name, recursive });
      i = end;
    } else if (c === '[') {
      // A `..` immediately before a bracket sets recursion for it.
      recursive = path[i - 1] === '.' && path[i - 2] === '.';
      const close = readBracket(path, i, where);
      segments.push({ ...close.segment, recursive } as Segment);
      i = close.next;
    } else {
      throw new PathSyntaxError(where, path, `unexpected "${c}" at ${i}`);
    }
  }
  if (path.endsWith('..')) throw new PathSyntaxError(where, path, '".." must be followed by a name or [*]');
  if (segments.length > 200) throw new PathSyntaxError(where, path, 'more than 200 steps');
  return segments;
}

function readBracket(path: string, start: number, where: string): { segment: Segment; next: number } {
  let i = start + 1;
  const q = path[i];
  if (q === "'" || q === '"') {
    let key = '';
    i++;
    while (i < path.length && path[i] !== q) {
      if (path[i] === '\\' && i + 1 < path.length) i++;
      key += path[i];
      i++;
    }
    if (path[i] !== q || path[i + 1] !== ']') throw new PathSyntaxError(where, path, `unterminated quoted name at ${start}`);
    return { segment: { kind: 'key', key, recursive: false }, next: i + 2 };
  }
  const close = path.indexOf(']', i);
  if (close === -1) throw new PathSyntaxError(where, path, `expected "]" after position ${start}`);
  const inner = path.slice(i, close).trim();
  if (inner === '*') return { segment: { kind: 'any', recursive: false }, next: close + 1 };
  if (/^\d+$/.test(inner)) return { segment: { kind: 'index', index: Number(inner), recursive: false }, next: close + 1 };
  throw new PathSyntaxError(where, path, `"[${inner}]" is not [*], [number] or ['name']`);
}

function segmentMatches(seg: Segment, key: PathKey): boolean {
  switch (seg.kind) {
    case 'any':
      return true;
    case 'index':
      return key === seg.index;
    case 'key':
      // `.0` on an array is accepted as index 0: people write it and nothing else could be meant.
      return typeof key === 'string' ? key === seg.key : String(key) === seg.key;
  }
}

/** Flags a rule gives the node it matches. */
export const IGNORE = 1;
export const UNORDERED = 2;
export const SENSITIVE = 4;

/**
 * All rule paths of a route as one automaton. A state is a sorted list of (rule, position) pairs
 * encoded as `rule * 256 + position`; the shared EMPTY state means "no rule can match below here",
 * which is what almost every node of a body is in, at no cost.
 */
export interface PathMatcher {
  rules: readonly Segment[][];
  flags: readonly number[];
  initial: readonly number[];
}

export const EMPTY: readonly number[] = Object.freeze([]);

export function buildMatcher(rules: { segments: Segment[]; flag: number }[]): PathMatcher {
  const initial: number[] = [];
  rules.forEach((_, r) => initial.push(r * 256));
  return { rules: rules.map((r) => r.segments), flags: rules.map((r) => r.flag), initial: initial.length ? initial : EMPTY };
}

/** The state after stepping from a node in `state` into its child `key`. */
export function step(m: PathMatcher, state: readonly number[], key: PathKey): readonly number[] {
  if (state.length === 0) return EMPTY;
  let out: number[] | undefined;
  for (let s = 0; s < state.length; s++) {
    const code = state[s];
    const rule = code >> 8;
    const pos = code & 255;
    const segs = m.rules[rule];
    if (pos >= segs.length) continue;
    const seg = segs[pos];
    if (seg.recursive) (out ??= []).push(code); // `..` may skip this level
    if (segmentMatches(seg, key)) (out ??= []).push(code + 1);
  }
  if (!out) return EMPTY;
  if (out.length > 1) {
    out.sort((a, b) => a - b);
    let w = 1;
    for (let r = 1; r < out.length; r++) if (out[r] !== out[w - 1]) out[w++] = out[r];
    out.length = w;
  }
  return out;
}

/** The flags of every rule that ends exactly at a node in `state`. */
export function flagsOf(m: PathMatcher, state: readonly number[]): number {
  let f = 0;
  for (let s = 0; s < state.length; s++) {
    const code = state[s];
    if ((code & 255) === m.rules[code >> 8].length) f |= m.flags[code >> 8];
  }
  return f;
}

/** Whether a rule ignores the node in `state`. */
export function ignoredAt(m: PathMatcher, state: readonly number[]): boolean {
  return state.length !== 0 && (flagsOf(m, state) & IGNORE) !== 0;
}

/** Concrete path segments back from a node to the root, built only when a difference is reported. */
export interface PathNode {
  parent: PathNode | null;
  key: PathKey;
}

/** Rendered paths keep their first and last steps: a 10,000-level body must not make a 50 KB label. */
const MAX_RENDERED_STEPS = 48;

function collect(node: PathNode | null): PathKey[] {
  const keys: PathKey[] = [];
  for (let n = node; n; n = n.parent) keys.push(n.key);
  return keys.reverse();
}

const PLAIN_KEY = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

/** How a key shows in a rendered path: `.name`, or `['na\\'me']`, bounded (a long key is cut and hashed). */
export function renderKey(name: string): string {
  // Keys come from backend answers: bounded before they become labels, stored paths and examples.
  const key = boundName(name);
  return PLAIN_KEY.test(key) ? `.${key}` : `['${key.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}']`;
}

function render(keys: PathKey[], piece: (k: PathKey) => string): string {
  let out = '$';
  if (keys.length > MAX_RENDERED_STEPS) {
    for (let i = 0; i < 32; i++) out += piece(keys[i]);
    out += `…(${keys.length - 48} steps)…`;
    for (let i = keys.length - 16; i < keys.length; i++) out += piece(keys[i]);
    return out;
  }
  for (const k of keys) out += piece(k);
  return out;
}

export function concretePath(node: PathNode | null): string {
  return boundName(render(collect(node), (k) => (typeof k === 'number' ? `[${k}]` : renderKey(k))), MAX_PATH_CHARS);
}

export function fieldPath(node: PathNode | null): string {
  return boundName(render(collect(node), (k) => (typeof k === 'number' ? '[]' : isDynamicKey(k) ? '{*}' : renderKey(k))), MAX_PATH_CHARS);
}

const UUID = /^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$/i;
const LONG_HEX = /^(0x)?[0-9a-f]{12,}$/i;
const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}/;
// cus_NffrFeUfNV2Hib, ch_3MtwBwLkdIwHu7ix: the id part carries a digit and a capital, unlike created_timestamp.
const PREFIXED_ID = /^[a-z]{2,8}_(?=[A-Za-z0-9]*\d)(?=[A-Za-z0-9]*[A-Z])[A-Za-z0-9]{8,}$/;
const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
const TOKEN = /^[A-Za-z0-9_-]{20,}$/;

/**
 * Whether an object key is an identifier of the data rather than a name of the schema, so that
 * `{ byId: { "8f3a…": {...}, "91c2…": {...} } }` groups as `$.byId{*}`. Decided per key, never from
 * the siblings, so one key always lands in the same field whatever else the object holds.
 */
export function isDynamicKey(key: string): boolean {
  if (key.length === 0) return false;
  const c = key.charCodeAt(0);
  if ((c >= 48 && c <= 57) || c === 45) {
    if (/^-?\d+(\.\d+)?$/.test(key)) return true; // numeric ids, years, versions like 2.1
    if (ISO_DATE.test(key)) return true;
  }
  if (EMAIL.test(key)) return true;
  if (key.length < 12) return false;
  if (UUID.test(key) || LONG_HEX.test(key) || ULID.test(key) || PREFIXED_ID.test(key)) return true;
  // Long opaque tokens: letters and at least two digits, no word separators a schema would use.
  return TOKEN.test(key) && /\d.*\d/.test(key) && !/[a-z]_[a-z]/.test(key);
}

/** Parses a concrete path produced by concretePath back into keys (for redaction). */
export function concreteKeys(path: string): PathKey[] | undefined {
  try {
    return parsePath(path, 'path').map((s) => (s.kind === 'key' ? s.key : s.kind === 'index' ? s.index : '*'));
  } catch {
    return undefined;
  }
}
