import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { BUCKETS, weightToBuckets } from '../src/routing/hash.js';
import { RouteTable, type Route } from '../src/routing/table.js';
import { validateConfig } from '../src/config/load.js';
import { Telemetry } from '../src/telemetry/metrics.js';
import { createStickyExtractor } from '../src/routing/sticky.js';
import { startBackend } from './helpers/backend.js';
import { baseConfig, spawnProxy } from './helpers/proxy.js';

describe('sticky split', () => {
  it('sticky by ip: one client is one key whether a listener sees it as IPv4 or as IPv4-mapped IPv6', () => {
    const key = createStickyExtractor('ip', [])!;
    expect(key({}, '::ffff:203.0.113.7', '')).toBe('203.0.113.7');
    expect(key({}, '203.0.113.7', '')).toBe('203.0.113.7');
    expect(key({}, '2001:db8::1', '')).toBe('2001:db8::1');
  });

  /** A real Route, as the proxy builds it from config, so the test exercises what the proxy applies. */
  function liveRoute(): Route {
    const config = validateConfig({ backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } }, routes: [{ name: 'r', match: { path: '/r' } }] });
    return new RouteTable(config.routes, config.defaults, new Telemetry({ defaultMetrics: false })).get('r')!;
  }

  it('puts the share of 20,000 keys given by the weight on the new backend (±1%), only ever moving clients from legacy to new, at every step', () => {
    const route = liveRoute();
    const keys = Array.from({ length: 20_000 }, (_, i) => `tenant-${i * 7919}`);
    let previous = new Set<string>();
    for (let step = 0; step <= 100; step++) {
      const weight = step === 1 ? 0.01 : step;
      route.setWeight(weight);
      const onNew = new Set(keys.filter((k) => route.servesNew(k)));
      expect(Math.abs((onNew.size / keys.length) * 100 - weight), `weight ${weight}`).toBeLessThanOrEqual(1);
      const movedBack = [...previous].filter((k) => !onNew.has(k));
      expect(movedBack, `weight ${weight} moved clients back to legacy`).toEqual([]);
      previous = onNew;
    }
    expect(previous.size).toBe(keys.length);
  });

  it('splits 20,000 keyless requests at exactly the weight, at every step', () => {
    const route = liveRoute();
    for (const weight of [0, 0.01, 1, 5, 12.5, 25, 33.33, 50, 75, 99.99, 100]) {
      route.setWeight(weight);
      let onNew = 0;
      for (let i = 0; i < 20_000; i++) if (route.servesNew(undefined)) onNew++;
      expect(onNew, `weight ${weight}`).toBe(Math.round((20_000 * weight) / 100));
    }
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
