/**
 * Mappings rewrite the new backend's parsed body into the legacy contract before the diff:
 * rename/move, drop, value map. They work on the candidate tree this comparison parsed itself, so
 * changing it in place is safe; writes go through defineProperty so a `__proto__` key stays data.
 */
import type { Mapping } from '../config/schema.js';
import { parsePath, PathSyntaxError, type PathKey, type Segment } from './path.js';

export type CompiledMapping =
  | { op: 'rename'; from: Segment[]; to: Segment[]; text: string }
  | { op: 'drop'; at: Segment[]; text: string }
  | { op: 'map'; at: Segment[]; values: ReadonlyMap<string, unknown>; text: string };

type Container = Record<string, unknown> | unknown[];

interface Match {
  parent: Container;
  key: PathKey;
  /** Keys the wildcards of the pattern matched, in order, to fill the wildcards of a rename target. */
  bindings: PathKey[];
}

export function compileMapping(m: Mapping, i: number): CompiledMapping {
  const where = `compare.mappings[${i}]`;
  if ('rename' in m) {
    const from = parsePath(m.rename, `${where}.rename`);
    const to = parsePath(m.to, `${where}.to`);
    if (from.length === 0 || to.length === 0) throw new PathSyntaxError(where, m.rename, 'cannot rename the whole body');
    if (from.some((s) => s.recursive) || to.some((s) => s.recursive)) throw new PathSyntaxError(where, m.rename, '".." cannot be used in a rename: the target needs one place per match');
    const wildFrom = from.filter((s) => s.kind === 'any').length;
    const wildTo = to.filter((s) => s.kind === 'any').length;
    if (wildTo > wildFrom) throw new PathSyntaxError(`${where}.to`, m.to, `it has ${wildTo} [*] but rename has ${wildFrom}; each [*] of "to" takes the key matched by the same [*] of "rename"`);
    return { op: 'rename', from, to, text: `rename ${m.rename} to ${m.to}` };
  }
  if ('drop' in m) {
    const at = parsePath(m.drop, `${where}.drop`);
    if (at.length === 0) throw new PathSyntaxError(where, m.drop, 'cannot drop the whole body');
    return { op: 'drop', at, text: `drop ${m.drop}` };
  }
  const at = parsePath(m.map, `${where}.map`);
  return { op: 'map', at, values: new Map(Object.entries(m.values)), text: `map ${m.map}` };
}

const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

function isContainer(v: unknown): v is Container {
  return typeof v === 'object' && v !== null;
}

function childKeys(v: Container): PathKey[] {
  if (Array.isArray(v)) return v.map((_, i) => i);
  return Object.keys(v);
}

function get(c: Container, k: PathKey): unknown {
  if (Array.isArray(c)) return typeof k === 'number' ? c[k] : undefined;
  return hasOwn(c, String(k)) ? c[String(k)] : undefined;
}

function has(c: Container, k: PathKey): boolean {
  if (Array.isArray(c)) return typeof k === 'number' && k < c.length;
  return hasOwn(c, String(k));
}

function set(c: Container, k: PathKey, v: unknown): void {
  if (Array.isArray(c)) {
    if (typeof k === 'number') c[k] = v;
    return;
  }
  Object.defineProperty(c, String(k), { value: v, writable: true, enumerable: true, configurable: true });
}

function keyMatches(seg: Segment, c: Container, k: PathKey): boolean {
  if (seg.kind === 'any') return true;
  if (seg.kind === 'index') return Array.isArray(c) && k === seg.index;
  return String(k) === seg.key;
}

/** Every place the pattern matches in the tree under `box.root`; iterative, so depth is no issue. */
function resolve(box: { root: unknown }, segs: Segment[]): Match[] {
  let frontier: Match[] = [{ parent: box as unknown as Container, key: 'root', bindings: [] }];
  for (const seg of segs) {
    const next: Match[] = [];
    for (const m of frontier) {
      const start = get(m.parent, m.key);
      if (!isContainer(start)) continue;
      // A recursive step tries every container at or below `start`, breadth first.
      const containers: Container[] = seg.recursive ? descendants(start) : [start];
      for (const c of containers) {
        if (seg.kind === 'any') {
          for (const k of childKeys(c)) next.push({ parent: c, key: k, bindings: [...m.bindings, k] });
        } else {
          const k: PathKey = seg.kind === 'index' ? seg.index : Array.isArray(c) && /^\d+$/.test(seg.key) ? Number(seg.key) : seg.key;
          if (keyMatches(seg, c, k) && has(c, k)) next.push({ parent: c, key: k, bindings: m.bindings });
        }
      }
    }
    frontier = next;
    if (frontier.length === 0) break;
  }
  return frontier;
}

function descendants(root: Container): Container[] {
  const out: Container[] = [root];
  for (let i = 0; i < out.length; i++) {
    const c = out[i];
    for (const k of childKeys(c)) {
      const v = get(c, k);
      if (isContainer(v)) out.push(v);
    }
  }
  return out;
}

function remove(matches: Match[]): void {
  // Array elements go last-first so the earlier indices stay valid.
  const fromArrays = matches.filter((m) => Array.isArray(m.parent)).sort((x, y) => (y.key as number) - (x.key as number));
  for (const m of matches) if (!Array.isArray(m.parent)) delete (m.parent as Record<string, unknown>)[String(m.key)];
  for (const m of fromArrays) (m.parent as unknown[]).splice(m.key as number, 1);
}

/** Writes `value` at `to`, filling its wildcards from `bindings` and creating missing objects on the way. */
function place(box: { root: unknown }, to: Segment[], bindings: PathKey[], value: unknown): void {
  let c: Container = box as unknown as Container;
  let key: PathKey = 'root';
  let w = 0;
  for (const seg of to) {
    let next = get(c, key);
    if (next === undefined) {
      next = {};
      set(c, key, next);
    }
    if (!isContainer(next)) return; // a scalar is in the way: the value has nowhere to go
    c = next;
    key = seg.kind === 'any' ? bindings[w++] : seg.kind === 'index' ? seg.index : seg.key;
    if (Array.isArray(c) && typeof key === 'string' && /^\d+$/.test(key)) key = Number(key);
  }
  set(c, key, value);
}

/** Applies the mappings in order and returns the (possibly replaced) root. */
export function applyMappings(root: unknown, mappings: readonly CompiledMapping[]): unknown {
  const box = { root };
  for (const mapping of mappings) {
    if (mapping.op === 'drop') {
      remove(resolve(box, mapping.at));
    } else if (mapping.op === 'map') {
      for (const m of resolve(box, mapping.at)) {
        const v = get(m.parent, m.key);
        if (isContainer(v)) continue;
        const k = String(v);
        if (mapping.values.has(k)) set(m.parent, m.key, mapping.values.get(k));
      }
    } else {
      const matches = resolve(box, mapping.from);
      const moved = matches.map((m) => ({ value: get(m.parent, m.key), bindings: m.bindings }));
      remove(matches);
      for (const { value, bindings } of moved) place(box, mapping.to, bindings, value);
    }
  }
  return box.root;
}
