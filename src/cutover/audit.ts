/**
 * The audit log: every weight or state change, by the controller or a person, as one JSON line at
 * `cutover.audit.path` (when, who, route, from, to, why). Appends are serialised so lines never
 * interleave. Without a path the latest entries are kept in memory instead (bounded).
 */
import { appendFile, mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { RouteStateName } from './types.js';

/** Where a route was or went: enough to read a change without the rest of the state. */
export interface AuditPosition {
  weight: number;
  step: number;
  state: RouteStateName;
  paused: boolean;
}

export interface AuditEntry {
  /** ISO time. */
  when: string;
  /** A token name, or `controller`. */
  who: string;
  /** The route, or `*` for proxy-wide changes (bypass). */
  route: string;
  /** advance, complete, pause-step, rollback, promote, pause, resume, weight, bypass-on, bypass-off. */
  action: string;
  from: AuditPosition | null;
  to: AuditPosition | null;
  why: string;
}

/** Entries kept in memory, and the most `read` returns. */
export const AUDIT_MEMORY = 1000;
/** Bytes read from the end of the file to find the latest entries. */
const TAIL_BYTES = 1024 * 1024;

/** Keeps the last AUDIT_MEMORY items of `list`. */
function bound<T>(list: T[]): void {
  if (list.length > AUDIT_MEMORY) list.splice(0, list.length - AUDIT_MEMORY);
}

/** Whether the file is missing, empty, or ends with a newline. */
async function endsLine(path: string): Promise<boolean> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
  try {
    const { size } = await handle.stat();
    if (size === 0) return true;
    const last = Buffer.alloc(1);
    await handle.read(last, 0, 1, size - 1);
    return last[0] === 0x0a;
  } finally {
    await handle.close();
  }
}

export class AuditLog {
  /** The latest entries, with or without a file: what `read` answers when the file cannot be read. */
  private readonly recent: AuditEntry[] = [];
  /** Entries the file did not take: `read` still shows them, in time order. */
  private readonly unwritten: AuditEntry[] = [];
  private tail: Promise<void> = Promise.resolve();
  private dirReady = false;
  /** Entries that could not be written to the file (logged through `onError`). */
  failedWrites = 0;

  constructor(
    readonly path?: string,
    private readonly onError: (err: Error) => void = () => {},
  ) {}

  /** Appends one entry; resolves when it is on disk (callers need not wait). Never rejects. */
  append(entry: AuditEntry): Promise<void> {
    const path = this.path;
    this.recent.push(entry);
    bound(this.recent);
    if (path === undefined) return Promise.resolve();
    const line = `${JSON.stringify(entry)}\n`;
    this.tail = this.tail.then(async () => {
      try {
        if (!this.dirReady) {
          await mkdir(dirname(path), { recursive: true });
          this.dirReady = true;
        }
        // A crash mid-append leaves a torn last line without its newline: glued to it, this entry
        // would be lost with it when read. Checked before every append (levers are rare), since the
        // file may be replaced while the proxy runs (a restore, a copy ending in a torn line).
        await appendFile(path, (await endsLine(path)) ? line : `\n${line}`, 'utf8');
      } catch (err) {
        this.failedWrites++;
        this.unwritten.push(entry);
        bound(this.unwritten);
        this.onError(err as Error);
      }
    });
    return this.tail;
  }

  /** The latest `limit` entries, oldest first: from the file when there is one, else from memory. */
  async read(limit = 100): Promise<AuditEntry[]> {
    const n = Math.max(0, Math.min(AUDIT_MEMORY, Math.floor(limit)));
    if (this.path === undefined) return this.recent.slice(-n);
    await this.tail;
    let text: string;
    try {
      const handle = await open(this.path, 'r');
      try {
        const { size } = await handle.stat();
        const start = Math.max(0, size - TAIL_BYTES);
        const buffer = Buffer.alloc(size - start);
        await handle.read(buffer, 0, buffer.length, start);
        text = buffer.toString('utf8');
        // A partial first line (cut by the tail window) is skipped.
        if (start > 0) text = text.slice(text.indexOf('\n') + 1);
      } finally {
        await handle.close();
      }
    } catch (err) {
      // A file that cannot be read (gone, permissions) is no reason to answer nothing: the lever was
      // pulled. What this process wrote or tried to write is in memory.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && this.recent.length === 0) return [];
      return this.recent.slice(-n);
    }
    const entries: AuditEntry[] = [];
    for (const line of text.split('\n')) {
      if (!line) continue;
      try {
        entries.push(JSON.parse(line) as AuditEntry);
      } catch {
        // A torn last line from a crash mid-append is not an entry.
      }
    }
    if (this.unwritten.length > 0) {
      entries.push(...this.unwritten);
      entries.sort((a, b) => (a.when < b.when ? -1 : a.when > b.when ? 1 : 0));
    }
    return entries.slice(-n);
  }

  /** Resolves when every append so far is written. */
  flush(): Promise<void> {
    return this.tail;
  }
}
