import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, statfsSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { FileStore, LOCK_LEASE_MS, RESCUE_MIN_BYTES } from '../src/cutover/store-file.js';
import { FullDiskStore } from './helpers/full-disk.js';
import type { RouteState } from '../src/cutover/types.js';
import { startBackend, waitFor, type TestBackend } from './helpers/backend.js';
import { baseConfig, startProxy } from './helpers/proxy.js';

const WRITER = join(import.meta.dirname, 'fixtures/state-writer.mjs');

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'cutover-state-'));
}

function seed(route: string, weight = 0): () => RouteState {
  return () => ({ route, weight, step: 0, state: 'shadow', paused: false, since: 0, passes: 0, failures: 0, history: [], changedAt: 0, changedBy: 'test', reason: '' });
}

async function backend(name: string): Promise<TestBackend> {
  const b = await startBackend((_req, res) => res.end(name));
  cleanups.push(() => b.close());
  return b;
}

describe('file state store', () => {
  it('starts fresh from a missing file, writes it atomically, and reads it back', async () => {
    const path = join(tempDir(), 'nested', 'state.json');
    const store = new FileStore(path);
    expect((await store.load()).version).toBe(0);
    expect(existsSync(path)).toBe(false);
    await store.updateRoute('a', seed('a'), (c) => ({ ...c, weight: 25 }));
    await store.updateGlobal((g) => ({ ...g, bypass: true, changedBy: 'ops' }));
    const again = new FileStore(path);
    const state = await again.load();
    expect(state.version).toBe(2);
    expect(state.routes.a.weight).toBe(25);
    expect(state.global.bypass).toBe(true);
  });

  it('moves a corrupt file aside to .corrupt and starts fresh, saying so', async () => {
    const path = join(tempDir(), 'state.json');
    writeFileSync(path, '{"version": 3, "routes": {"a": ');
    const seen: string[] = [];
    const store = new FileStore(path, { onCorrupt: ({ corruptPath, reason }) => seen.push(`${corruptPath}: ${reason}`) });
    expect((await store.load()).routes).toEqual({});
    expect(seen).toHaveLength(1);
    expect(seen[0]).toContain(`${path}.corrupt: it is not JSON`);
    expect(readFileSync(`${path}.corrupt`, 'utf8')).toBe('{"version": 3, "routes": {"a": ');
    expect(existsSync(path)).toBe(false);
    // Valid JSON of the wrong shape is corrupt too.
    writeFileSync(path, '[1,2,3]');
    await new FileStore(path).load();
    expect(readFileSync(`${path}.corrupt`, 'utf8')).toBe('[1,2,3]');
    // So is a global switch of the wrong type: "false" would have read as bypass on.
    for (const global of [{ bypass: 'false', changedAt: 0, changedBy: '', reason: '' }, { bypass: false, changedAt: -1e16, changedBy: '', reason: '' }]) {
      writeFileSync(path, JSON.stringify({ version: 1, global, routes: {}, extra: {} }));
      const state = await new FileStore(path).load();
      expect(state.global.bypass, JSON.stringify(global)).toBe(false);
      expect(existsSync(`${path}.corrupt`)).toBe(true);
    }
  });

  it('leaves out a route entry it cannot use (a hand edit), keeps the others, and says which and why', async () => {
    const path = join(tempDir(), 'state.json');
    const good = { route: 'a', weight: 25, step: 3, state: 'shifting', paused: false, since: 1, passes: 0, failures: 0, history: [], changedAt: 1, changedBy: 'controller', reason: 'x' };
    writeFileSync(path, JSON.stringify({ version: 4, global: { bypass: false, changedAt: 0, changedBy: '', reason: '' }, extra: {}, routes: { a: good, b: { ...good, route: 'b', weight: 'ten' }, c: { ...good, route: 'c', history: undefined }, d: { ...good, route: 'd', since: 1e17 }, e: { ...good, route: 'e', history: [{}] } } }));
    const seen: string[] = [];
    const state = await new FileStore(path, { onInvalidRoute: ({ route, reason }) => seen.push(`${route}: ${reason}`) }).load();
    expect(Object.keys(state.routes)).toEqual(['a']);
    expect(state.routes.a.weight).toBe(25);
    expect(seen).toEqual(['b: weight "ten" is not a percent', 'c: history is not a list', 'd: since is not a time', 'e: history holds an entry that is not a check']);
  });

  it('reports a failed write (store down), keeps the previous state, and recovers', async () => {
    const dir = tempDir();
    const stateDir = join(dir, 'state');
    const path = join(stateDir, 'state.json');
    const store = new FileStore(path);
    await store.load();
    await store.updateRoute('a', seed('a'), (c) => ({ ...c, weight: 5 }));
    // The state directory turns into a plain file: every write fails, even as root.
    renameSync(stateDir, join(dir, 'moved'));
    writeFileSync(stateDir, 'not a directory');
    await expect(store.updateRoute('a', seed('a'), (c) => ({ ...c, weight: 50 }))).rejects.toThrow(/The state file .*state\.json could not be written \(E[A-Z]+\); the change was not applied/);
    expect(store.up()).toBe(false);
    expect(store.snapshot().routes.a.weight).toBe(5);
    rmSync(stateDir);
    renameSync(join(dir, 'moved'), stateDir);
    await store.updateRoute('a', seed('a'), (c) => ({ ...c, weight: 50 }));
    expect(store.up()).toBe(true);
    expect(JSON.parse(readFileSync(path, 'utf8')).routes.a.weight).toBe(50);
  });

  it('writes an extra value (the credential inventory) once, not again with every route write, and the file reads back the same', async () => {
    const path = join(tempDir(), 'state.json');
    const store = new FileStore(path);
    await store.load();
    let stringified = 0;
    const inventory = { toJSON: () => (stringified++, [{ fingerprint: 'fp_1', requests: 3 }]) };
    await store.setExtra('credentials', inventory);
    for (let i = 0; i < 5; i++) await store.updateRoute('a', seed('a'), (c) => ({ ...c, passes: i }));
    await store.updateGlobal((g) => ({ ...g, bypass: true, changedBy: 'ops' }));
    expect(stringified).toBe(1);
    const again = await new FileStore(path).load();
    expect(again.extra).toEqual({ credentials: [{ fingerprint: 'fp_1', requests: 3 }] });
    expect(again.routes.a.passes).toBe(4);
    expect(again.global.bypass).toBe(true);
    expect(again.version).toBe(7);
  });

  it('removes temp files a killed writer left behind', async () => {
    const dir = tempDir();
    const path = join(dir, 'state.json');
    writeFileSync(join(dir, '.state.json.12345.tmp'), '{"half');
    writeFileSync(join(dir, 'state.json.lock.0a1b.tmp'), '{"pid"');
    // A fresh temp may be a live peer's write in flight (its pid means nothing across containers): kept.
    writeFileSync(join(dir, '.state.json.23456.c0ffee.tmp'), '{"in flight');
    const old = new Date(Date.now() - 120_000);
    utimesSync(join(dir, '.state.json.12345.tmp'), old, old);
    utimesSync(join(dir, 'state.json.lock.0a1b.tmp'), old, old);
    const store = new FileStore(path);
    await store.load();
    expect(readdirSync(dir).sort()).toEqual(['.state.json.23456.c0ffee.tmp', 'state.json.lock', 'state.json.rescue']);
    rmSync(join(dir, '.state.json.23456.c0ffee.tmp'));
    await store.close();
    // The rescue file is space set aside for a full disk (below): it stays.
    expect(readdirSync(dir)).toEqual(['state.json.rescue']);
  });

  it('always holds the old or the new state when its writer is SIGKILLed mid-write, 25 times', async () => {
    const path = join(tempDir(), 'state.json');
    let last = 0;
    let killedWhileWriting = 0;
    for (let round = 0; round < 25; round++) {
      const child = spawn(process.execPath, [WRITER, path], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (c) => (out += c));
      child.stderr.on('data', (c) => (err += c));
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
      await waitFor(() => out.includes('ready') || child.exitCode !== null, 10_000, 'the writer to start');
      expect(err).toBe('');
      expect(out).toBe(`ready ${last}\n`);
      // Let it write for a while, at a different moment each round, then kill it without warning.
      const target = last + 1 + (round % 7);
      await waitFor(() => {
        try {
          return (JSON.parse(readFileSync(path, 'utf8')) as { routes: { r: { step: number } } }).routes.r.step >= target;
        } catch {
          return false; // never partial: the final check below reads it whole
        }
      }, 10_000, `step ${target}`);
      if (readdirSync(join(path, '..')).some((n) => n.startsWith(`.state.json.${child.pid}.`))) killedWhileWriting++;
      child.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
      const state = JSON.parse(readFileSync(path, 'utf8')) as { version: number; routes: { r: RouteState } };
      const r = state.routes.r;
      // The document is whole and self-consistent: one write's step, weight and payload, never a mix.
      expect(r.reason.startsWith(`${r.step}:`)).toBe(true);
      expect(r.reason.length).toBe(`${r.step}:`.length + 256 * 1024);
      expect(r.weight).toBe(r.step % 101);
      expect(r.step).toBeGreaterThanOrEqual(last);
      last = r.step;
    }
    expect(last).toBeGreaterThanOrEqual(25);
    console.log(`state store crash test: 25 kills, ${killedWhileWriting} with a temp file in flight, final step ${last}`);
  }, 120_000);
});

const rolledBack = (c: RouteState): RouteState => ({ ...c, weight: 0, state: 'rolled_back', paused: true, changedBy: 'ops', reason: 'new misbehaving' });

/** Applies `change` to route a, kept in memory when it cannot be written; says where the store kept it. */
async function keepUnsaved(store: FileStore, change: (c: RouteState) => RouteState): Promise<{ err: unknown; keptIn: string | null } | null> {
  let seen: { err: unknown; keptIn: string | null } | null = null;
  await store.updateRoute('a', seed('a'), change, { keepUnsaved: () => true, onUnsaved: (err, keptIn) => (seen = { err, keptIn }) });
  return seen;
}

/** A fresh file store whose disk filled up, with route a's rollback kept unsaved (so in the rescue file). */
async function rolledBackOnFullDisk(): Promise<{ path: string; store: FullDiskStore }> {
  const path = join(tempDir(), 'state.json');
  const store = new FullDiskStore(path);
  await store.load();
  store.full = true;
  await keepUnsaved(store, rolledBack);
  return { path, store };
}

describe('a change kept unsaved (a full disk) and a restart', () => {
  it('a rollback the state file could not take is kept in the rescue file, taken back at the next start, and written to the file there', async () => {
    const path = join(tempDir(), 'state.json');
    const store = new FullDiskStore(path);
    await store.load();
    expect(readFileSync(`${path}.rescue`).length).toBe(RESCUE_MIN_BYTES);
    await store.updateRoute('a', seed('a'), (c) => ({ ...c, weight: 25, state: 'shifting' }));
    store.full = true;
    const unsaved = await keepUnsaved(store, rolledBack);
    expect(unsaved?.keptIn).toBe(`the rescue file ${path}.rescue`);
    expect(store.snapshot().routes.a).toMatchObject({ weight: 0, state: 'rolled_back' });
    expect(JSON.parse(readFileSync(path, 'utf8')).routes.a.weight).toBe(25);
    await store.close();

    // The process restarts with the disk back: the rollback holds, and the file now has it.
    const rescued: { version: number; routes: string[] }[] = [];
    const after = new FileStore(path, { onRescued: ({ version, routes }) => rescued.push({ version, routes }) });
    const state = await after.load();
    expect(state.routes.a).toMatchObject({ weight: 0, state: 'rolled_back', changedBy: 'ops' });
    expect(state.version).toBe(2);
    expect(rescued).toEqual([{ version: 2, routes: ['a'] }]);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ version: 2, routes: { a: { weight: 0, state: 'rolled_back' } } });
    // The record is zeroed once the file has it: a later start does not take it again.
    expect(readFileSync(`${path}.rescue`).subarray(0, 16).equals(Buffer.alloc(16))).toBe(true);
    await after.close();
    const third = new FileStore(path, { onRescued: () => rescued.push({ version: -1, routes: [] }) });
    expect((await third.load()).routes.a.weight).toBe(0);
    expect(rescued).toHaveLength(1);
    await third.close();
  });

  it('a newer state file wins over an older record, and a torn or foreign record is ignored', async () => {
    const { path, store } = await rolledBackOnFullDisk();
    const record = readFileSync(`${path}.rescue`);
    store.full = false;
    // The file takes a newer state; the record would say version 1.
    await store.updateRoute('a', seed('a'), (c) => ({ ...c, weight: 40, state: 'shifting' }));
    await store.close();
    writeFileSync(`${path}.rescue`, record);
    const rescued: number[] = [];
    const again = new FileStore(path, { onRescued: ({ version }) => rescued.push(version) });
    expect((await again.load()).routes.a.weight).toBe(40);
    expect(rescued).toEqual([]);
    await again.close();
    // A record cut short, or one byte flipped: its CRC-32 no longer matches.
    const fresh = join(tempDir(), 'state.json');
    for (const broken of [record.subarray(0, 40), Buffer.from(record.map((b, i) => (i === 30 ? b ^ 1 : b)))]) {
      rmSync(fresh, { force: true });
      writeFileSync(`${fresh}.rescue`, broken);
      const s = new FileStore(fresh, { onRescued: ({ version }) => rescued.push(version) });
      expect((await s.load()).routes).toEqual({});
      await s.close();
    }
    expect(rescued).toEqual([]);
  });

  it('two slots: a record torn by a power loss leaves the one before it whole', async () => {
    const path = join(tempDir(), 'state.json');
    const store = new FullDiskStore(path);
    await store.load();
    await store.updateRoute('a', seed('a'), (c) => ({ ...c, weight: 25, state: 'shifting' }));
    await store.updateRoute('b', seed('b'), (c) => ({ ...c, weight: 25, state: 'shifting' }));
    store.full = true;
    await keepUnsaved(store, rolledBack);
    // A later change kept unsaved (route b's failing check) goes to the other slot; a power loss
    // tears its write: only its first 100 bytes reach the disk.
    await store.updateRoute('b', seed('b'), (c) => ({ ...c, failures: 1 }), { keepUnsaved: () => true });
    await store.close();
    const file = readFileSync(`${path}.rescue`);
    const half = file.length / 2;
    file.fill(0, half + 100, half + 2000);
    writeFileSync(`${path}.rescue`, file);
    const state = await new FileStore(path).load();
    expect(state.routes.a).toMatchObject({ weight: 0, state: 'rolled_back' });
    expect(state.version).toBe(3);
  });

  it('takes a record once however often it is loaded (the credential inventory loads the store too)', async () => {
    const { path, store } = await rolledBackOnFullDisk();
    await store.close();
    const rescued: number[] = [];
    const again = new FullDiskStore(path, { onRescued: ({ version }) => rescued.push(version) });
    again.full = true;
    await again.load();
    expect((await again.load()).routes.a.state).toBe('rolled_back');
    expect(rescued).toEqual([1]);
    await again.close();
  });

  it('a rescue file that cannot be read is said and left alone, and nothing is kept in it', async () => {
    const path = join(tempDir(), 'state.json');
    mkdirSync(`${path}.rescue`);
    writeFileSync(join(`${path}.rescue`, 'keep'), 'x');
    const unreadable: string[] = [];
    const store = new FullDiskStore(path, { onRescueUnreadable: ({ rescuePath, reason }) => unreadable.push(`${rescuePath}: ${reason}`) });
    await store.load();
    expect(unreadable).toEqual([`${path}.rescue: EISDIR`]);
    store.full = true;
    expect((await keepUnsaved(store, rolledBack))?.keptIn).toBeNull();
    expect(readdirSync(`${path}.rescue`)).toEqual(['keep']);
    await store.close();
  });

  it('on a real full filesystem (a 1 MiB tmpfs): the rollback survives a restart while the disk is still full, and is saved once it is not', async (ctx) => {
    const { mnt, path, store } = await tmpfsStore(ctx);
    // Fill the filesystem to its last byte.
    try {
      writeFileSync(join(mnt, 'filler'), Buffer.alloc(2 * 1024 * 1024));
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    }
    await expect(store.updateRoute('a', seed('a'), (c) => ({ ...c, weight: 50 }))).rejects.toThrow(/could not be written \(ENOSPC\)/);
    const unsaved = await keepUnsaved(store, rolledBack);
    expect(unsaved?.keptIn).toBe(`the rescue file ${path}.rescue`);
    expect(store.up()).toBe(false);
    await store.close();

    // Restarted on the still full disk: the rollback holds (it cannot reach the file yet).
    const restarted = new FileStore(path);
    expect((await restarted.load()).routes.a).toMatchObject({ weight: 0, state: 'rolled_back' });
    expect(restarted.up()).toBe(false);
    expect(JSON.parse(readFileSync(path, 'utf8')).routes.a.weight).toBe(25);
    // Space again: the next write saves it, and zeroes the record.
    rmSync(join(mnt, 'filler'));
    await restarted.updateRoute('a', seed('a'), (c) => ({ ...c, failures: 0 }));
    expect(restarted.up()).toBe(true);
    expect(JSON.parse(readFileSync(path, 'utf8')).routes.a).toMatchObject({ weight: 0, state: 'rolled_back' });
    expect(readFileSync(`${path}.rescue`).subarray(0, 16).equals(Buffer.alloc(16))).toBe(true);
    await restarted.close();
  });

  it('on a nearly full filesystem: a growth of the rescue file that does not fit keeps what was set aside', async (ctx) => {
    const { mnt, path, store } = await tmpfsStore(ctx);
    // Something else fills the disk but for 48 KiB.
    const left = () => statfsSync(mnt).bavail * statfsSync(mnt).bsize;
    writeFileSync(join(mnt, 'filler'), Buffer.alloc(left() - 48 * 1024));
    // Route b's state grows to ~40 KiB: the state file takes it, a rescue file four times that (160 KiB) does not.
    await store.updateRoute('b', seed('b'), (c) => ({ ...c, weight: 10, state: 'shifting', reason: 'x'.repeat(40 * 1024) }));
    expect(store.up()).toBe(true);
    expect(readFileSync(`${path}.rescue`).length).toBe(RESCUE_MIN_BYTES);
    // The disk fills up: the rollback still fits a slot of what was set aside.
    try {
      writeFileSync(join(mnt, 'filler2'), Buffer.alloc(left() + 4096));
    } catch {
      // full
    }
    expect((await keepUnsaved(store, rolledBack))?.keptIn).toBe(`the rescue file ${path}.rescue`);
    await store.close();
    expect((await new FileStore(path).load()).routes.a).toMatchObject({ weight: 0, state: 'rolled_back' });
  });
});

/** A file store on a fresh 1 MiB tmpfs (see tmpfs), loaded, with route a shifting at 25 %. */
async function tmpfsStore(ctx: { skip: () => void }): Promise<{ mnt: string; path: string; store: FileStore }> {
  const mnt = tmpfs(ctx);
  const path = join(mnt, 'state.json');
  const store = new FileStore(path);
  await store.load();
  await store.updateRoute('a', seed('a'), (c) => ({ ...c, weight: 25, state: 'shifting' }));
  return { mnt, path, store };
}

/** A 1 MiB tmpfs mounted for the test (unmounted after it); the test is skipped where mounting is not allowed (not root). */
function tmpfs(ctx: { skip: () => void }): string {
  const mnt = tempDir();
  if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]).status !== 0) ctx.skip();
  cleanups.push(async () => spawnSync('umount', [mnt]));
  return mnt;
}

describe('one process per state file', () => {
  it('a second process is told, naming the holder, but never refused (a proxy must start); a lock whose process is gone is taken over', async () => {
    const path = join(tempDir(), 'state.json');
    const lock = `${path}.lock`;
    const child = spawn(process.execPath, [WRITER, path], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    const exited = new Promise((resolve) => child.on('exit', resolve));
    const shared: string[] = [];
    const told = (store: string) => ({ onShared: ({ holder }: { holder: { pid: number; host: string } }) => shared.push(`${store}: ${holder.pid}@${holder.host}`) });
    try {
      await waitFor(() => out.includes('ready'), 10_000, 'the first process to hold the file');
      const second = new FileStore(path, told('second'));
      await second.load();
      await second.close();
      expect(shared).toEqual([`second: ${child.pid}@${hostname()}`]);
      // Its lock is the first process's still: closing the second left it alone.
      expect(JSON.parse(readFileSync(lock, 'utf8')).pid).toBe(child.pid);
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    // Gone without a word (SIGKILL): its lock is stale on this host, taken over without a word.
    const third = new FileStore(path, told('third'));
    await third.load();
    expect(JSON.parse(readFileSync(lock, 'utf8')).pid).toBe(process.pid);
    await third.close();
    expect(existsSync(lock)).toBe(false);
    // A holder on another host (the same pid as this one: containers repeat pids): told while its
    // lease is fresh, taken over once it ran out.
    writeFileSync(lock, JSON.stringify({ pid: process.pid, host: 'other-host.example', since: '2026-11-30T00:00:00Z', token: 'theirs' }));
    const fourth = new FileStore(path, told('fourth'));
    await fourth.load();
    await fourth.close();
    expect(shared.at(-1)).toBe(`fourth: ${process.pid}@other-host.example`);
    expect(JSON.parse(readFileSync(lock, 'utf8')).token).toBe('theirs');
    const old = new Date(Date.now() - LOCK_LEASE_MS - 5_000);
    utimesSync(lock, old, old);
    const fifth = new FileStore(path, told('fifth'));
    await fifth.load();
    expect(JSON.parse(readFileSync(lock, 'utf8')).pid).toBe(process.pid);
    await fifth.close();
    expect(shared).toHaveLength(2);
  }, 30_000);

  it('two stores with one pid (containers) on one file never write through the same temp file', async () => {
    const path = join(tempDir(), 'state.json');
    const a = new FileStore(path);
    const b = new FileStore(path);
    await a.load();
    await b.load();
    const writes: Promise<unknown>[] = [];
    for (let i = 0; i < 20; i++) {
      writes.push(a.updateRoute('a', seed('a'), (c) => ({ ...c, passes: i, reason: 'a'.repeat(64 * 1024) })));
      writes.push(b.updateRoute('b', seed('b'), (c) => ({ ...c, passes: i, reason: 'b'.repeat(64 * 1024) })));
    }
    const results = await Promise.allSettled(writes);
    expect(results.filter((r) => r.status === 'rejected')).toHaveLength(0);
    expect(() => JSON.parse(readFileSync(path, 'utf8'))).not.toThrow();
    await a.close();
    await b.close();
  });

  it('a lock from an earlier run of this very pid, or from an older build without a namespace, of a process gone: taken over without a word', async () => {
    const path = join(tempDir(), 'state.json');
    const shared: number[] = [];
    for (const holder of [
      // This process's pid and namespace, another token: an earlier run of a container restarted in place.
      { pid: process.pid, host: hostname(), since: 'earlier', token: 'an-earlier-run', pidns: readlinkSync('/proc/self/ns/pid') },
      // No namespace (an older build): its pid is looked up here, and it is gone.
      { pid: 2 ** 22 + 17, host: hostname(), since: 'older build', token: 'no-namespace' },
    ]) {
      writeFileSync(`${path}.lock`, JSON.stringify(holder));
      const store = new FileStore(path, { onShared: ({ holder: h }) => shared.push(h.pid) });
      await store.load();
      expect(JSON.parse(readFileSync(`${path}.lock`, 'utf8')).token, holder.token).not.toBe(holder.token);
      await store.close();
    }
    expect(shared).toEqual([]);
  });

  it('a lock that cannot be written (a read-only or full directory) is said and the store still starts', async () => {
    const dir = tempDir();
    const path = join(dir, 'state.json');
    // The lock's place is taken by a directory: writing it fails, as on a full or read-only disk.
    mkdirSync(`${path}.lock`);
    const failed: string[] = [];
    const store = new FileStore(path, { onLockFailed: ({ reason }) => failed.push(reason) });
    await store.load();
    expect(failed).toHaveLength(1);
    await store.updateRoute('a', seed('a'), (c) => ({ ...c, weight: 5 }));
    expect(JSON.parse(readFileSync(path, 'utf8')).routes.a.weight).toBe(5);
    await store.close();
  });
});

describe('state store in the proxy', () => {
  it("serves the store's weight, not the config's seed, and shows cutover_state_store_up", async () => {
    const legacy = await backend('legacy');
    const next = await backend('new');
    const dir = tempDir();
    mkdirSync(join(dir, 'state'));
    const path = join(dir, 'state', 'cutover.json');
    const store = new FileStore(path);
    await store.load();
    await store.updateRoute('moved', seed('moved'), (c) => ({ ...c, weight: 100 }));
    const p = await startProxy(
      baseConfig(legacy.url, next.url, {
        cutover: { state: { store: 'file', path } },
        routes: [
          { name: 'moved', match: { path: '/moved' }, weight: 0 },
          { name: 'seeded', match: { path: '/seeded' }, weight: 100 },
          { name: 'fresh', match: { path: '/fresh' } },
        ],
      }),
    );
    cleanups.push(() => p.close(100));
    const body = async (path: string) => (await request(`${p.dataUrl}${path}`)).body.text();
    expect(await body('/moved')).toBe('new');
    expect(await body('/seeded')).toBe('new');
    expect(await body('/fresh')).toBe('legacy');
    // A change through the store goes live by route name.
    await p.store.updateRoute('moved', seed('moved'), (c) => ({ ...c, weight: 0 }));
    expect(await body('/moved')).toBe('legacy');
    expect(JSON.parse(readFileSync(path, 'utf8')).routes.moved.weight).toBe(0);
    const scrape = await (await request(`${p.adminUrl}/metrics`)).body.text();
    expect(scrape).toMatch(/^cutover_state_store_up 1$/m);
    expect(scrape).toMatch(/^cutover_traffic_weight\{route="moved"\} 0$/m);
    expect(scrape).toMatch(/^cutover_config_info\{hash="[0-9a-f]{12}"\} 1$/m);
  });
});
