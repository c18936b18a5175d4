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
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { CutoverError } from '../errors.js';
import { freshSnapshot, MemoryStore } from './store.js';
import type { StoreSnapshot } from './types.js';

export class StateFileError extends CutoverError {
  constructor(message: string) {
    super('CUTOVER_STATE_UNREADABLE', message);
  }
}

function isSnapshot(value: unknown): value is StoreSnapshot {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  const isObject = (x: unknown) => typeof x === 'object' && x !== null && !Array.isArray(x);
  return typeof v.version === 'number' && Number.isInteger(v.version) && v.version >= 0 && isObject(v.global) && isObject(v.routes) && isObject(v.extra);
}

export interface FileStoreEvents {
  /** The file did not parse: it was moved to `corruptPath` and the store started fresh. */
  onCorrupt?: (info: { path: string; corruptPath: string; reason: string }) => void;
}

export class FileStore extends MemoryStore {
  override readonly kind = 'file';
  private healthy = true;
  private readonly tempPath: string;

  constructor(
    readonly path: string,
    private readonly events: FileStoreEvents = {},
  ) {
    super();
    this.tempPath = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  }

  override async load(): Promise<StoreSnapshot> {
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
    this.state = parsed;
    return this.state;
  }

  /** A writer killed between its temp file and the rename leaves the temp behind: never the state. */
  private async removeStaleTemps(): Promise<void> {
    const prefix = `.${basename(this.path)}.`;
    let names: string[];
    try {
      names = await readdir(dirname(this.path));
    } catch {
      return;
    }
    for (const name of names) {
      if (name.startsWith(prefix) && /^\d+\.tmp$/.test(name.slice(prefix.length))) await unlink(join(dirname(this.path), name)).catch(() => undefined);
    }
  }

  /** Temp file, fsync, rename, fsync the directory: the rename is the commit. */
  protected override async persist(next: StoreSnapshot): Promise<void> {
    try {
      await mkdir(dirname(this.path), { recursive: true });
      const file = await open(this.tempPath, 'w', 0o600);
      try {
        await file.writeFile(JSON.stringify(next));
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
      throw new CutoverError('CUTOVER_STATE_WRITE_FAILED', `Cannot write the state file ${this.path} (${(err as NodeJS.ErrnoException).code ?? 'error'}); the change was not applied. Check the disk and the directory's permissions.`);
    }
  }

  override up(): boolean {
    return this.healthy;
  }
}
