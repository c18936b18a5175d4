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
 * A full disk: a rollback (the lever's or the controller's) and the failing checks leading to one
 * are applied in memory when the file cannot be written (UnsavedOptions), and a restart before the
 * disk recovers would read the old weights and send clients back to new. So the store sets space
 * aside while it has some: `<path>.rescue`, a file of zeros written out in full at start (128 KiB,
 * or four times the routes' state when that is more, grown in place after a write that needs it,
 * never shrunk or removed by a growth that fails). A change kept unsaved is written over it in place
 * (a framed record: magic, length, CRC-32, the routes' and the switch's state as JSON), which needs
 * no new block on ext4, XFS or tmpfs, and fsynced. The file has two slots, its halves, and a record
 * goes into the one not holding the newest record: a write torn by a power loss leaves the one
 * before it whole. At start the newest valid record, when newer than the file (its `version`), is
 * taken over the file's routes and switch, and written to the file at once when it can be; once the
 * file holds a newer state both slots are zeroed. A rescue file that cannot be read (permissions) is
 * said, and left alone. On a copy-on-write filesystem (btrfs, ZFS) the in-place write may fail
 * as well: the change then stays in memory only, as before, and the lever says so. To reset the
 * state by hand, delete both files.
 *
 * The Redis store (fleet) will follow the same shape: `version` is the fencing token a writer checks
 * inside its transaction, and `up()` turns false when the lease or the connection is lost.
 */
import { mkdir, open, readdir, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
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
  /** Changes the file lacked were taken from the rescue record (written while the file could not be). */
  onRescued?: (info: { path: string; rescuePath: string; version: number; routes: string[] }) => void;
  /** The rescue file exists but cannot be read: a change kept there, if any, is not applied, and the file is left alone. */
  onRescueUnreadable?: (info: { rescuePath: string; reason: string }) => void;
}

/** The rescue file's size at least (two slots of half): the state of hundreds of routes. */
export const RESCUE_MIN_BYTES = 128 * 1024;
const RESCUE_MAGIC = Buffer.from('CUTRESC1');
/** Magic, then the JSON's length and its CRC-32, both 32-bit big-endian. */
const RESCUE_HEAD = RESCUE_MAGIC.length + 8;

/** The rescue record's bytes for `state`: only what a rollback changes (routes, the switch), not `extra`. */
function rescueRecord(state: StoreSnapshot): Buffer {
  const json = Buffer.from(JSON.stringify({ version: state.version, global: state.global, routes: state.routes }));
  const head = Buffer.alloc(RESCUE_HEAD);
  RESCUE_MAGIC.copy(head);
  head.writeUInt32BE(json.length, RESCUE_MAGIC.length);
  head.writeUInt32BE(crc32(json), RESCUE_MAGIC.length + 4);
  return Buffer.concat([head, json]);
}

type RescueRecord = Pick<StoreSnapshot, 'version' | 'global' | 'routes'>;

/** The newest valid record of a rescue file's two slots (its halves), and its slot; null when neither holds one. */
function newestRescueRecord(bytes: Buffer): { record: RescueRecord; slot: 0 | 1 } | null {
  const half = Math.floor(bytes.length / 2);
  let best: { record: RescueRecord; slot: 0 | 1 } | null = null;
  for (const slot of [0, 1] as const) {
    const record = readRescueRecord(bytes.subarray(slot * half, (slot + 1) * half));
    if (record !== null && (best === null || record.version > best.record.version)) best = { record, slot };
  }
  return best;
}

/** The record a rescue slot holds, or null (zeros, torn, or not a state). */
function readRescueRecord(bytes: Buffer): RescueRecord | null {
  if (bytes.length < RESCUE_HEAD || !bytes.subarray(0, RESCUE_MAGIC.length).equals(RESCUE_MAGIC)) return null;
  const length = bytes.readUInt32BE(RESCUE_MAGIC.length);
  const json = bytes.subarray(RESCUE_HEAD, RESCUE_HEAD + length);
  if (json.length !== length || crc32(json) !== bytes.readUInt32BE(RESCUE_MAGIC.length + 4)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(json.toString('utf8'));
  } catch {
    return null;
  }
  return isObject(parsed) && isSnapshot({ ...parsed, extra: {} }) ? (parsed as RescueRecord) : null;
}

/** A temp file this old is a leftover whatever its process. */
const STALE_TEMP_MS = 60_000;

export class FileStore extends MemoryStore {
  override readonly kind = 'file';
  private healthy = true;
  private readonly tempPath: string;
  /** `<path>.rescue`: where a change kept unsaved goes (see the module comment). */
  readonly rescuePath: string;
  /** The rescue file's size as last written out in full; 0 when there is none to write into. */
  private rescueBytes = 0;
  /** The slot holding the newest record the state file does not have yet; -1 when none does. */
  private rescueSlot: -1 | 0 | 1 = -1;
  /** The rescue file could not be read: it is neither written nor regrown (it may hold a record). */
  private rescueBlocked = false;
  /** The state as loaded: a second `load()` (the credential inventory asks too) returns it. */
  private loaded = false;
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
    this.rescuePath = `${path}.rescue`;
  }

  override async close(): Promise<void> {
    await this.lock.release();
  }

  override async load(): Promise<StoreSnapshot> {
    // Read once: after that this process's state is the one that counts.
    if (this.loaded) return this.state;
    await this.lock.take();
    await this.removeStaleTemps();
    await this.loadFile();
    await this.adoptRescue();
    await this.reserveRescue();
    this.loaded = true;
    return this.state;
  }

  private async loadFile(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        this.state = freshSnapshot();
        return;
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
      return;
    }
    for (const [route, entry] of Object.entries(parsed.routes)) {
      const problem = routeEntryProblem(route, entry);
      if (problem === null) continue;
      delete parsed.routes[route];
      this.events.onInvalidRoute?.({ path: this.path, route, reason: problem });
    }
    this.state = parsed;
  }

  /** A rescue record newer than the file: its routes and switch are taken, and written to the file when it can be. */
  private async adoptRescue(): Promise<void> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.rescuePath);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      if (code === 'ENOENT') return;
      this.rescueBlocked = true;
      this.events.onRescueUnreadable?.({ rescuePath: this.rescuePath, reason: code });
      return;
    }
    this.rescueBytes = bytes.length;
    const newest = newestRescueRecord(bytes);
    if (newest === null) return;
    const { record, slot } = newest;
    this.rescueSlot = slot;
    if (record.version <= this.state.version) {
      // The file got there first (its write ran, the zeroing did not): the record must not outlive it.
      await this.clearRescue();
      return;
    }
    const routes: StoreSnapshot['routes'] = {};
    for (const [route, entry] of Object.entries(record.routes)) {
      const problem = routeEntryProblem(route, entry);
      if (problem === null) routes[route] = entry;
      else this.events.onInvalidRoute?.({ path: this.rescuePath, route, reason: problem });
    }
    this.state = { ...this.state, version: record.version, global: record.global, routes };
    this.events.onRescued?.({ path: this.path, rescuePath: this.rescuePath, version: record.version, routes: Object.keys(routes) });
    // Written to the file now if the disk allows (which zeroes the record); else the record stays.
    await this.persist(this.state).catch(() => undefined);
  }

  /**
   * Writes the rescue file out (zeros) to at least RESCUE_MIN_BYTES and four times the current
   * record, in place, while the disk has room: later, a record is written into it without a new
   * block. A growth that fails leaves the file at its old size, still set aside.
   */
  private async reserveRescue(recordBytes = rescueRecord(this.state).length): Promise<void> {
    if (this.rescueSlot !== -1 || this.rescueBlocked) return;
    const wanted = Math.max(RESCUE_MIN_BYTES, 4 * recordBytes);
    if (this.rescueBytes >= wanted) return;
    const had = this.rescueBytes;
    let file: FileHandle | null = null;
    try {
      await mkdir(dirname(this.path), { recursive: true });
      file = await open(this.rescuePath, had > 0 ? 'r+' : 'w', 0o600);
      // From the start: no slot head of the old layout may read as a record in the new one.
      const { bytesWritten } = await file.write(Buffer.alloc(wanted), 0, wanted, 0);
      if (bytesWritten !== wanted) throw new Error('short write');
      await file.sync();
      this.rescueBytes = wanted;
    } catch {
      // No room for that much: what was set aside before stays (zeros, its old size).
      await file?.truncate(had).catch(() => undefined);
    } finally {
      await file?.close().catch(() => undefined);
    }
  }

  protected override async rescue(next: StoreSnapshot): Promise<string | null> {
    const record = rescueRecord(next);
    const half = Math.floor(this.rescueBytes / 2);
    if (this.rescueBlocked || record.length > half) return null;
    // Never over the newest record: a write torn by a power loss must leave it whole.
    const slot = this.rescueSlot === 0 ? 1 : 0;
    if (!(await this.writeRescue([[record, slot * half]]))) return null;
    this.rescueSlot = slot;
    return `the rescue file ${this.rescuePath}`;
  }

  /** The file now holds a newer state than any record: zeroes both slots' heads (in place). */
  private async clearRescue(): Promise<void> {
    const zeros = Buffer.alloc(RESCUE_HEAD);
    // Left as it is when that fails: its version is older than the file's, so a start ignores it.
    if (await this.writeRescue([[zeros, 0], [zeros, Math.floor(this.rescueBytes / 2)]])) this.rescueSlot = -1;
  }

  /** Writes each buffer at its offset of the rescue file, in place, then fsyncs: whether all of it was written. */
  private async writeRescue(writes: readonly [Buffer, number][]): Promise<boolean> {
    try {
      const file = await open(this.rescuePath, 'r+');
      try {
        for (const [bytes, at] of writes) {
          const { bytesWritten } = await file.write(bytes, 0, bytes.length, at);
          if (bytesWritten !== bytes.length) return false;
        }
        await file.sync();
        return true;
      } finally {
        await file.close();
      }
    } catch {
      return false;
    }
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
    const parts = this.serialise(next);
    try {
      await mkdir(dirname(this.path), { recursive: true });
      const file = await open(this.tempPath, 'w', 0o600);
      try {
        await file.writev(parts);
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
    if (this.rescueSlot !== -1) await this.clearRescue();
    // The first part holds the version, the switch and the routes: about the record's size.
    await this.reserveRescue(parts[0].length + RESCUE_HEAD);
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
