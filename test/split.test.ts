import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { bucketOf, BUCKETS, weightToBuckets } from '../src/routing/hash.js';
import { startBackend } from './helpers/backend.js';
import { baseConfig, spawnProxy } from './helpers/proxy.js';

describe('sticky split', () => {
  it('puts the share of 20,000 keys given by the weight on the new backend, within ±1%', () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => `client-${i}`);
    for (const weight of [1, 5, 25, 50, 90]) {
      const threshold = weightToBuckets(weight);
      const onNew = keys.filter((k) => bucketOf(k) < threshold).length;
      expect(Math.abs((onNew / keys.length) * 100 - weight), `weight ${weight}`).toBeLessThanOrEqual(1);
    }
  });

  it('only ever moves clients from legacy to new when the weight rises', () => {
    const keys = Array.from({ length: 20_000 }, (_, i) => `tenant-${i * 7919}`);
    let previous = new Set<string>();
    for (const weight of [0, 0.01, 1, 5, 25, 50, 75, 100]) {
      const onNew = new Set(keys.filter((k) => bucketOf(k) < weightToBuckets(weight)));
      for (const k of previous) expect(onNew.has(k)).toBe(true);
      previous = onNew;
    }
    expect(previous.size).toBe(keys.length);
  });

  it('has 0.01 % resolution', () => {
    expect(weightToBuckets(0.01)).toBe(1);
    expect(weightToBuckets(33.33)).toBe(3333);
    expect(BUCKETS).toBe(10_000);
  });

  it('sends the same key to the same backend from two separately started proxy processes', async () => {
    const legacy = await startBackend((_req, res) => res.end('legacy'));
    const next = await startBackend((_req, res) => res.end('new'));
    const config = baseConfig(legacy.url, next.url, {
      sticky: { key: 'header:x-client-id' },
      defaults: { shadow: { percent: 0 } },
      routes: [{ name: 'r', match: { path: '/r' }, weight: 50 }],
    });
    const [a, b] = await Promise.all([spawnProxy(config), spawnProxy(config)]);
    try {
      const answers = async (url: string): Promise<string[]> => {
        const out: string[] = [];
        for (let i = 0; i < 60; i++) {
          const res = await request(`${url}/r`, { headers: { 'x-client-id': `acme-${i}` } });
          out.push(await res.body.text());
        }
        return out;
      };
      const fromA = await answers(a.dataUrl);
      const fromB = await answers(b.dataUrl);
      expect(fromA).toEqual(fromB);
      // Both backends are in use, so the agreement is not the trivial all-legacy one.
      expect(new Set(fromA)).toEqual(new Set(['legacy', 'new']));
    } finally {
      await Promise.all([a.stop(), b.stop(), legacy.close(), next.close()]);
    }
  });
});
