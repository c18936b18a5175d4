/**
 * The file state store (the embedded default, `cutover.state: { store: file, path }`): the memory
 * store's state, written as one JSON document after every change. A write is atomic: a temp file
 * next to the target, fsync, rename over the target, fsync of the directory. A crash (even SIGKILL
 * or power loss after the fsyncs) leaves either the old or the new document, never a mix.
 *
 * Start-up: a missing file is a fresh state. A file that does not parse as a state is moved aside to
 * `<path>.corrupt` and the proxy starts fresh (every route back at its configured seed weight, i.e.
 * the safe side), with an error in the log: exiting instead would only make a supervisor restart us
 * into the same file forever. A file that cannot be read at all (permissions) is an error: that one
 * needs a person.
 *
 * The Redis store (fleet) will follow the same shape: `version` is the fencing token a writer checks
 * inside its transaction, and `up()` turns false when the lease or the connection is lost.
 */
import { mkdir, open, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { CutoverError, StateWriteError } from '../errors.js';
import { freshSnapshot, MemoryStore } from './store.js';
import type { StoreSnapshot } from './types.js';
import { StateFileLock, type LockEvents } from './store-lock.js';

export { LOCK_LEASE_MS, type LockHolder } from './store-lock.js';

export class StateFileError extends CutoverError {
  constructor(message: string) {
    super('CUTOVER_STATE_UNREADABLE', message);
  }
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** An epoch-ms time a Date can show (within ±8.64e15; the API renders every stored time as ISO text). */
export function isTime(x: unknown): x is number {
  return typeof x === 'number' && Number.isFinite(x) && Math.abs(x) <= 8.64e15;
}

function isSnapshot(value: unknown): value is StoreSnapshot {
  if (!isObject(value)) return false;
  if (!(typeof value.version === 'number' && Number.isInteger(value.version) && value.version >= 0 && isObject(value.routes) && isObject(value.extra))) return false;
  // The proxy-wide switch: `"bypass": "false"` read as true would send every route to legacy, and a
  // time out of Date's range would make every view of the state throw.
  const g = value.global;
  return isObject(g) && typeof g.bypass === 'boolean' && isTime(g.changedAt) && typeof g.changedBy === 'string' && typeof g.reason === 'string';
}

const ROUTE_STATES = new Set(['shadow', 'shifting', 'paused', 'rolled_back', 'complete']);

/** Why a stored route entry cannot be used (a hand edit, another version), or null when it can. */
export function routeEntryProblem(name: string, entry: unknown): string | null {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return 'it is not an object';
  const e = entry as Record<string, unknown>;
  const num = (k: string) => typeof e[k] === 'number' && Number.isFinite(e[k]);
  if (e.route !== name) return `its route is ${JSON.stringify(e.route)}`;
  if (!num('weight') || (e.weight as number) < 0 || (e.weight as number) > 100) return `weight ${JSON.stringify(e.weight)} is not a percent`;
  if (!num('step') || !Number.isInteger(e.step) || (e.step as number) < 0) return `step ${JSON.stringify(e.step)} is not a step number`;
  if (typeof e.state !== 'string' || !ROUTE_STATES.has(e.state)) return `state ${JSON.stringify(e.state)} is unknown`;
  if (typeof e.paused !== 'boolean') return 'paused is not true or false';
  for (const k of ['passes', 'failures']) if (!num(k)) return `${k} is not a number`;
  for (const k of ['since', 'changedAt']) if (!isTime(e[k])) return `${k} is not a time`;
  if (!Array.isArray(e.history)) return 'history is not a list';
  if (!e.history.every((c) => isObject(c) && isTime(c.at) && Array.isArray(c.gates) && typeof c.verdict === 'string')) return 'history holds an entry that is not a check';
  if (typeof e.changedBy !== 'string' || typeof e.reason !== 'string') return 'changedBy or reason is not text';
  return null;
}

export interface FileStoreEvents extends LockEvents {
  /** The file did not parse: it was moved to `corruptPath` and the store started fresh. */
  onCorrupt?: (info: { path: string; corruptPath: string; reason: string }) => void;
  /** A route's entry could not be used: it was left out, so the route starts from its configured weight. */
  onInvalidRoute?: (info: { path: string; route: string; reason: string }) => void;
}

/** A temp file this old is a leftover whatever its process. */
const STALE_TEMP_MS = 60_000;

export class FileStore extends MemoryStore {
  override readonly kind = 'file';
  private healthy = true;
  private readonly tempPath: string;
  /** `<path>.lock`: names the process using the file, so a second one is told (store-lock.ts). */
  private readonly lock: StateFileLock;

  constructor(
    readonly path: string,
    private readonly events: FileStoreEvents = {},
  ) {
    super();
    // The token too: two processes with one pid (containers) sharing the file must not share a temp.
    this.lock = new StateFileLock(path, randomBytes(12).toString('hex'), events);
    this.tempPath = join(dirname(path), `.${basename(path)}.${process.pid}.${this.lock.token}.tmp`);
  }

  override async close(): Promise<void> {
    await this.lock.release();
  }

  override async load(): Promise<StoreSnapshot> {
    await this.lock.take();
    await this.removeStaleTemps();
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        this.state = freshSnapshot();
        return this.state;
      }
      this.healthy = false;
      throw new StateFileError(`Cannot read the state file ${this.path} (${code ?? 'error'}); fix its permissions or point cutover.state.path elsewhere.`);
    }
    let parsed: unknown;
    let reason = 'it is not a cutover state document';
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      parsed = undefined;
      reason = `it is not JSON (${(err as Error).message})`;
    }
    if (!isSnapshot(parsed)) {
      const corruptPath = `${this.path}.corrupt`;
      await rename(this.path, corruptPath);
      this.events.onCorrupt?.({ path: this.path, corruptPath, reason });
      this.state = freshSnapshot();
      return this.state;
    }
    for (const [route, entry] of Object.entries(parsed.routes)) {
      const problem = routeEntryProblem(route, entry);
      if (problem === null) continue;
      delete parsed.routes[route];
      this.events.onInvalidRoute?.({ path: this.path, route, reason: problem });
    }
    this.state = parsed;
    return this.state;
  }

  /** A writer killed between its temp file and the rename leaves the temp behind: never the state. */
  private async removeStaleTemps(): Promise<void> {
    const base = basename(this.path);
    const dir = dirname(this.path);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return;
    }
    for (const name of names) {
      // `.<name>.<pid>[.<token>].tmp` (a state write) and `<name>.lock.<token>.tmp` (a lock being taken).
      const write = name.startsWith(`.${base}.`) && /^\d+(?:\.[0-9a-f]+)?\.tmp$/.test(name.slice(base.length + 2));
      const lock = name.startsWith(`${base}.lock.`) && name.endsWith('.tmp');
      if (!write && !lock) continue;
      // A live writer's temp lives for milliseconds, and its pid says nothing across containers or
      // hosts: only a temp a minute old is a crash's leftover (a peer's write is never cut short).
      const path = join(dir, name);
      const age = await stat(path).then((s) => Date.now() - s.mtimeMs, () => -1);
      if (age > STALE_TEMP_MS) await unlink(path).catch(() => undefined);
    }
  }

  /** Temp file, fsync, rename, fsync the directory: the rename is the commit. */
  protected override async persist(next: StoreSnapshot): Promise<void> {
    try {
      await mkdir(dirname(this.path), { recursive: true });
      const file = await open(this.tempPath, 'w', 0o600);
      try {
        await file.writev(this.serialise(next));
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(this.tempPath, this.path);
      // Without this the rename itself may not survive a power loss.
      const dir = await open(dirname(this.path), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
      this.healthy = true;
    } catch (err) {
      this.healthy = false;
      throw new StateWriteError(`the state file ${this.path} could not be written (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
    }
  }

  override up(): boolean {
    return this.healthy;
  }

  /** The JSON bytes of each `extra` value, by the value written (setExtra always hands a new one). */
  private readonly extraBytes = new WeakMap<object, Buffer<ArrayBuffer>>();

  /**
   * The document's bytes as JSON.stringify would write them, but an `extra` value already written is
   * neither stringified nor encoded again: the credential inventory (up to ~10 MB at its bounds) rode
   * along with every route write, which blocked the event loop ~31 ms at each controller check.
   */
  private serialise(next: StoreSnapshot): Buffer<ArrayBuffer>[] {
    const parts = [Buffer.from(`{"version":${next.version},"global":${JSON.stringify(next.global)},"routes":${JSON.stringify(next.routes)},"extra":{`)];
    let first = true;
    for (const [key, value] of Object.entries(next.extra)) {
      const cacheable = typeof value === 'object' && value !== null;
      let bytes = cacheable ? this.extraBytes.get(value) : undefined;
      if (bytes === undefined) {
        const text = JSON.stringify(value) as string | undefined;
        if (text === undefined) continue;
        bytes = Buffer.from(text);
        if (cacheable) this.extraBytes.set(value, bytes);
      }
      parts.push(Buffer.from(`${first ? '' : ','}${JSON.stringify(key)}:`), bytes);
      first = false;
    }
    parts.push(Buffer.from('}}'));
    return parts;
  }
}
