/**
 * Each request's last compared pair, so that the next answers to the same request are compared
 * through what changed since, not read again. Machine-to-machine clients ask for the same
 * resources over and over (a status, an order, a price list), and the two backends answer them
 * with the same bytes each time but for a field or two that changes on every call (a request id, a
 * timestamp, an etag). Comparing such a pair reads both bodies whole, although all that changed since
 * the last pair of that request is a member or two of the root object.
 *
 * So per request (method and path) and rules, the last pair's bodies and body differences are kept.
 * The next pair is held against them by native compares: a body byte-equal to the kept one, or
 * differing from it only inside the values of a few root members (at most four per side), keeps
 * every other member's differences as they were; only the changed members' values are parsed and
 * walked, and their differences take the place of the old ones in the list. The full walk would
 * report the same: it reports the root's own differences first (members on one side only), then
 * each member on both sides in the legacy key order, a member's differences together, and what a
 * member adds depends on its two values and the rules only. The kept list is checked against that
 * order once per kept pair (layoutOf), and a member's kept differences against its own walk.
 *
 * What it cannot be sure of goes to the full comparison, which then keeps its pair: a change that
 * touches a key or a separator, a body that is not one JSON object or repeats a root key, a wide
 * number in a kept body or met equal in a changed value (the verdict may then rest on number texts
 * across the body), a difference no member owns, a list that would reach the cap, or an empty one
 * (the full path then reads number texts). test/compare-recent.test.ts holds it to the full path's
 * answers over random documents and edits; docs/compare.md ("Recent pairs") has the whole list.
 *
 * Bounded by bytes (bodies, differences, and the layout once read), least recently used first out;
 * a pair is kept only for a request seen before, so requests that never repeat cost a lookup and no
 * copy. One instance per thread that compares; it is the caller's state, passed in (compare/ keeps
 * none).
 */
import { isUtf8 } from 'node:buffer';
import { MAX_DIFFERENCES, diffJson, type WalkContext } from './json.js';
import { commonPrefix, readRootMembers, valueEnd, type LockstepRules, type RootMembers } from './lockstep.js';
import { concretePath, ignoredAt, step } from './path.js';
import type { Difference } from './types.js';

/** Requests remembered as seen once (their next pair is kept). */
const SIGHTINGS = 4096;

/** Longer request paths (with their query) are not kept: 4,096 sightings of them stay under 4 MiB. */
const MAX_PATH_CHARS = 1024;

/** Smaller pairs are compared in full in about the time a kept one takes to answer. */
const MIN_PAIR_BYTES = 512;

/** What a kept pair is charged besides its bodies: the entry and its key, and per difference its previews. */
const ENTRY_BYTES = 1024;
const DIFFERENCE_BYTES = 512;
/**
 * And once its layout is read, per root member of either body, besides its key: offsets, index and
 * order entries, a run (measured: ~100 bytes of heap per member with a 3-character key).
 */
const MEMBER_BYTES = 96;

/** The bytes a kept pair is charged against `maxBytes`. */
function charge(e: Entry): number {
  return e.legacy.length + e.candidate.length + ENTRY_BYTES + DIFFERENCE_BYTES * e.differences.length + e.layoutBytes;
}

/** What a layout holds besides the bodies: its members, their decoded keys, an owner per difference. */
function layoutBytes(l: Layout): number {
  let bytes = 8 * l.owners.length;
  for (const m of [l.legacy, l.candidate]) for (const name of m.names) bytes += MEMBER_BYTES + 2 * name.length;
  return bytes;
}

/**
 * Where one member's differences lie in an entry's list: from `at`, `count` of them (0: it has none
 * and new ones would go at `at`), and where the member sorts in the walk's order (`order`).
 */
interface Run {
  at: number;
  count: number;
  order: number;
}

/** Both bodies' root members, and the owner of each kept difference (a key of `order`). */
interface Layout {
  legacy: RootMembers;
  candidate: RootMembers;
  /**
   * Per member name, where its differences sort in the full walk's list: the root's own (members on
   * one side only: missing ones in the legacy's key order, then extra ones in the candidate's), then
   * each member on both sides, in the legacy's key order (Object.keys: index keys first).
   */
  order: Map<string, number>;
  /** Per kept difference, its member's `order`. */
  owners: number[];
}

/** One kept pair; its key names its rules, so it only meets pairs compared under them. */
interface Entry {
  legacy: Buffer;
  candidate: Buffer;
  /** The body's differences (not the status's or the headers'), as the full path reported them. */
  differences: readonly Difference[];
  /** Read at the first pair that differs from this one; null: none to use. */
  layout?: Layout | null;
  /** What the layout is charged (0 before it is read, or when there is none). */
  layoutBytes: number;
  /**
   * How many pairs of this request in a row, up to this one, were kept without a usable layout (too
   * big for its share, or differences it cannot place): the next one's layout is only read again
   * after 1, 2, 4, 8, ... of them, not at every pair, which would pay the read on top of the full path.
   */
  noLayout: number;
  /** Per member name, where its differences lie; null: the member cannot be replaced. */
  runs: Map<string, Run | null>;
  /** The members that changed last time, in the legacy and the candidate body. */
  hint: [number[], number[]];
  /** When it last answered or was kept (RecentPairs' clock). */
  used: number;
}

export interface RecentPairsStats {
  /** Pairs answered from a kept one. */
  hits: number;
  /** Pairs of a kept request that had to be compared in full. */
  misses: number;
  /** Kept pairs' layouts read (each read walks both bodies' root members). */
  layouts: number;
  entries: number;
  bytes: number;
}

/** Whether [from, to) is valid UTF-8: plain ASCII (most changed values) without a native call. */
function utf8At(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (buf[i] >= 0x80) return isUtf8(buf.subarray(from, to));
  return true;
}

function parseValue(buf: Buffer, from: number, to: number): { v: unknown } | undefined {
  if (to <= from || !utf8At(buf, from, to)) return undefined;
  try {
    return { v: JSON.parse(buf.toString('utf8', from, to)) as unknown };
  } catch {
    return undefined;
  }
}

/** An array index as a key: Object.keys lists these first, in ascending order. */
function isIndexKey(k: string): boolean {
  if (k.length === 0 || k.length > 10 || (k.length > 1 && k[0] === '0')) return false;
  for (let i = 0; i < k.length; i++) if (k.charCodeAt(i) < 48 || k.charCodeAt(i) > 57) return false;
  return Number(k) < 4294967295;
}

/** Member names in Object.keys order. */
function keyOrder(names: readonly string[]): string[] {
  const index = names.filter(isIndexKey).sort((a, b) => Number(a) - Number(b));
  return index.length === 0 ? names.slice() : [...index, ...names.filter((k) => !isIndexKey(k))];
}

/** Whether a difference at `path` lies at or below `prefix` (a member's path). */
function under(path: string, prefix: string): boolean {
  return path.startsWith(prefix) && (path.length === prefix.length || path[prefix.length] === '.' || path[prefix.length] === '[');
}

/** The layout of a kept pair, or null when a difference has no single owner or the list is not in walk order. */
function layoutOf(e: Entry): Layout | null {
  const legacy = readRootMembers(e.legacy);
  const candidate = legacy && !legacy.wide ? readRootMembers(e.candidate) : undefined;
  if (!legacy || !candidate || candidate.wide) return null;
  const order = new Map<string, number>();
  for (const k of keyOrder(legacy.names)) if (!candidate.index.has(k)) order.set(k, order.size);
  for (const k of keyOrder(candidate.names)) if (!legacy.index.has(k)) order.set(k, order.size);
  for (const k of keyOrder(legacy.names)) if (candidate.index.has(k)) order.set(k, order.size);
  const prefixes = [...order.keys()].map((k) => [concretePath({ parent: null, key: k }), order.get(k)!] as const);
  const owners: number[] = [];
  let last = -1;
  for (const d of e.differences) {
    let owner = -1;
    for (const [prefix, o] of prefixes) {
      if (!under(d.path, prefix)) continue;
      if (owner !== -1) return null; // two members' paths look alike (names cut to their bound)
      owner = o;
    }
    // No member's, or out of the walk's order: the list cannot be cut by member.
    if (owner === -1 || owner < last) return null;
    owners.push((last = owner));
  }
  return { legacy, candidate, order, owners };
}

export class RecentPairs {
  private readonly entries = new Map<string, Entry>();
  private readonly seen = new Set<string>();
  private readonly ids = new WeakMap<object, number>();
  private nextId = 0;
  private clock = 0;
  private held = 0;
  private hits = 0;
  private misses = 0;
  private layouts = 0;

  /** `maxBytes` bounds the bodies kept (0 keeps none); one pair takes at most a sixteenth of it. */
  constructor(readonly maxBytes: number) {}

  stats(): RecentPairsStats {
    return { hits: this.hits, misses: this.misses, layouts: this.layouts, entries: this.entries.size, bytes: this.held };
  }

  /**
   * The key of a request under one set of rules (a pair's two comparisons have rules of their own);
   * undefined when nothing is kept (`maxBytes` 0), or for a path too long to be worth keeping as a
   * key (the sightings would add up).
   */
  keyOf(rules: LockstepRules, method: string, path: string): string | undefined {
    if (this.maxBytes === 0 || path.length > MAX_PATH_CHARS) return undefined;
    let id = this.ids.get(rules);
    if (id === undefined) this.ids.set(rules, (id = this.nextId++));
    return `${id} ${method} ${path}`;
  }

  /**
   * Appends the body differences of lb and cb (UTF-8 JSON, compared without mapping or transform)
   * to `out` when the kept pair of `key` answers them; false when they must be compared in full.
   */
  reuse(key: string, lb: Buffer, cb: Buffer, rules: LockstepRules, out: Difference[]): boolean {
    if (lb.length + cb.length < MIN_PAIR_BYTES) return false;
    const e = this.entries.get(key);
    if (e === undefined) return false;
    const sameL = e.legacy.length === lb.length && e.legacy.equals(lb);
    const sameC = e.candidate.length === cb.length && e.candidate.equals(cb);
    if (!(sameL && sameC) && e.layout === undefined) this.layOut(key, e);
    if (answer(e, lb, cb, sameL, sameC, rules, out)) {
      this.hits++;
      e.used = ++this.clock;
      return true;
    }
    this.misses++;
    return false;
  }

  /**
   * Reads a kept pair's layout and charges it: a root with many small members costs more in its
   * layout than in its bytes. A layout past the pair's share is not kept (the pair then serves only
   * byte-equal repeats); the others may push out the pairs used longest ago.
   */
  private layOut(key: string, e: Entry): void {
    this.layouts++;
    const layout = layoutOf(e);
    const bytes = layout === null ? 0 : layoutBytes(layout);
    if (charge(e) + bytes > this.maxBytes / 16) {
      e.layout = null;
      return;
    }
    e.layout = layout;
    e.layoutBytes = bytes;
    this.held += bytes;
    while (this.held > this.maxBytes && this.entries.size > 1) this.evictLeastRecent(key);
  }

  /** Keeps the pair just compared in full (its body differences only), if its request was seen before. */
  remember(key: string, lb: Buffer, cb: Buffer, differences: readonly Difference[]): void {
    const bytes = lb.length + cb.length + ENTRY_BYTES + DIFFERENCE_BYTES * differences.length;
    if (lb.length + cb.length < MIN_PAIR_BYTES || bytes > this.maxBytes / 16) return;
    // A number text difference comes from the pass that reads the whole bodies: not a member's own.
    for (const d of differences) if (d.kind === 'number_format') return;
    const old = this.entries.get(key);
    if (old === undefined && !this.seen.has(key)) {
      if (this.seen.size >= SIGHTINGS) this.seen.clear();
      this.seen.add(key);
      return;
    }
    this.seen.delete(key);
    if (old !== undefined) {
      this.entries.delete(key);
      this.held -= charge(old);
    }
    while (this.held + bytes > this.maxBytes && this.entries.size > 0) this.evictLeastRecent();
    // Copies of their own: the captured bodies go back to the capture pool and are written over.
    const legacy = Buffer.allocUnsafeSlow(lb.length);
    lb.copy(legacy);
    const candidate = Buffer.allocUnsafeSlow(cb.length);
    cb.copy(candidate);
    const noLayout = old !== undefined && old.layout === null ? old.noLayout + 1 : 0;
    // Between two reads the pair still serves byte-equal repeats.
    const layout = (noLayout & (noLayout - 1)) === 0 ? undefined : null;
    this.entries.set(key, { legacy, candidate, differences: differences.slice(), layout, layoutBytes: 0, noLayout, runs: new Map(), hint: [[], []], used: ++this.clock });
    this.held += bytes;
  }

  /**
   * Drops the entry that answered or was kept longest ago, other than `spare`'s (a scan: only when a
   * pair or a layout is kept and room is short).
   */
  private evictLeastRecent(spare?: string): void {
    let oldKey: string | undefined;
    let oldest: Entry | undefined;
    for (const [k, e] of this.entries) {
      if (k !== spare && (oldest === undefined || e.used < oldest.used)) {
        oldKey = k;
        oldest = e;
      }
    }
    if (oldest === undefined) return;
    this.entries.delete(oldKey!);
    this.held -= charge(oldest);
  }
}

/** One changed member's new differences and the run they take the place of. */
interface Swap {
  run: Run;
  walk: Difference[];
}

/** At most this many root members changed per side, or the pair is compared in full. */
const MAX_CHANGED = 4;

/** A member of the kept body whose value changed: where that value lies in the new body. */
interface Changed {
  member: number;
  from: number;
  to: number;
}

/** The member of `m` after `last` whose value holds offset `pos` (its end included), or -1. */
function memberAt(m: RootMembers, pos: number, last: number): number {
  for (let i = last + 1; i < m.names.length; i++) {
    if (m.ends[i] < pos) continue;
    return m.valueAt[i] <= pos ? i : -1;
  }
  return -1;
}

/**
 * The members of `m` (kept's root members) whose values differ in `now`, with their new extents,
 * when `now` is `kept` with only those values changed (at most MAX_CHANGED); undefined otherwise.
 * Read from the start: the bytes up to the next member that changed last time (`hint`) are held
 * against kept's by one native compare, else the next difference is found by growing compares;
 * the new value's extent is read (valueEnd), and the rest goes on from its end. Whether each new
 * value is valid JSON is the caller's to check (it parses them).
 */
function changedMembers(m: RootMembers, kept: Buffer, now: Buffer, hint: readonly number[]): Changed[] | undefined {
  const out: Changed[] = [];
  let k = 0;
  let n = 0;
  let last = -1;
  let h = 0;
  for (;;) {
    let i = -1;
    while (h < hint.length && hint[h] <= last) h++;
    if (h < hint.length) {
      const j = hint[h++];
      const len = m.valueAt[j] - k;
      if (n + len <= now.length && kept.compare(now, n, n + len, k, m.valueAt[j]) === 0) i = j;
      else h = hint.length; // out of step with last time: find the differences instead
    }
    if (i < 0) {
      // The rest unchanged, as it mostly is once the members that changed are read: one compare.
      if (kept.length - k === now.length - n && kept.compare(now, n, now.length, k, kept.length) === 0) return out;
      const p = commonPrefix(kept.subarray(k), now.subarray(n));
      if (k + p === kept.length && n + p === now.length) return out;
      i = memberAt(m, k + p, last);
      if (i < 0) return undefined;
    }
    const from = n + m.valueAt[i] - k;
    const to = valueEnd(now, from);
    if (to < 0) return undefined;
    const len = m.ends[i] - m.valueAt[i];
    if (to - from !== len || kept.compare(now, from, to, m.valueAt[i], m.ends[i]) !== 0) {
      if (out.length === MAX_CHANGED) return undefined;
      out.push({ member: i, from, to });
    }
    last = i;
    k = m.ends[i];
    n = to;
  }
}

/** `sameL`, `sameC`: whether each body is byte-equal to the kept one (a layout is read unless both are). */
function answer(e: Entry, lb: Buffer, cb: Buffer, sameL: boolean, sameC: boolean, rules: LockstepRules, out: Difference[]): boolean {
  if (sameL && sameC) {
    // `out` holds this pair's header differences, which may be more than the kept pair's had: a
    // list that would reach the cap goes to the full path, which cuts and flags it.
    if (out.length + e.differences.length >= MAX_DIFFERENCES) return false;
    for (const d of e.differences) out.push(d);
    return true;
  }
  const layout = e.layout;
  if (layout === null || layout === undefined) return false;
  // The members that changed, on each side that changed, and their values now.
  const nl = sameL ? [] : changedMembers(layout.legacy, e.legacy, lb, e.hint[0]);
  const nc = sameC ? [] : changedMembers(layout.candidate, e.candidate, cb, e.hint[1]);
  if (nl === undefined || nc === undefined) return false;
  if (!sameL) e.hint[0] = nl.map((c) => c.member);
  if (!sameC) e.hint[1] = nc.map((c) => c.member);
  const names = new Map<string, [Side | undefined, Side | undefined]>();
  for (const [side, m, changed, buf] of [
    [0, layout.legacy, nl, lb],
    [1, layout.candidate, nc, cb],
  ] as const) {
    for (const c of changed) {
      const name = m.names[c.member];
      const v = parseValue(buf, c.from, c.to);
      if (v === undefined) return false;
      const values = names.get(name) ?? [undefined, undefined];
      values[side] = v;
      names.set(name, values);
    }
  }
  const swaps: Swap[] = [];
  let count = e.differences.length;
  for (const [name, [l, c]] of names) {
    const run = runOf(e, layout, name, rules);
    if (run === null) return false;
    // A side whose member did not change: its kept value (or none, when it has no such member).
    const lv = l !== undefined ? l : keptValue(e.legacy, layout.legacy, name);
    const cv = c !== undefined ? c : keptValue(e.candidate, layout.candidate, name);
    if (lv === undefined || cv === undefined) return false;
    const walk = walkMember(name, lv, cv, rules);
    if (walk === undefined) return false;
    swaps.push({ run, walk });
    count += walk.length - run.count;
  }
  // An empty list sends the full path on to number texts; one at the cap would be cut there.
  if (count === 0 || out.length + count >= MAX_DIFFERENCES) return false;
  swaps.sort((a, b) => a.run.at - b.run.at || a.run.order - b.run.order);
  const list = e.differences;
  let i = 0;
  for (const { run, walk } of swaps) {
    for (; i < run.at; i++) out.push(list[i]);
    for (const d of walk) out.push(d);
    i = run.at + run.count;
  }
  for (; i < list.length; i++) out.push(list[i]);
  return true;
}

/** A kept body's value of member `name`: null when the body has no such member, undefined when it does not parse. */
function keptValue(buf: Buffer, m: RootMembers, name: string): Side | undefined {
  const i = m.index.get(name);
  return i === undefined ? null : parseValue(buf, m.valueAt[i], m.ends[i]);
}

/** Where the kept differences of member `name` lie: they must be its own walk's, together. */
function runOf(e: Entry, layout: Layout, name: string, rules: LockstepRules): Run | null {
  const known = e.runs.get(name);
  if (known !== undefined) return known;
  let run: Run | null = null;
  const order = layout.order.get(name)!;
  const lv = keptValue(e.legacy, layout.legacy, name);
  const cv = keptValue(e.candidate, layout.candidate, name);
  const own = lv !== undefined && cv !== undefined ? walkMember(name, lv, cv, rules) : undefined;
  if (own !== undefined) {
    const owners = layout.owners;
    let at = 0;
    while (at < owners.length && owners[at] < order) at++;
    let count = 0;
    while (at + count < owners.length && owners[at + count] === order) count++;
    const list = e.differences;
    const same = (d: Difference, k: number): boolean => list[at + k].path === d.path && list[at + k].kind === d.kind && list[at + k].field === d.field;
    if (count === own.length && own.every(same)) run = { at, count, order };
  }
  e.runs.set(name, run);
  return run;
}

/** One side's value of a member; null: the member is not on that side. */
type Side = { v: unknown } | null;

/** A one-member object (any key, `__proto__` too, as JSON.parse makes it). */
function holding(name: string, side: Side): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (side !== null) Object.defineProperty(o, name, { value: side.v, enumerable: true, writable: true, configurable: true });
  return o;
}

/** The differences member `name` adds to the full walk's list; undefined if not sure. */
function walkMember(name: string, l: Side, c: Side, rules: LockstepRules): Difference[] | undefined {
  const out: Difference[] = [];
  // A rule ignoring the whole body (`$`) ends at the root: a member's own walk would step past it.
  if (ignoredAt(rules.body, rules.body.initial)) return out;
  const walk: WalkContext = { m: rules.body, tolerance: rules.tolerance, out, capped: false, work: 0 };
  // On both sides, its values are walked from its own place; on one, the root reports it.
  if (l !== null && c !== null) diffJson(l.v, c.v, walk, { s: step(rules.body, rules.body.initial, name), node: { parent: null, key: name } });
  else diffJson(holding(name, l), holding(name, c), walk);
  return walk.capped || walk.wideNumbers === true ? undefined : out;
}
