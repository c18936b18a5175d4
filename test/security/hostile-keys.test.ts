/**
 * Attacker-chosen JSON keys (issue 9, row 4): backends that answer with 1 MB keys must not make
 * /metrics, stored paths or the diffs answer grow with them. Keys are cut (with a hash suffix so
 * distinct long keys stay distinct) where paths are made; examples are bounded when rendered.
 */
import { describe, expect, it } from 'vitest';
import { boundName, MAX_KEY_CHARS } from '../../src/compare/index.js';
import { waitFor } from '../helpers/backend.js';
import { baseConfig } from '../helpers/proxy.js';
import { scoped } from '../helpers/scoped.js';
import { sample, scrape } from '../helpers/metrics.js';

const TOKEN = 'hostile-keys-token';
process.env.CUTOVER_TEST_HOSTILE_TOKEN = TOKEN;

const scope = scoped();

const MB = 1024 * 1024;

/** A 1 MB key that differs from the others only at its end (and has a space, so it is not an id). */
function hugeKey(i: number): string {
  return `key ${'k'.repeat(MB)} ${i}`;
}

describe('boundName', () => {
  it('keeps short names, cuts long ones to the bound, and keeps distinct long names distinct', () => {
    expect(boundName('price')).toBe('price');
    const a = boundName(hugeKey(1));
    const b = boundName(hugeKey(2));
    expect(a).toHaveLength(MAX_KEY_CHARS);
    expect(b).toHaveLength(MAX_KEY_CHARS);
    expect(a).not.toBe(b);
    expect(boundName(hugeKey(1))).toBe(a);
  });
});

describe('answers with 1 MB keys', () => {
  it('keep /metrics and the diffs answer small', async () => {
    // Each answer carries its own 1 MB key on both sides, with different values (a value mismatch),
    // plus a key only the new side has (an extra field) and a 1 MB string value.
    const legacy = await scope.backend((req, res) => {
      const i = Number(req.url!.split('/').pop());
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ [hugeKey(i)]: 1, note: 'x'.repeat(MB) }));
    });
    const next = await scope.backend((req, res) => {
      const i = Number(req.url!.split('/').pop());
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ [hugeKey(i)]: 2, [`extra ${hugeKey(i)}`]: true, note: 'y'.repeat(MB) }));
    });
    const proxy = await scope.proxy(
      baseConfig(legacy.url, next.url, {
        admin: { host: '127.0.0.1', port: 0, tokenEnv: 'CUTOVER_TEST_HOSTILE_TOKEN' },
        // On the main thread: the bounds below need real comparisons, and a worker runs at the lowest
        // priority, so on a machine busy with other test files it compares few pairs (by design).
        shadow: { compareWorkers: 0 },
        routes: [{ name: 'keys', match: { path: '/v1/keys/:id' }, shadow: { percent: 100 }, compare: { maxBodyBytes: '4mib' } }],
      }),
    );
    const ANSWERS = 60;
    for (let i = 0; i < ANSWERS; i++) {
      const res = await fetch(`${proxy.dataUrl}/v1/keys/${i}`);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    const comparisons = (): number => proxy.analysis.diffs('keys')?.comparisons.total ?? 0;
    // Every mirror is either compared or, when the comparison queue's byte bound is full (3 MB pairs on
    // a busy box), skipped as overload: wait for all of them to be accounted for.
    const overload = async (): Promise<number> => sample(await scrape(proxy), 'cutover_shadow_skipped_total{route="keys",reason="overload"}');
    await waitFor(async () => comparisons() + (await overload()) >= ANSWERS, 30_000, 'every pair to be compared or counted');
    expect(comparisons()).toBeGreaterThan(20);

    const metrics = await scrape(proxy);
    const fieldLines = metrics.split('\n').filter((l) => l.startsWith('cutover_mismatch_fields_total{route="keys"'));
    // Distinct long keys stay distinct fields (up to the 50-field cap, then `_other`).
    expect(new Set(fieldLines).size).toBeGreaterThan(10);
    for (const line of fieldLines) expect(line.length).toBeLessThan(400);

    const diffs = await fetch(`${proxy.adminUrl}/api/routes/keys/diffs`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(diffs.status).toBe(200);
    const text = await diffs.text();
    const report = JSON.parse(text) as { fields: { field: string; examples: { location: string; legacy?: unknown; new?: unknown }[] }[] };
    expect(report.fields.length).toBeGreaterThan(10);
    for (const f of report.fields) {
      expect(f.field.length).toBeLessThanOrEqual(1024);
      for (const e of f.examples) {
        expect(e.location.length).toBeLessThanOrEqual(1024);
        expect(JSON.stringify(e.legacy ?? null).length).toBeLessThanOrEqual(1026);
        expect(JSON.stringify(e.new ?? null).length).toBeLessThanOrEqual(1026);
      }
    }
    // The bounds above were checked on real examples, not on an empty list.
    expect(report.fields.flatMap((f) => f.examples).length).toBeGreaterThan(0);
    // 60 answers × 2 MB of keys: the answers stay well under a megabyte each.
    expect(metrics.length).toBeLessThan(256 * 1024);
    expect(text.length).toBeLessThan(1024 * 1024);
    console.log(`60 answers with 1 MB keys: /metrics ${(metrics.length / 1024).toFixed(1)} KB, diffs answer ${(text.length / 1024).toFixed(1)} KB, RSS ${(process.memoryUsage().rss / MB).toFixed(0)} MB`);
  }, 60_000);
});
