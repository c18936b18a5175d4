/**
 * Latency that can be trusted: with two identical backends, the mirror's latency must read like the
 * live one's even when the mirror pool is much smaller than the client concurrency. The wait for a
 * pooled connection is its own histogram, not part of the latency the analysis compares.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { waitFor } from './helpers/backend.js';
import { baseConfig, startProxy, type InProcessProxy } from './helpers/proxy.js';

const TOKEN = 'latency-test-token';
process.env.CUTOVER_LATENCY_TEST_TOKEN = TOKEN;

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

/** Two identical backends answering after `ms`, in a child process of their own. */
async function slowBackends(ms: number): Promise<{ legacy: string; next: string }> {
  const child = spawn(process.execPath, [join(import.meta.dirname, 'fixtures/slow-backends.mjs'), String(ms)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  cleanups.push(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  let out = '';
  child.stdout.on('data', (c) => (out += c));
  const m = await waitFor(() => /ports (\d+) (\d+)\n/.exec(out), 10_000, 'the backends to listen');
  return { legacy: `http://127.0.0.1:${m[1]}`, next: `http://127.0.0.1:${m[2]}` };
}

/** Sum and count of one histogram series in a scrape. */
function histogram(text: string, name: string, labels: string): { sum: number; count: number } {
  const read = (suffix: string) => {
    const m = new RegExp(`^${name}_${suffix}\\{${labels}\\} (\\S+)$`, 'm').exec(text);
    if (m === null) throw new Error(`no ${name}_${suffix}{${labels}} in the scrape`);
    return Number(m[1]);
  };
  return { sum: read('sum'), count: read('count') };
}

describe('upstream latency', () => {
  it('reads identical backends as identical under 200 concurrent clients and a 64-connection mirror pool, and shows the pool wait apart', async () => {
    const { legacy, next } = await slowBackends(20);
    const p: InProcessProxy = await startProxy(
      baseConfig(legacy, next, {
        admin: { host: '127.0.0.1', port: 0, tokenEnv: 'CUTOVER_LATENCY_TEST_TOKEN' },
        shadow: { connections: 64, maxInFlight: 10_000, timeout: '30s' },
        defaults: { shadow: { baselinePercent: 0 } },
        routes: [{ name: 'item', match: { methods: ['GET'], path: '/items/:id' } }],
        cutover: { state: { store: 'memory' } },
      }),
      // What is measured is latency, not the comparison queue's bound: on a loaded box comparisons lag
      // behind 5,000 fast requests, and a full queue would (rightly) skip mirrors as overload.
      { analysis: { queueLimit: 100_000 } },
    );
    cleanups.push(() => p.close(100));

    const diffs = async () => {
      const res = await request(`${p.adminUrl}/api/routes/item/diffs`, { headers: { authorization: `Bearer ${TOKEN}` } });
      return (await res.body.json()) as { comparisons: { total: number }; latency: { legacy: { p50: number; p99: number }; new: { p50: number; p99: number }; p50Ratio: number; p99Ratio: number } };
    };
    // Until a first pair is back its size is unknown, and the comparison queue takes it as 1/64 of its
    // byte bound (queue.ts): a burst of 200 mirrors before any pair is back would skip some of them as
    // overload (rightly, and counted), which is not what this test measures. One pair first.
    await (await request(`${p.dataUrl}/items/warm-up`)).body.text();
    await waitFor(async () => (await diffs()).comparisons.total === 1, 10_000, 'the first comparison');

    const clients = 200;
    const perClient = 25;
    const agent = new Agent({ connections: clients });
    cleanups.push(() => agent.close());
    let failed = 0;
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        for (let i = 0; i < perClient; i++) {
          const res = await request(`${p.dataUrl}/items/${c}-${i}`, { dispatcher: agent });
          await res.body.text();
          if (res.statusCode !== 200) failed++;
        }
      }),
    );
    expect(failed).toBe(0);
    const total = clients * perClient + 1;

    try {
      await waitFor(async () => (await diffs()).comparisons.total === total, 30_000, 'every comparison');
    } catch (err) {
      // Say where the missing pairs went: skipped (and why), or failed.
      const scrape = await (await request(`${p.adminUrl}/metrics`)).body.text();
      const counts = scrape.split('\n').filter((l) => /^cutover_(shadow_skipped|shadow_overload|comparisons)_total\{route="item".* [1-9]/.test(l));
      throw new Error(`${(err as Error).message}: ${(await diffs()).comparisons.total} of ${total}; ${counts.join('; ')}`);
    }
    const { latency } = await diffs();
    const scrape = await (await request(`${p.adminUrl}/metrics`)).body.text();
    const mirrorWait = histogram(scrape, 'cutover_upstream_queue_seconds', 'backend="new",role="shadow"');
    const liveWait = histogram(scrape, 'cutover_upstream_queue_seconds', 'backend="legacy",role="primary"');
    const summary = `legacy p50 ${latency.legacy.p50} p99 ${latency.legacy.p99}; new p50 ${latency.new.p50} p99 ${latency.new.p99}; mirror wait mean ${mirrorWait.sum / mirrorWait.count}; live wait mean ${liveWait.sum / liveWait.count}`;
    console.log(`upstream latency: p50 ratio ${latency.p50Ratio}, p99 ratio ${latency.p99Ratio}; ${summary}`);

    // On this shared 2-core box the p50 ratio reads 0.6-1.0 (alone or in a full parallel test run):
    // the live side's 200-way concurrency costs it some event-loop time that the 64 mirrors do not pay.
    // Timed from dispatch instead, p50 reads 8.6 and p99 2.7 (the pool wait counted as latency).
    expect(latency.p50Ratio, summary).toBeGreaterThan(0.5);
    expect(latency.p50Ratio, summary).toBeLessThan(1.5);
    // p99 of a saturated box is noisy (0.54-1.0 seen); the bias this test guards against only ever raises it.
    expect(latency.p99Ratio, summary).toBeGreaterThan(0.33);
    expect(latency.p99Ratio, summary).toBeLessThan(1.5);
    // Every exchange waited in its queue once; the 64-connection mirror pool made mirrors wait far longer.
    expect(mirrorWait.count).toBe(total);
    expect(liveWait.count).toBe(total);
    expect(mirrorWait.sum, summary).toBeGreaterThan(5 * liveWait.sum);
    // The scenario is one where queueing would dominate: mirrors waited longer than they took.
    expect(mirrorWait.sum / mirrorWait.count, summary).toBeGreaterThan(latency.new.p50);
  }, 90_000);
});
