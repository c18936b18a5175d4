/**
 * Diff examples of one route, kept per (field, kind) so a rare kind is never pushed out by a
 * frequent one. Bounded: at most `maxKeys` (field, kind) pairs with `perKey` examples each; when a
 * new pair arrives at the bound, the pair updated least recently goes, so fields first seen late in
 * a route's life still get examples. Examples older than the analysis window are dropped on write
 * and never shown on read.
 */
import type { DiffKind } from '../compare/index.js';
import type { StoredExample } from './report.js';

interface Entry {
  field: string;
  kind: DiffKind;
  list: StoredExample[];
}

export class ExampleStore {
  /** In order of last update: the first entry is the least recently updated. */
  private readonly byKey = new Map<string, Entry>();
  /** How many (field, kind) entries each field has, for `hasField`. */
  private readonly fields = new Map<string, number>();

  constructor(
    private readonly maxKeys: number,
    private readonly perKey: number,
    private readonly windowMs: number,
  ) {}

  get size(): number {
    return this.byKey.size;
  }

  hasField(field: string): boolean {
    return this.fields.has(field);
  }

  add(field: string, kind: DiffKind, example: StoredExample): void {
    this.expire(example.at - this.windowMs);
    const key = `${field}\u0000${kind}`;
    let e = this.byKey.get(key);
    if (e !== undefined) this.byKey.delete(key); // re-inserted below: now the most recent
    else {
      if (this.byKey.size >= this.maxKeys) this.evictOldest();
      e = { field, kind, list: [] };
      this.fields.set(field, (this.fields.get(field) ?? 0) + 1);
    }
    this.byKey.set(key, e);
    e.list.push(example);
    if (e.list.length > this.perKey) e.list.shift();
  }

  /**
   * Every field's examples newer than `since`, newest first, taking one of each kind before a second
   * of any: at least one per kind, and at most max(perKey, kinds) per field.
   */
  byField(since: number): Map<string, StoredExample[]> {
    const lists = new Map<string, StoredExample[][]>();
    for (const e of this.byKey.values()) {
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

  /** Drops entries whose newest example is older than `before`; stops at the first live one. */
  private expire(before: number): void {
    for (const [key, e] of this.byKey) {
      if (e.list[e.list.length - 1].at > before) break;
      this.remove(key, e);
    }
  }

  private evictOldest(): void {
    const first = this.byKey.entries().next();
    if (!first.done) this.remove(first.value[0], first.value[1]);
  }

  private remove(key: string, e: Entry): void {
    this.byKey.delete(key);
    const n = (this.fields.get(e.field) ?? 1) - 1;
    if (n <= 0) this.fields.delete(e.field);
    else this.fields.set(e.field, n);
  }
}
