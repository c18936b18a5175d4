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
import { EXPOSE_GC_FLAG, HEAP_FLAGS, heapSizing, OLD_SPACE_FLAG, OLD_SPACE_MB, OPT_OUT_ENV, SEMI_SPACE_FLAG, SEMI_SPACE_MB, sizeHeap, TUNED_ENV } from '../src/cli/heap.js';
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
  it('restarts only where Node can, and only once', () => {
    expect(HEAP_FLAGS).toEqual(all);
    expect(heapSizing([], {}, execve)).toEqual({ action: 'restart', flags: all });
    expect(heapSizing([], {}, undefined)).toEqual({ action: 'unsupported' });
    expect(heapSizing([], { [TUNED_ENV]: '1' }, execve)).toEqual({ action: 'off' });
  });
  it('is what `npm start` passes (Node 20 and 22 cannot restart themselves)', () => {
    const start = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } }).scripts.start;
    expect(start.split(/\s+/).filter((a) => a.startsWith('--'))).toEqual(HEAP_FLAGS);
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
    expect(heapSizing([`${OLD_SPACE_FLAG}=64`], {}, execve)).toEqual({ action: 'restart', flags: [all[1], all[2]] });
    expect(heapSizing(['--initial_old_space_size=64', '--max_semi_space_size=8'], {}, execve)).toEqual({ action: 'restart', flags: [EXPOSE_GC_FLAG] });
    expect(heapSizing(['--initial_old_space_size=64', '--max_semi_space_size=8', '--expose_gc'], {}, execve)).toEqual({ action: 'given' });
    expect(heapSizing([`${OLD_SPACE_FLAG}=64`], { NODE_OPTIONS: `--enable-source-maps ${SEMI_SPACE_FLAG}=32 ${EXPOSE_GC_FLAG}` }, execve)).toEqual({ action: 'given' });
    expect(heapSizing(['--max-old-space-size=4096'], {}, execve)).toEqual({ action: 'restart', flags: all });
    expect(heapSizing([], { [OPT_OUT_ENV]: 'off' }, execve)).toEqual({ action: 'off' });
  });
});

describe.runIf(linux)('cutover run', () => {
  it(canRestart ? 'restarts itself in place with the initial old space (same PID), then serves' : 'runs with the flag when node is started with it (this Node cannot restart itself)', async () => {
    const p = await proxy(canRestart ? {} : { nodeArgs: [...HEAP_FLAGS] });
    const args = cmdline(p.child.pid!);
    expect(args.filter((a) => a.startsWith(OLD_SPACE_FLAG))).toEqual([`${OLD_SPACE_FLAG}=${OLD_SPACE_MB}`]);
    expect(args.filter((a) => a.startsWith(SEMI_SPACE_FLAG))).toEqual([`${SEMI_SPACE_FLAG}=${SEMI_SPACE_MB}`]);
    expect(args).toContain(EXPOSE_GC_FLAG);
    expect(args).toContain('run');
  });

  it('does not add a second flag when node was started with one', async () => {
    const p = await proxy({ nodeArgs: [`${OLD_SPACE_FLAG}=64`] });
    const args = cmdline(p.child.pid!);
    expect(args.filter((a) => a.startsWith(OLD_SPACE_FLAG))).toEqual([`${OLD_SPACE_FLAG}=64`]);
    // The other one is still added where the process can restart itself.
    expect(args.filter((a) => a.startsWith(SEMI_SPACE_FLAG))).toEqual(canRestart ? [`${SEMI_SPACE_FLAG}=${SEMI_SPACE_MB}`] : []);
  });

  it(`keeps Node's defaults under ${OPT_OUT_ENV}=off`, async () => {
    const p = await proxy({ env: { ...process.env, [OPT_OUT_ENV]: 'off' } });
    expect(cmdline(p.child.pid!).some((a) => a.startsWith(OLD_SPACE_FLAG) || a.startsWith(SEMI_SPACE_FLAG) || a === EXPOSE_GC_FLAG)).toBe(false);
  });
});
