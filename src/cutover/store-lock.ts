/**
 * The state file's advisory lock, `<path>.lock`: which process uses the file (pid, host, pid
 * namespace, a token of its own), refreshed every 10 s. Two processes on one file each write their
 * own state over the other's, so a rollback made through one is undone by the other's next check: a
 * process that finds the file held by another live one says so (`onShared`), naming it. It never
 * refuses to start: a proxy in the data path must come up with a stale lock, a full disk or a
 * read-only directory (`onLockFailed`).
 */
import { readlinkSync } from 'node:fs';
import { mkdir, open, readFile, rename, stat, unlink, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname } from 'node:path';

/** A lock not refreshed for this long belongs to a process that is gone (on any host). */
export const LOCK_LEASE_MS = 30_000;
const LOCK_REFRESH_MS = 10_000;

/** Who holds `<path>.lock`; the token tells this process's lock from any other (pids repeat across containers). */
export interface LockHolder {
  pid: number;
  host: string;
  since: string;
  token: string;
  /** The holder's pid namespace (Linux), so its pid is only looked up where it means that process. */
  pidns?: string;
}

/** This process's pid namespace (`pid:[4026531836]`), or undefined where there is none to read. */
function pidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}

const PID_NAMESPACE = pidNamespace();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export interface LockEvents {
  /** Another live process holds the file's lock: both write the file, each over the other's state. */
  onShared?: (info: { path: string; holder: LockHolder }) => void;
  /** The lock could not be written (a full disk, a read-only directory): the store runs without it. */
  onLockFailed?: (info: { path: string; reason: string }) => void;
}

export class StateFileLock {
  private readonly lockPath: string;
  private refresh: NodeJS.Timeout | null = null;
  private tried = false;

  constructor(
    private readonly statePath: string,
    /** This process's token (the store's temp file names carry it too). */
    readonly token: string,
    private readonly events: LockEvents,
  ) {
    this.lockPath = `${statePath}.lock`;
  }

  /**
   * Takes the lock, or reports its live holder (`onShared`) or a failure to write it (`onLockFailed`);
   * never throws. A lock is stale when its process is gone on this host, or when it was not refreshed
   * for 30 s; a stale lock is replaced (written aside, renamed over it).
   */
  async take(): Promise<void> {
    // Once per store: the inventory loads the store a second time at start.
    if (this.tried) return;
    this.tried = true;
    const found = await this.read();
    if (found !== null && found.holder.token !== this.token && !this.stale(found)) {
      this.events.onShared?.({ path: this.statePath, holder: found.holder });
      return;
    }
    const mine: LockHolder = { pid: process.pid, host: hostname(), since: new Date().toISOString(), token: this.token, pidns: PID_NAMESPACE };
    const temp = `${this.lockPath}.${this.token}.tmp`;
    try {
      await mkdir(dirname(this.lockPath), { recursive: true });
      const file = await open(temp, 'w', 0o600);
      try {
        await file.writeFile(JSON.stringify(mine));
      } finally {
        await file.close();
      }
      await rename(temp, this.lockPath);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      this.events.onLockFailed?.({ path: this.lockPath, reason: (err as NodeJS.ErrnoException).code ?? String(err) });
      return;
    }
    // Two replacements may have renamed at once: the one whose token is there holds it.
    const held = await this.read();
    if (held === null || held.holder.token !== this.token) {
      if (held !== null) this.events.onShared?.({ path: this.statePath, holder: held.holder });
      return;
    }
    this.refresh = setInterval(() => void this.keep(), LOCK_REFRESH_MS);
    this.refresh.unref();
  }

  /** Keeps the lease, while the lock is still this process's; another process's is reported once. */
  private async keep(): Promise<void> {
    const held = await this.read();
    if (held === null || held.holder.token !== this.token) {
      if (this.refresh !== null) clearInterval(this.refresh);
      this.refresh = null;
      if (held !== null) this.events.onShared?.({ path: this.statePath, holder: held.holder });
      return;
    }
    const now = new Date();
    await utimes(this.lockPath, now, now).catch(() => undefined);
  }

  private async read(): Promise<{ holder: LockHolder; age: number } | null> {
    try {
      const [text, info] = await Promise.all([readFile(this.lockPath, 'utf8'), stat(this.lockPath)]);
      const holder = JSON.parse(text) as Partial<LockHolder>;
      if (typeof holder.pid !== 'number' || typeof holder.host !== 'string' || typeof holder.token !== 'string') return null;
      return { holder: { pid: holder.pid, host: holder.host, since: String(holder.since ?? 'unknown'), token: holder.token, pidns: typeof holder.pidns === 'string' ? holder.pidns : undefined }, age: Date.now() - info.mtimeMs };
    } catch {
      return null;
    }
  }

  private stale(found: { holder: LockHolder; age: number }): boolean {
    if (found.age > LOCK_LEASE_MS) return true;
    // A pid means that process only on this host and in this pid namespace (containers sharing a
    // hostname each have their own pids): where both namespaces are known and differ, only the lease
    // tells. An unknown one (an older build's lock, a system without /proc) is taken as this one.
    const { holder } = found;
    if (holder.host !== hostname()) return false;
    if (holder.pidns !== undefined && PID_NAMESPACE !== undefined && holder.pidns !== PID_NAMESPACE) return false;
    // Our own pid under another token: an earlier run of this process (a container restarted in place).
    return holder.pid === process.pid || !alive(holder.pid);
  }

  /** Stops keeping the lease and removes the lock, when it is still this process's. */
  async release(): Promise<void> {
    if (this.refresh === null) return;
    clearInterval(this.refresh);
    this.refresh = null;
    // Only a lock that is still this process's: one taken over since belongs to its new holder.
    const held = await this.read();
    if (held?.holder.token === this.token) await unlink(this.lockPath).catch(() => undefined);
  }
}
