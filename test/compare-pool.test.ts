/**
 * The comparison worker pool when its workers die: comparisons waiting in a dead worker are answered
 * (as "could not compare", never left hanging, which would hold their queue place forever), the
 * worker is replaced a bounded number of times, and then the pool says it is no longer usable.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ComparePool, silentWorker, workerFile } from '../src/analysis/workers.js';
import { BodyCapture, captureBuffers } from '../src/forward/capture.js';
import { defaultCompareWorkers } from '../src/config/schema.js';
import { hash32 } from '../src/routing/hash.js';
import type { PairInput } from '../src/analysis/compare-pair.js';
import type { CompareSettings } from '../src/config/load.js';

const dir = mkdtempSync(join(tmpdir(), 'cutover-pool-'));
/** A worker that dies as soon as it is asked to compare. */
const dying = join(dir, 'dying-worker.mjs');
writeFileSync(dying, "import { parentPort } from 'node:worker_threads';\nparentPort.on('message', (m) => { if (m.type === 'compare') process.exit(3); });\n");

/** A worker that takes every comparison and never answers (stands for one stuck on a pair). */
const silent = join(dir, 'silent-worker.mjs');
writeFileSync(silent, "import { parentPort } from 'node:worker_threads';\nparentPort.on('message', () => undefined);\n");

const answer = () => ({ status: 200, headers: {}, body: Buffer.from('{"a":1}'), truncated: false });
const pair = (): PairInput => ({ route: 'r', method: 'GET', path: '/x', primaryIsNew: false, primary: answer(), shadow: answer(), baseline: null });
// The dying worker never reads the settings.
const settings = {} as CompareSettings;

describe('comparison worker pool', () => {
  it('answers the comparisons of a worker that died, replaces it a bounded number of times, then gives up', async () => {
    const pool = new ComparePool(1, pathToFileURL(dying));
    try {
      for (let i = 0; i < 6; i++) {
        expect(pool.usable).toBe(true);
        const compared = await pool.compare(pair(), settings);
        expect(compared).toEqual({ baseline: null, main: null, failure: 'compare_failed: comparison worker exited' });
      }
      // Five replacements, all dead: the analysis compares on its own thread from now on.
      expect(pool.usable).toBe(false);
      expect(await pool.compare(pair(), settings)).toEqual({ baseline: null, main: null, failure: 'compare_failed: no comparison worker' });
    } finally {
      await pool.close();
    }
  });

  it('counts its restarts within a window: workers dying now and then are replaced for good, only a crash loop makes it give up', async () => {
    const pool = new ComparePool(1, pathToFileURL(dying), 0, 0, 10_000, 200);
    try {
      // Seven deaths, more than the five restarts of a window, but never five within 200 ms.
      for (let i = 0; i < 7; i++) {
        expect(await pool.compare(pair(), settings)).toEqual({ baseline: null, main: null, failure: 'compare_failed: comparison worker exited' });
        expect(pool.usable).toBe(true);
        await new Promise((r) => setTimeout(r, 60));
      }
    } finally {
      await pool.close();
    }
  });

  it('replaces a worker that answers nothing for its time limit, as often as needed, and answers its comparisons as failed', async () => {
    const pool = new ComparePool(1, pathToFileURL(silent), 0, 0, 150);
    try {
      // More stuck comparisons than the restarts a dying worker gets: a stuck one does not use them up.
      for (let i = 0; i < 7; i++) {
        const compared = await pool.compare(pair(), settings);
        expect(compared).toEqual({ baseline: null, main: null, failure: 'compare_failed: no answer from the comparison worker within 150 ms' });
        expect(pool.usable).toBe(true);
      }
    } finally {
      await pool.close();
    }
  });

  const fixtures = join(import.meta.dirname, 'fixtures');
  const hasTaskset = process.platform === 'linux' && spawnSync('taskset', ['-c', '0', 'true']).status === 0;

  it.runIf(process.platform === 'linux')('replaces a worker that spins with the CPU at its limit (its thread had the CPU and did not answer)', async () => {
    const pool = new ComparePool(1, pathToFileURL(join(fixtures, 'spinning-worker.mjs')), 0, 0, 300);
    try {
      const compared = await pool.compare(pair(), settings);
      expect(compared).toEqual({ baseline: null, main: null, failure: 'compare_failed: no answer from the comparison worker within 300 ms' });
    } finally {
      await pool.close();
    }
  });

  it.runIf(process.platform === 'linux')('replaces a worker blocked without using the CPU at its limit (neither running nor waiting for a CPU: not starved) (found by review)', async () => {
    const pool = new ComparePool(1, pathToFileURL(join(fixtures, 'blocked-worker.mjs')), 0, 0, 300);
    try {
      const started = performance.now();
      const compared = await pool.compare(pair(), settings);
      expect(compared).toEqual({ baseline: null, main: null, failure: 'compare_failed: no answer from the comparison worker within 300 ms' });
      // At its limit, not after the 30 limits a starved worker is given.
      expect(performance.now() - started).toBeLessThan(3_000);
    } finally {
      await pool.close();
    }
  });

  it.runIf(process.platform === 'linux')('keeps the answer of a worker the watchdog first looks at late (the event loop held past the limit in one stretch) (found by review)', async () => {
    const pool = new ComparePool(1, pathToFileURL(join(fixtures, 'quick-worker.mjs')), 0, 0, 300);
    try {
      await pool.compare(pair(), settings);
      // The worker's thread id has arrived.
      await new Promise((r) => setTimeout(r, 100));
      const pending = pool.compare(pair(), settings);
      // The worker answers within ~30 ms; the event loop reads that only after 450 ms of other work.
      setImmediate(() => {
        const until = Date.now() + 450;
        while (Date.now() < until);
      });
      expect(await pending).toEqual({ baseline: null, main: null });
    } finally {
      await pool.close();
    }
  });

  it.runIf(process.platform === 'linux')('reads the answers that came while the event loop was held before it judges a worker (a mark taken, then the loop held past the limit) (found by review)', async () => {
    process.env.QUICK_WORKER_MS = '60';
    const pool = new ComparePool(1, pathToFileURL(join(fixtures, 'quick-worker.mjs')), 0, 0, 300);
    try {
      await pool.compare(pair(), settings);
      await new Promise((r) => setTimeout(r, 100));
      // A queue of 16 comparisons of 60 ms each; the watchdog looks (and marks) while the worker is on them.
      const all = Array.from({ length: 16 }, () => pool.compare(pair(), settings));
      await new Promise((r) => setTimeout(r, 100));
      setImmediate(() => {
        const until = Date.now() + 450;
        while (Date.now() < until);
      });
      const compared = await Promise.all(all);
      expect(compared.filter((c) => c.failure !== undefined)).toEqual([]);
    } finally {
      delete process.env.QUICK_WORKER_MS;
      await pool.close();
    }
  });

  it.runIf(hasTaskset)('leaves a worker starved of CPU (its core kept busy by the event loop) to finish its comparison, not taken for stuck', () => {
    // Run apart, pinned to one core: a comparison needing ~165 ms of CPU at the lowest priority, an
    // 800 ms limit, and an event loop busy for 3 s. Taken for stuck, it failed after 0.9-1.0 s; it
    // answers after 1.1-1.6 s. Kept short of work so that other tests on the core cannot starve it
    // past the test's own time.
    const run = spawnSync('taskset', ['-c', '0', process.execPath, join(fixtures, 'starved-compare.mjs')], { encoding: 'utf8', timeout: 30_000 });
    expect(run.status, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout.trim()) as { answeredAt: number; failure: string | null; result: string | null };
    expect(out).toMatchObject({ failure: null, result: 'mismatch' });
  });

  it('judges a silent worker by its thread times: spinning and blocked are replaced, starved is left, and not for ever', () => {
    const limit = 1000;
    const mark = { ran: 100, runnable: 200, queued: false, at: 5_000 };
    const at = (ms: number, ran: number, runnable: number, queued: boolean) => silentWorker(ms, limit, mark, { ran, runnable, queued }, mark.at + ms - 100);
    // Not silent for a limit yet.
    expect(at(900, 100, 200, false)).toBe('wait');
    // Spinning: it ran most of the window since the mark.
    expect(at(1_200, 900, 1_300, false)).toBe('replace');
    // Blocked: asleep, neither running nor waiting for a CPU most of the window.
    expect(at(1_200, 110, 220, false)).toBe('replace');
    // Starved: in the run queue now, its wait not yet counted by the kernel (found by review).
    expect(at(1_200, 110, 220, true)).toBe('wait');
    // Starved, with the wait counted: runnable most of the window, on a CPU little of it.
    expect(at(1_200, 150, 1_200, false)).toBe('wait');
    // A window too short to judge (the first look came late): wait for more of it.
    expect(silentWorker(1_200, limit, { ...mark, at: 6_000 }, { ran: 100, runnable: 200, queued: false }, 6_100)).toBe('wait');
    // Starved for 30 limits: replaced whatever its times.
    expect(at(30_001, 150, 30_000, true)).toBe('replace');
    // No times (not Linux, or the id not known yet): the clock alone.
    expect(silentWorker(1_200, limit, null, null, 6_000)).toBe('replace');
  });

  it('answers the comparisons still waiting when it closes', async () => {
    const pool = new ComparePool(1, pathToFileURL(silent));
    const waiting = [pool.compare(pair(), settings), pool.compare(pair(), settings)];
    await new Promise((r) => setTimeout(r, 50));
    await pool.close();
    expect(await Promise.all(waiting)).toEqual([0, 1].map(() => ({ baseline: null, main: null, failure: 'compare_failed: the comparison pool closed' })));
  });

  /** The nice value of every thread of this process (field 19 of /proc/self/task/T/stat), by thread id. */
  function niceByThread(): Map<number, number> {
    const out = new Map<number, number>();
    for (const tid of readdirSync('/proc/self/task')) {
      try {
        const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
        out.set(Number(tid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
      } catch {
        // the thread ended while we looked
      }
    }
    return out;
  }

  it.runIf(process.platform === 'linux')('runs its workers at the lowest priority, so comparisons only take the CPU the event loop leaves', async () => {
    const file = workerFile();
    expect(file, 'dist/analysis/compare-worker.js: run `npm run build`').not.toBeNull();
    const before = new Set(niceByThread().keys());
    const pool = new ComparePool(1, file!);
    try {
      const real = { headers: [], ignoreHeaders: [], ignore: [], unordered: [], tolerance: { absolute: 0, relative: 0 }, mappings: [], sensitive: [], maxBodyBytes: 1024 } as unknown as CompareSettings;
      const compared = await pool.compare(pair(), real);
      expect(compared.main?.result).toBe('match');
      const now = niceByThread();
      // The main thread keeps its priority; the worker's own thread (one of those that appeared) is at nice 19.
      expect(now.get(process.pid)).toBe(0);
      const added = [...now].filter(([tid]) => !before.has(tid)).map(([, nice]) => nice);
      expect(added).toContain(19);
    } finally {
      await pool.close();
    }
  });

  it('is on by default even with one core (a low-priority worker takes nothing from the event loop)', () => {
    expect(defaultCompareWorkers()).toBeGreaterThanOrEqual(1);
    expect(defaultCompareWorkers()).toBeLessThanOrEqual(4);
    // By core count: this machine's alone would not tell one core apart from two.
    expect([1, 2, 3, 8, 64].map((cores) => defaultCompareWorkers(cores))).toEqual([1, 1, 2, 4, 4]);
  });

  // Left in the worker, compared bodies waited for the worker's own GC, which its few allocations
  // seldom run: ~64 MB of dead 1 MB bodies (RSS 280 MB in the bench's shadow-1mb row, ~200 MB now).
  it('gives the bodies it compared back to the capture pool, so the next big answers are captured into them', async () => {
    const file = workerFile();
    expect(file).not.toBeNull();
    const pool = new ComparePool(1, file!);
    const settings = { headers: [], ignoreHeaders: [], ignore: [], unordered: [], tolerance: { absolute: 0, relative: 0 }, mappings: [], sensitive: [], maxBodyBytes: 4e6 } as unknown as CompareSettings;
    const captured = (n: number): { status: number; headers: Record<string, string>; body: Buffer; truncated: boolean } => {
      const text = Buffer.from(JSON.stringify({ n, pad: 'p'.repeat(300_000) }));
      const capture = new BodyCapture(4 * 1024 * 1024);
      capture.expect(text.length);
      capture.add(text);
      return { status: 200, headers: { 'content-type': 'application/json' }, body: capture.body(), truncated: false };
    };
    try {
      const held = captureBuffers.held;
      const compared = await pool.compare({ route: 'r', method: 'GET', path: '/x', primaryIsNew: false, primary: captured(1), shadow: captured(2), baseline: null }, settings);
      expect(compared.main?.result).toBe('mismatch');
      // Both bodies came back and wait in the pool for the next captures.
      expect(captureBuffers.held).toBeGreaterThanOrEqual(held + 2 * 300_000);
      const reused = captureBuffers.reused;
      captured(3);
      expect(captureBuffers.reused).toBe(reused + 1);
    } finally {
      await pool.close();
    }
  });

  it('sends the pairs of one path to one worker, which recognises the big values they repeat (compare/known.ts)', async () => {
    const file = workerFile();
    expect(file).not.toBeNull();
    const pool = new ComparePool(2, file!, 16 * 1024 * 1024);
    const settings = { headers: [], ignoreHeaders: [], ignore: [], unordered: [], tolerance: { absolute: 0, relative: 0 }, mappings: [], sensitive: [], maxBodyBytes: 4e6 } as unknown as CompareSettings;
    const lines = Array.from({ length: 3000 }, (_, i) => ({ line: i, note: 'sturdy steel housing' }));
    const answer = (id: string) => ({ status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ meta: { requestId: id }, lines })), truncated: false });
    // A path whose worker is the second: the least busy one (the first, on a tie) would not tell.
    const path = ['/orders/1', '/orders/2', '/orders/3', '/orders/4'].find((p) => hash32(p) % 2 === 1)!;
    try {
      for (let k = 0; k < 4; k++) {
        const compared = await pool.compare({ route: 'r', method: 'GET', path, primaryIsNew: false, primary: answer(`a${k}`), shadow: answer(`b${k}`), baseline: null }, settings);
        expect(compared.main?.differences.map((d) => d.path)).toEqual(['$.meta.requestId']);
      }
      const [first, second] = pool.spans();
      expect(first).toBeNull();
      // Read twice (kept the second time), then recognised at each later comparison.
      expect(second).toMatchObject({ entries: 1 });
      expect(second!.hits).toBeGreaterThanOrEqual(2);
    } finally {
      await pool.close();
    }
  });
  it('keeps recent pairs in the worker: a path polled again is compared through what changed (compare/recent.ts)', async () => {
    const file = workerFile();
    expect(file).not.toBeNull();
    // No big values kept: the recent pairs alone must answer.
    const pool = new ComparePool(1, file!, 0, 4 * 1024 * 1024);
    const settings = { headers: [], ignoreHeaders: [], ignore: [], unordered: [], tolerance: { absolute: 0, relative: 0 }, mappings: [], sensitive: [], maxBodyBytes: 4e6 } as unknown as CompareSettings;
    const lines = Array.from({ length: 2000 }, (_, i) => ({ line: i, note: 'sturdy steel housing' }));
    const answer = (id: string, v: number) => ({ status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ meta: { requestId: id }, lines, v })), truncated: false });
    try {
      for (let k = 0; k < 5; k++) {
        const compared = await pool.compare({ route: 'r', method: 'GET', path: '/orders/7', primaryIsNew: false, primary: answer(`a${k}`, 1), shadow: answer(`b${k}`, 2), baseline: null }, settings);
        expect(compared.main?.differences.map((d) => d.path)).toEqual(['$.meta.requestId', '$.v']);
      }
      // The first pair is a sighting, the second is kept, the next three are answered from it.
      expect(pool.recentPairs()).toMatchObject([{ hits: 3, entries: 1 }]);
    } finally {
      await pool.close();
    }
  });
});
