/**
 * The proxy's heap sizing (src/cli/heap.ts): where Node can replace its own process image, `cutover
 * run` restarts itself once with an initial old space big enough that 1 MB bodies do not set off a
 * full collection every ~100 ms, and a young generation capped where Node 20 caps it; a flag given by
 * hand wins, and the opt-out is honoured. Checked on
 * the real process: its command line in /proc, its PID, and an answer through it.
 */
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { ARENA_ENV, ARENA_MAX, EXPOSE_GC_FLAG, HEAP_FLAGS, heapSizing, OLD_SPACE_FLAG, OLD_SPACE_MB, OPT_OUT_ENV, SEMI_SPACE_FLAG, SEMI_SPACE_MB, sizeHeap, TUNED_ENV, TUNING_ENV } from '../src/cli/heap.js';
import { startBackend } from './helpers/backend.js';
import { baseConfig, spawnProxy, type ChildProxy } from './helpers/proxy.js';

const canRestart = typeof (process as unknown as { execve?: unknown }).execve === 'function';
const linux = process.platform === 'linux';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function cmdline(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
}

/** The process's environment as it was when its image started (what glibc read). */
function environ(pid: number): Map<string, string> {
  const entries = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
  return new Map(entries.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
}

/** The test runner's environment without `name` (so a restart is what sets it), then `extra`. */
function envWithout(name: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env[name];
  return { ...env, ...extra };
}

async function proxy(options: Parameters<typeof spawnProxy>[1] = {}): Promise<ChildProxy> {
  const legacy = await startBackend();
  const next = await startBackend();
  cleanups.push(() => legacy.close(), () => next.close());
  const p = await spawnProxy(baseConfig(legacy.url, next.url), options);
  cleanups.push(() => p.stop());
  const res = await request(`${p.dataUrl}/items/1`);
  expect(res.statusCode).toBe(200);
  await res.body.dump();
  return p;
}

describe('heapSizing', () => {
  const execve = () => undefined;
  const all = [`${OLD_SPACE_FLAG}=${OLD_SPACE_MB}`, `${SEMI_SPACE_FLAG}=${SEMI_SPACE_MB}`, EXPOSE_GC_FLAG];
  const arenas = { [ARENA_ENV]: ARENA_MAX };
  it('restarts only where Node can, and only once', () => {
    expect(HEAP_FLAGS).toEqual(all);
    expect(TUNING_ENV).toEqual({ MALLOC_ARENA_MAX: '2' });
    expect(heapSizing([], {}, execve)).toEqual({ action: 'restart', flags: all, env: arenas });
    expect(heapSizing([], {}, undefined)).toEqual({ action: 'unsupported' });
    expect(heapSizing([], { [TUNED_ENV]: '1' }, execve)).toEqual({ action: 'off' });
  });
  it('is what `npm start` passes (Node 20 and 22 cannot restart themselves)', () => {
    const start = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } }).scripts.start;
    const words = start.split(/\s+/);
    expect(words.filter((a) => a.startsWith('--'))).toEqual(HEAP_FLAGS);
    // The variables come before the command, as the shell that runs npm scripts reads them.
    const node = words.indexOf('node');
    expect(Object.fromEntries(words.slice(0, node).map((w) => w.split('=')))).toEqual(TUNING_ENV);
  });
  it('a restart the system refuses (E2BIG, a sandbox) runs on untuned and says so, never stops the proxy', () => {
    const proc = process as unknown as { execve?: unknown };
    const saved = { execve: proc.execve, tuned: process.env[TUNED_ENV], optOut: process.env[OPT_OUT_ENV], write: process.stderr.write };
    const said: string[] = [];
    try {
      delete process.env[TUNED_ENV];
      delete process.env[OPT_OUT_ENV];
      proc.execve = () => {
        throw new Error('E2BIG: argument list too long');
      };
      process.stderr.write = ((text: string) => said.push(String(text)) > 0) as typeof process.stderr.write;
      expect(() => sizeHeap()).not.toThrow();
    } finally {
      proc.execve = saved.execve;
      process.stderr.write = saved.write;
      if (saved.tuned !== undefined) process.env[TUNED_ENV] = saved.tuned;
      if (saved.optOut !== undefined) process.env[OPT_OUT_ENV] = saved.optOut;
    }
    expect(said.join('')).toMatch(/could not restart with .*E2BIG.*running with Node's defaults/);
  });

  it('leaves each flag given by hand (either spelling, command line or NODE_OPTIONS) and the opt-out alone', () => {
    expect(heapSizing([`${OLD_SPACE_FLAG}=64`], {}, execve)).toEqual({ action: 'restart', flags: [all[1], all[2]], env: arenas });
    expect(heapSizing(['--initial_old_space_size=64', '--max_semi_space_size=8'], {}, execve)).toEqual({ action: 'restart', flags: [EXPOSE_GC_FLAG], env: arenas });
    expect(heapSizing(['--initial_old_space_size=64', '--max_semi_space_size=8', '--expose_gc'], { [ARENA_ENV]: '4' }, execve)).toEqual({ action: 'given' });
    expect(heapSizing([`${OLD_SPACE_FLAG}=64`], { NODE_OPTIONS: `--enable-source-maps ${SEMI_SPACE_FLAG}=32 ${EXPOSE_GC_FLAG}`, [ARENA_ENV]: '8' }, execve)).toEqual({ action: 'given' });
    expect(heapSizing(['--max-old-space-size=4096'], {}, execve)).toEqual({ action: 'restart', flags: all, env: arenas });
    expect(heapSizing([], { [OPT_OUT_ENV]: 'off' }, execve)).toEqual({ action: 'off' });
  });
  it('sets the malloc arenas unless the environment already does, flags given or not', () => {
    // Every flag given by hand, the variable not: a restart that only adds the variable.
    expect(heapSizing(all, {}, execve)).toEqual({ action: 'restart', flags: [], env: arenas });
    // The user's own value wins, even an empty one (glibc reads it as it is).
    expect(heapSizing([], { [ARENA_ENV]: '8' }, execve)).toEqual({ action: 'restart', flags: all, env: {} });
    expect(heapSizing(all, { [ARENA_ENV]: '' }, execve)).toEqual({ action: 'given' });
  });
});

describe.runIf(linux)('cutover run', () => {
  it(canRestart ? 'restarts itself in place with the initial old space and two malloc arenas (same PID), then serves' : 'runs with the flag when node is started with it (this Node cannot restart itself)', async () => {
    const p = await proxy(canRestart ? { env: envWithout(ARENA_ENV) } : { nodeArgs: [...HEAP_FLAGS] });
    const args = cmdline(p.child.pid!);
    expect(args.filter((a) => a.startsWith(OLD_SPACE_FLAG))).toEqual([`${OLD_SPACE_FLAG}=${OLD_SPACE_MB}`]);
    expect(args.filter((a) => a.startsWith(SEMI_SPACE_FLAG))).toEqual([`${SEMI_SPACE_FLAG}=${SEMI_SPACE_MB}`]);
    expect(args).toContain(EXPOSE_GC_FLAG);
    expect(args).toContain('run');
    if (canRestart) expect(environ(p.child.pid!).get(ARENA_ENV)).toBe(ARENA_MAX);
  });

  it.runIf(canRestart)('restarts for the malloc arenas alone when every flag is given, and keeps a value the user set', async () => {
    const bare = await proxy({ nodeArgs: [...HEAP_FLAGS], env: envWithout(ARENA_ENV) });
    expect(environ(bare.child.pid!).get(ARENA_ENV)).toBe(ARENA_MAX);
    expect(cmdline(bare.child.pid!).filter((a) => a.startsWith(OLD_SPACE_FLAG))).toHaveLength(1);
    const own = await proxy({ env: { ...envWithout(ARENA_ENV), [ARENA_ENV]: '4' } });
    expect(environ(own.child.pid!).get(ARENA_ENV)).toBe('4');
    // It restarted all the same, for the flags.
    expect(cmdline(own.child.pid!)).toContain(EXPOSE_GC_FLAG);
  });

  it('does not add a second flag when node was started with one', async () => {
    const p = await proxy({ nodeArgs: [`${OLD_SPACE_FLAG}=64`] });
    const args = cmdline(p.child.pid!);
    expect(args.filter((a) => a.startsWith(OLD_SPACE_FLAG))).toEqual([`${OLD_SPACE_FLAG}=64`]);
    // The other one is still added where the process can restart itself.
    expect(args.filter((a) => a.startsWith(SEMI_SPACE_FLAG))).toEqual(canRestart ? [`${SEMI_SPACE_FLAG}=${SEMI_SPACE_MB}`] : []);
  });

  it(`keeps Node's and glibc's defaults under ${OPT_OUT_ENV}=off`, async () => {
    const p = await proxy({ env: envWithout(ARENA_ENV, { [OPT_OUT_ENV]: 'off' }) });
    expect(cmdline(p.child.pid!).some((a) => a.startsWith(OLD_SPACE_FLAG) || a.startsWith(SEMI_SPACE_FLAG) || a === EXPOSE_GC_FLAG)).toBe(false);
    expect(environ(p.child.pid!).has(ARENA_ENV)).toBe(false);
  });
});
