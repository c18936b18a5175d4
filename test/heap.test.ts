/**
 * The proxy's heap sizing (src/cli/heap.ts): where Node can replace its own process image, `cutover
 * run` restarts itself once with an initial old space big enough that 1 MB bodies do not set off a
 * full collection every ~100 ms, and a young generation capped where Node 20 caps it; a flag given by
 * hand wins, and the opt-out is honoured. Checked on
 * the real process: its command line in /proc, its PID, and an answer through it.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { ARENA_ENV, ARENA_MAX, TRIM_BYTES, TRIM_ENV, execRefusal, execRoom, EXPOSE_GC_FLAG, HEAP_FLAGS, heapSizing, OLD_SPACE_FLAG, OLD_SPACE_MB, OPT_OUT_ENV, PRETENURING_FLAG, SEMI_SPACE_FLAG, SEMI_SPACE_MB, sizeHeap, TUNED_ENV, TUNING_ENV, untunedNotice, type Lacking } from '../src/cli/heap.js';
import { startBackend } from './helpers/backend.js';
import { baseConfig, CLI, spawnProxy, untunedEnv, writeConfig, type ChildProxy } from './helpers/proxy.js';

const canRestart = typeof (process as unknown as { execve?: unknown }).execve === 'function';
const linux = process.platform === 'linux';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** A /proc file of NUL-separated strings of the process (`cmdline`, `environ`). */
function procStrings(pid: number, file: 'cmdline' | 'environ'): string[] {
  return readFileSync(`/proc/${pid}/${file}`, 'utf8').split('\0').filter(Boolean);
}

function cmdline(pid: number): string[] {
  return procStrings(pid, 'cmdline');
}

/** The process's environment as it was when its image started (what glibc read). */
function environ(pid: number): Map<string, string> {
  return new Map(procStrings(pid, 'environ').map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
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
  const all = [`${OLD_SPACE_FLAG}=${OLD_SPACE_MB}`, `${SEMI_SPACE_FLAG}=${SEMI_SPACE_MB}`, EXPOSE_GC_FLAG, '--no-allocation-site-pretenuring'];
  const arenas = { [ARENA_ENV]: ARENA_MAX, [TRIM_ENV]: TRIM_BYTES };
  it('restarts only where Node can, and only once', () => {
    expect(HEAP_FLAGS).toEqual(all);
    expect(TUNING_ENV).toEqual({ MALLOC_ARENA_MAX: '2', MALLOC_TRIM_THRESHOLD_: '33554432' });
    expect(heapSizing([], {}, execve)).toEqual({ action: 'restart', flags: all, env: arenas });
    expect(heapSizing([], {}, undefined)).toEqual({ action: 'unsupported', flags: all, env: arenas });
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
  it('a restart Node refuses with an error (an argument it cannot pass) runs on untuned and says so, never stops the proxy', () => {
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

  it('tells a Node that cannot restart itself what to start it with, and how to silence it', () => {
    expect(untunedNotice({ flags: all, env: arenas }, 'v20.20.2')).toBe(
      `cutover: Node v20.20.2 cannot restart itself with the tuning big answers need (Node ≥ 23.11 can), so it runs without; start it as \`MALLOC_ARENA_MAX=2 MALLOC_TRIM_THRESHOLD_=33554432 node ${all.join(' ')} …\` (README, "Real use"), or set CUTOVER_NODE_TUNING=off to run untuned without this line\n`,
    );
    // Only what is missing: a proxy started with the flags and the arenas by hand lacks the trim threshold.
    const sizing = heapSizing(all, { [ARENA_ENV]: '2' }, undefined);
    expect(sizing).toEqual({ action: 'unsupported', flags: [], env: { [TRIM_ENV]: TRIM_BYTES } });
    expect(untunedNotice(sizing as Lacking, 'v22.1.0')).toContain('start it as `MALLOC_TRIM_THRESHOLD_=33554432 node …`');
    // Nothing missing, or the opt-out: nothing to say.
    expect(heapSizing(all, { ...arenas }, undefined)).toEqual({ action: 'given' });
    expect(heapSizing([], { [OPT_OUT_ENV]: 'off' }, undefined)).toEqual({ action: 'off' });
  });

  it('leaves each flag given by hand (either spelling, command line or NODE_OPTIONS) and the opt-out alone', () => {
    expect(heapSizing([`${OLD_SPACE_FLAG}=64`], {}, execve)).toEqual({ action: 'restart', flags: [all[1], all[2], all[3]], env: arenas });
    expect(heapSizing(['--initial_old_space_size=64', '--max_semi_space_size=8'], {}, execve)).toEqual({ action: 'restart', flags: [EXPOSE_GC_FLAG, PRETENURING_FLAG], env: arenas });
    // V8's boolean flags: the positive given by hand is the same flag (it wins), in either spelling.
    expect(heapSizing(['--initial_old_space_size=64', '--max_semi_space_size=8', '--expose_gc', '--allocation_site_pretenuring'], { [ARENA_ENV]: '4', [TRIM_ENV]: '1048576' }, execve)).toEqual({ action: 'given' });
    expect(heapSizing(['--initial_old_space_size=64', '--max_semi_space_size=8', '--expose_gc', PRETENURING_FLAG], { [ARENA_ENV]: '4', [TRIM_ENV]: '1048576' }, execve)).toEqual({ action: 'given' });
    expect(heapSizing([`${OLD_SPACE_FLAG}=64`, '--allocation-site-pretenuring'], { NODE_OPTIONS: `--enable-source-maps ${SEMI_SPACE_FLAG}=32 ${EXPOSE_GC_FLAG}`, [ARENA_ENV]: '8', [TRIM_ENV]: '131072' }, execve)).toEqual({ action: 'given' });
    expect(heapSizing(['--max-old-space-size=4096'], {}, execve)).toEqual({ action: 'restart', flags: all, env: arenas });
    expect(heapSizing([], { [OPT_OUT_ENV]: 'off' }, execve)).toEqual({ action: 'off' });
  });
  it('sets the malloc arenas and trim threshold, each unless the environment already does, flags given or not', () => {
    // Every flag given by hand, the variable not: a restart that only adds the variable.
    expect(heapSizing(all, {}, execve)).toEqual({ action: 'restart', flags: [], env: arenas });
    // The user's own value wins, even an empty one (glibc reads it as it is).
    expect(heapSizing([], { [ARENA_ENV]: '8' }, execve)).toEqual({ action: 'restart', flags: all, env: { [TRIM_ENV]: TRIM_BYTES } });
    expect(heapSizing([], { [ARENA_ENV]: '8', [TRIM_ENV]: '131072' }, execve)).toEqual({ action: 'restart', flags: all, env: {} });
    expect(heapSizing(all, { [TRIM_ENV]: '131072' }, execve)).toEqual({ action: 'restart', flags: [], env: { [ARENA_ENV]: ARENA_MAX } });
    expect(heapSizing(all, { [ARENA_ENV]: '', [TRIM_ENV]: '' }, execve)).toEqual({ action: 'given' });
    // The opt-out and the once-only guard hold for a restart that would only add the variable.
    expect(heapSizing(all, { [OPT_OUT_ENV]: 'off' }, execve)).toEqual({ action: 'off' });
    expect(heapSizing(all, { [TUNED_ENV]: '1' }, execve)).toEqual({ action: 'off' });
  });

  it("knows the system's room for an exec (Linux: a quarter of the stack limit, 128 KiB to 6 MiB)", () => {
    const limits = (stack: string): string => `Limit                     Soft Limit           Hard Limit           Units\nMax stack size            ${stack}              unlimited            bytes\n`;
    expect(execRoom(limits('8388608'))).toBe(2 * 1024 * 1024);
    expect(execRoom(limits('unlimited'))).toBe(6 * 1024 * 1024);
    expect(execRoom(limits('65536'))).toBe(128 * 1024);
    // /proc unreadable (Node's permission model): Linux's floor there, a guess elsewhere.
    expect(execRoom(null, 'linux')).toBe(128 * 1024);
    expect(execRoom(null, 'darwin')).toBe(256 * 1024);
  });

  it('says why a restart would be refused before trying it (Node 24 aborts on a failed execve)', () => {
    const room = 2 * 1024 * 1024;
    expect(execRefusal(process.execPath, [process.execPath, 'run'], { A: '1' }, room)).toBeNull();
    expect(execRefusal(process.execPath, [process.execPath], { FILL: 'x'.repeat(100_000), MORE: 'y'.repeat(100_000) }, 150_000)).toMatch(/would take \d+ of the 150000 bytes/);
    expect(execRefusal(process.execPath, [process.execPath], { FILL: 'x'.repeat(200_000) }, room)).toMatch(/one argument or variable is over 131072 bytes/);
    expect(execRefusal('/nonexistent/node', ['node'], {}, room)).toMatch(/cannot be run again: ENOENT/);
    // A variable set to undefined is not passed, so it takes no room.
    expect(execRefusal(process.execPath, [process.execPath], { GONE: undefined }, 100)).toBe(execRefusal(process.execPath, [process.execPath], {}, 100));
  });
});

describe.runIf(linux)('cutover run', () => {
  it(canRestart ? 'restarts itself in place with the initial old space and two malloc arenas (same PID), then serves' : 'runs with the flag when node is started with it (this Node cannot restart itself)', async () => {
    const p = await proxy(canRestart ? { env: untunedEnv() } : { nodeArgs: [...HEAP_FLAGS] });
    const args = cmdline(p.child.pid!);
    expect(args.filter((a) => a.startsWith(OLD_SPACE_FLAG))).toEqual([`${OLD_SPACE_FLAG}=${OLD_SPACE_MB}`]);
    expect(args.filter((a) => a.startsWith(SEMI_SPACE_FLAG))).toEqual([`${SEMI_SPACE_FLAG}=${SEMI_SPACE_MB}`]);
    expect(args).toContain(EXPOSE_GC_FLAG);
    expect(args).toContain(PRETENURING_FLAG);
    expect(args).toContain('run');
    if (canRestart) expect(environ(p.child.pid!).get(ARENA_ENV)).toBe(ARENA_MAX);
    if (canRestart) expect(environ(p.child.pid!).get(TRIM_ENV)).toBe(TRIM_BYTES);
  });

  it.runIf(canRestart)('restarts for the malloc arenas alone when every flag is given, and keeps a value the user set', async () => {
    const bare = await proxy({ nodeArgs: [...HEAP_FLAGS], env: untunedEnv() });
    expect(environ(bare.child.pid!).get(ARENA_ENV)).toBe(ARENA_MAX);
    expect(environ(bare.child.pid!).get(TRIM_ENV)).toBe(TRIM_BYTES);
    expect(cmdline(bare.child.pid!).filter((a) => a.startsWith(OLD_SPACE_FLAG))).toHaveLength(1);
    const own = await proxy({ env: untunedEnv({ [ARENA_ENV]: '4' }) });
    expect(environ(own.child.pid!).get(ARENA_ENV)).toBe('4');
    expect(environ(own.child.pid!).get(TRIM_ENV)).toBe(TRIM_BYTES);
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

  it.runIf(canRestart)('starts untuned, and says so, when the restart would not fit in the exec the system allows (never aborts)', async () => {
    const legacy = await startBackend();
    const next = await startBackend();
    cleanups.push(() => legacy.close(), () => next.close());
    const file = writeConfig(baseConfig(legacy.url, next.url));
    const args = [CLI, 'run', '--config', file];
    // The biggest filler the system still execs with these arguments, found with /bin/true as the
    // program and node's path as its name (argv[0]).
    const envWith = (fill: number): NodeJS.ProcessEnv => {
      const env = untunedEnv();
      for (let i = 0; fill > 0; i++, fill -= 100_000) env[`FILL${i}`] = 'x'.repeat(Math.min(fill, 100_000));
      return env;
    };
    const runs = (fill: number): boolean => spawnSync('/bin/true', args, { argv0: process.execPath, env: envWith(fill) }).error === undefined;
    let low = 0;
    let high = 8 * 1024 * 1024;
    while (high - low > 1) {
      const mid = Math.floor((low + high) / 2);
      if (runs(mid)) low = mid;
      else high = mid;
    }
    // Room for the proxy's own start (whose file name, node's path, is longer than /bin/true's),
    // none for the flags and variables the restart adds (~150 bytes).
    const env = envWith(low - 40 - (Buffer.byteLength(process.execPath) - '/bin/true'.length));
    const p = await spawnProxy(baseConfig(legacy.url, next.url), { env });
    cleanups.push(() => p.stop());
    const res = await request(`${p.dataUrl}/items/1`);
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(p.stderr()).toMatch(/could not restart with MALLOC_ARENA_MAX=2 MALLOC_TRIM_THRESHOLD_=33554432 --initial-old-space-size=128 .*would take \d+ of the \d+ bytes the system allows.*running with Node's defaults/);
    expect(cmdline(p.child.pid!).some((a) => a.startsWith(OLD_SPACE_FLAG))).toBe(false);
  });

  it.runIf(!canRestart)('says on stderr, once, what this Node should be started with, and serves all the same; nothing when started tuned or opted out', async () => {
    const bare = await proxy({ env: untunedEnv() });
    const said = bare.stderr().split('\n').filter((l) => l.includes('cannot restart itself'));
    expect(said).toEqual([untunedNotice({ flags: [...HEAP_FLAGS], env: { ...TUNING_ENV } }).trimEnd()]);
    const tuned = await proxy({ nodeArgs: [...HEAP_FLAGS], env: untunedEnv({ ...TUNING_ENV }) });
    const off = await proxy({ env: untunedEnv({ [OPT_OUT_ENV]: 'off' }) });
    expect(tuned.stderr()).not.toMatch(/cannot restart itself/);
    expect(off.stderr()).not.toMatch(/cannot restart itself/);
  });

  it(`keeps Node's and glibc's defaults under ${OPT_OUT_ENV}=off`, async () => {
    const p = await proxy({ env: untunedEnv({ [OPT_OUT_ENV]: 'off' }) });
    expect(cmdline(p.child.pid!).some((a) => a.startsWith(OLD_SPACE_FLAG) || a.startsWith(SEMI_SPACE_FLAG) || a === EXPOSE_GC_FLAG)).toBe(false);
    expect(environ(p.child.pid!).has(ARENA_ENV)).toBe(false);
    expect(environ(p.child.pid!).has(TRIM_ENV)).toBe(false);
  });
});
