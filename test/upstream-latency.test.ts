/**
 * Latency that can be trusted: with two identical backends, the mirror's latency must read like the
 * live one's even when the mirror pool is much smaller than the client concurrency. The wait for a
 * pooled connection is its own histogram, not part of the latency the analysis compares.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { startBackend, waitFor, type TestBackend } from './helpers/backend.js';
import { baseConfig, startProxy, type InProcessProxy } from './helpers/proxy.js';

const TOKEN = 'latency-test-token';
process.env.CUTOVER_LATENCY_TEST_TOKEN = TOKEN;

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function slowBackend(ms: number): Promise<TestBackend> {
  const b = await startBackend((_req, res) => {
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    }, ms);
  });
  cleanups.push(() => b.close());
  return b;
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
    const legacy = await slowBackend(20);
    const next = await slowBackend(20);
    const p: InProcessProxy = await startProxy(
      baseConfig(legacy.url, next.url, {
        admin: { host: '127.0.0.1', port: 0, tokenEnv: 'CUTOVER_LATENCY_TEST_TOKEN' },
        shadow: { connections: 64, maxInFlight: 10_000, timeout: '30s' },
        defaults: { shadow: { baselinePercent: 0 } },
        routes: [{ name: 'item', match: { methods: ['GET'], path: '/items/:id' } }],
        cutover: { state: { store: 'memory' } },
      }),
    );
    cleanups.push(() => p.close(100));

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
    const total = clients * perClient;

    const diffs = async () => {
      const res = await request(`${p.adminUrl}/api/routes/item/diffs`, { headers: { authorization: `Bearer ${TOKEN}` } });
      return (await res.body.json()) as { comparisons: { total: number }; latency: { legacy: { p50: number; p99: number }; new: { p50: number; p99: number }; p50Ratio: number; p99Ratio: number } };
    };
    await waitFor(async () => (await diffs()).comparisons.total === total, 30_000, 'every comparison');
    const { latency } = await diffs();
    const scrape = await (await request(`${p.adminUrl}/metrics`)).body.text();
    const mirrorWait = histogram(scrape, 'cutover_upstream_queue_seconds', 'backend="new",role="shadow"');
    const liveWait = histogram(scrape, 'cutover_upstream_queue_seconds', 'backend="legacy",role="primary"');
    const summary = `legacy p50 ${latency.legacy.p50} p99 ${latency.legacy.p99}; new p50 ${latency.new.p50} p99 ${latency.new.p99}; mirror wait mean ${mirrorWait.sum / mirrorWait.count}; live wait mean ${liveWait.sum / liveWait.count}`;
    console.log(`upstream latency: p50 ratio ${latency.p50Ratio}, p99 ratio ${latency.p99Ratio}; ${summary}`);

    expect(latency.p50Ratio, summary).toBeGreaterThan(0.7);
    expect(latency.p50Ratio, summary).toBeLessThan(1.4);
    expect(latency.p99Ratio, summary).toBeGreaterThan(0.7);
    expect(latency.p99Ratio, summary).toBeLessThan(1.4);
    // Every exchange waited in its queue once; the 64-connection mirror pool made mirrors wait far longer.
    expect(mirrorWait.count).toBe(total);
    expect(liveWait.count).toBe(total);
    expect(mirrorWait.sum, summary).toBeGreaterThan(5 * liveWait.sum);
  }, 90_000);
});
