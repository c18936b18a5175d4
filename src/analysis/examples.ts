/**
 * Diff examples of one route, kept per (field, kind) so a rare kind is never pushed out by a
 * frequent one. Bounded: at most `maxKeys` (field, kind) pairs with `perKey` examples each; when a
 * new pair arrives at the bound, the pair updated least recently goes, so fields first seen late in
 * a route's life still get examples. Examples older than the analysis window are dropped on write
 * and never shown on read.
 *
 * Every compared pair adds an example per differing (field, kind), thousands a second on a busy
 * route, so an add is a lookup by field, then among that field's few kinds, and a move to the end of
 * a linked list kept in order of update: no key string is built and no map is reordered. (A Map
 * keyed by `field kind` and reordered by delete and set cost ~1.8 µs per compared pair of eight
 * differences, a sixth of comparing and recording one.)
 */
import type { DiffKind } from '../compare/index.js';
import type { StoredExample } from './report.js';

interface Entry {
  field: string;
  kind: DiffKind;
  list: StoredExample[];
  /** Neighbours in order of update: `older` of the least recently updated one is null. */
  older: Entry | null;
  newer: Entry | null;
}

export class ExampleStore {
  /** Each field's entries, one per kind it has examples of. */
  private readonly fields = new Map<string, Entry[]>();
  private count = 0;
  /** Ends of the list in order of update. */
  private oldest: Entry | null = null;
  private newest: Entry | null = null;

  constructor(
    private readonly maxKeys: number,
    private readonly perKey: number,
    private readonly windowMs: number,
  ) {}

  get size(): number {
    return this.count;
  }

  hasField(field: string): boolean {
    return this.fields.has(field);
  }

  add(field: string, kind: DiffKind, example: StoredExample): void {
    this.expire(example.at - this.windowMs);
    let kinds = this.fields.get(field);
    let e: Entry | null = null;
    if (kinds !== undefined) for (let i = 0; i < kinds.length && e === null; i++) if (kinds[i].kind === kind) e = kinds[i];
    if (e !== null) {
      if (e !== this.newest) {
        this.unlink(e);
        this.append(e);
      }
    } else {
      if (this.count >= this.maxKeys && this.oldest !== null) {
        this.remove(this.oldest);
        kinds = this.fields.get(field); // the entry evicted may have been this field's last
      }
      e = { field, kind, list: [], older: null, newer: null };
      if (kinds === undefined) this.fields.set(field, [e]);
      else kinds.push(e);
      this.count++;
      this.append(e);
    }
    e.list.push(example);
    if (e.list.length > this.perKey) e.list.shift();
  }

  /**
   * Every field's examples newer than `since`, newest first, taking one of each kind before a second
   * of any: at least one per kind, and at most max(perKey, kinds) per field.
   */
  byField(since: number): Map<string, StoredExample[]> {
    const lists = new Map<string, StoredExample[][]>();
    for (let e = this.oldest; e !== null; e = e.newer) {
      const live = e.list.filter((x) => x.at > since).reverse();
      if (live.length === 0) continue;
      const l = lists.get(e.field);
      if (l === undefined) lists.set(e.field, [live]);
      else l.push(live);
    }
    const out = new Map<string, StoredExample[]>();
    for (const [field, kinds] of lists) out.set(field, this.interleave(kinds));
    return out;
  }

  private interleave(lists: StoredExample[][]): StoredExample[] {
    const out: StoredExample[] = [];
    const limit = Math.max(this.perKey, lists.length);
    for (let round = 0; out.length < limit; round++) {
      let took = false;
      for (const l of lists) {
        if (round < l.length && out.length < limit) {
          out.push(l[round]);
          took = true;
        }
      }
      if (!took) break;
    }
    return out;
  }

  /** Drops entries whose newest example is older than `before`, from the least recently updated; stops at the first live one. */
  private expire(before: number): void {
    while (this.oldest !== null && this.oldest.list[this.oldest.list.length - 1].at <= before) this.remove(this.oldest);
  }

  private append(e: Entry): void {
    e.older = this.newest;
    e.newer = null;
    if (this.newest !== null) this.newest.newer = e;
    else this.oldest = e;
    this.newest = e;
  }

  private unlink(e: Entry): void {
    if (e.older !== null) e.older.newer = e.newer;
    else this.oldest = e.newer;
    if (e.newer !== null) e.newer.older = e.older;
    else this.newest = e.older;
    e.older = e.newer = null;
  }

  private remove(e: Entry): void {
    this.unlink(e);
    this.count--;
    const kinds = this.fields.get(e.field);
    if (kinds === undefined) return;
    const i = kinds.indexOf(e);
    if (i !== -1) kinds.splice(i, 1);
    if (kinds.length === 0) this.fields.delete(e.field);
  }
}
