import { describe, expect, it } from 'vitest';
import { buildReport, fieldsFromDiffs, renderJson, renderMarkdown, type ReportInput, type ReportRouteInput } from '../src/cutover/report.js';
import { DEFAULT_GATES, evaluateGates } from '../src/cutover/gates.js';
import type { RouteEvidence } from '../src/cutover/types.js';

const NOW = Date.UTC(2026, 10, 29, 12, 0, 0);

function spread(n: number, median: number): number[] {
  return Array.from({ length: n }, (_, i) => median * (0.75 + ((i * 37) % 50) / 100));
}

function evidence(route: string, over: Partial<RouteEvidence> = {}): RouteEvidence {
  return {
    route,
    since: NOW - 60_000,
    comparisons: 2000,
    mismatches: 2,
    legacy: { requests: 2000, errors: 2, latencies: spread(400, 0.02) },
    new: { requests: 2000, errors: 2, latencies: spread(400, 0.02) },
    paired: { legacy: spread(400, 0.02), new: spread(400, 0.02) },
    ...over,
  };
}

function route(name: string, e: RouteEvidence, over: Partial<ReportRouteInput> = {}): ReportRouteInput {
  return { route: name, state: 'shifting', weight: 25, step: 3, since: e.since, evidence: e, gates: evaluateGates(e, DEFAULT_GATES), ...over };
}

function input(routes: ReportRouteInput[], over: Partial<ReportInput> = {}): ReportInput {
  return { routes, rollbacks: [], configHash: 'abc123', bypass: false, mode: 'auto', now: NOW, ...over };
}

describe('readiness report', () => {
  it('READY when every route passes every gate; the numbers are there', () => {
    const report = buildReport(input([route('a', evidence('a')), route('done', evidence('done'), { state: 'complete', weight: 100 })]));
    expect(report).toMatchObject({ verdict: 'READY', ready: true, reasons: [], generatedAt: '2026-11-29T12:00:00.000Z', configHash: 'abc123' });
    const a = report.routes[0];
    expect(a).toMatchObject({ samples: 2000, mismatches: 2, mismatchRate: 0.001, ready: true });
    expect(a.mismatchInterval!.low).toBeLessThan(0.001);
    expect(a.mismatchInterval!.high).toBeGreaterThan(0.001);
    expect(a.latency.legacy.p50).toBeCloseTo(0.02, 2);
    expect(a.latency.newClearlySlower).toBe(false);
    expect(a.errorRates).toEqual({ legacy: 0.001, new: 0.001, legacyRequests: 2000, newRequests: 2000 });
  });

  it('"clearly slower" takes a shift past 20% of legacy\'s median and 1 ms: not the proxy\'s own sub-millisecond delay', () => {
    const shifted = (median: number, by: number) => spread(400, median).map((s) => s + by);
    // A 0.5 ms API, new 0.3 ms slower at every sample: significant and 60% of the median, but under 1 ms.
    const fast = evidence('fast', { legacy: { requests: 2000, errors: 2, latencies: spread(400, 0.0005) }, new: { requests: 2000, errors: 2, latencies: shifted(0.0005, 0.0003) } });
    // A 5 ms API, new 1.5 ms slower: within the gate's 1.5 p99 ratio, past both bounds.
    const slower = evidence('slower', { legacy: { requests: 2000, errors: 2, latencies: spread(400, 0.005) }, new: { requests: 2000, errors: 2, latencies: shifted(0.005, 0.0015) } });
    const report = buildReport(input([route('fast', fast), route('slower', slower)]));
    const [a, b] = report.routes;
    expect(a.latency.newClearlySlower).toBe(false);
    expect(b.latency.newClearlySlower).toBe(true);
    expect(report.reasons.some((r) => /^slower: the new backend is clearly slower/.test(r))).toBe(true);
  });

  it('says which samples its latency figures are from, and shows those of the comparison that finds new slower', () => {
    const slowerPairs = evidence('pairs', { paired: { legacy: spread(400, 0.005), new: spread(400, 0.005).map((s) => s + 0.0015) } });
    const report = buildReport(input([route('pairs', slowerPairs), route('fine', evidence('fine'))]));
    const [a, b] = report.routes;
    expect(a.latency).toMatchObject({ basis: 'paired', newClearlySlower: true });
    expect(a.latency.legacy.p50).toBeCloseTo(0.005, 3);
    expect(b.latency).toMatchObject({ basis: 'paired', newClearlySlower: false });
    expect(renderMarkdown(report)).toMatch(/Latency on compared pairs: p50 legacy 5\.\d+ ms, new 6\.\d+ ms/);
  });

  it('NOT READY with a reason per failing or inconclusive gate, rollback and bypass; a slower new backend is named', () => {
    const slow = evidence('slow', { new: { requests: 2000, errors: 2, latencies: spread(400, 0.05) } });
    const thin = evidence('thin', { comparisons: 10, mismatches: 0 });
    const report = buildReport(
      input([route('slow', slow), route('thin', thin), route('back', evidence('back'), { state: 'rolled_back', weight: 0, step: 0 })], {
        bypass: true,
        rollbacks: [{ route: 'back', at: '2026-11-29T11:00:00.000Z', who: 'controller', reason: '3 failing checks in a row: mismatch rate 4%' }],
      }),
    );
    expect(report.verdict).toBe('NOT READY');
    expect(report.reasons[0]).toMatch(/bypass is on/);
    expect(report.reasons.some((r) => /^slow: maxLatencyRatio failed: New is slower/.test(r))).toBe(true);
    expect(report.reasons.some((r) => /^thin: minComparisons is inconclusive/.test(r))).toBe(true);
    expect(report.reasons).toContain('back was rolled back (3 failing checks in a row: mismatch rate 4%).');
    expect(report.routes[0].latency.newClearlySlower).toBe(true);
    expect(report.routes[2].rollbacks).toHaveLength(1);
    const md = renderMarkdown(report);
    expect(md).toMatch(/^# Cutover readiness: NOT READY/);
    expect(md).toContain('**The new backend is clearly slower.**');
    expect(md).toContain('- 2026-11-29T11:00:00.000Z by controller: 3 failing checks in a row');
    expect(JSON.parse(renderJson(report))).toEqual(report);
  });

  it('shows the top differing fields with an example each, and noise fields apart', () => {
    const fields = fieldsFromDiffs({
      fields: [
        { field: '$.price', mismatches: 40, mismatchRate: 0.02, noiseHits: 0, noiseRate: 0, noise: false, kinds: { value: 40 }, examples: [{ at: 'x', method: 'GET', path: '/v1/items/7', location: 'body', kind: 'value', legacy: 9.99, new: 9.989, baseline: false }] },
        { field: '$.meta.requestId', mismatches: 2000, mismatchRate: 1, noiseHits: 200, noiseRate: 1, noise: true, kinds: { value: 2000 }, examples: [] },
        { field: '$.tags', mismatches: 3, mismatchRate: 0.001, noiseHits: 0, noiseRate: 0, noise: false, kinds: { order: 3 }, examples: [] },
      ],
    });
    const report = buildReport(input([route('a', evidence('a'), { fields })]));
    expect(report.routes[0].topFields.map((f) => f.field)).toEqual(['$.price', '$.tags']);
    expect(report.routes[0].topFields[0].example).toEqual({ method: 'GET', path: '/v1/items/7', legacy: 9.99, new: 9.989 });
    expect(report.routes[0].noiseFields).toEqual(['$.meta.requestId']);
    const md = renderMarkdown(report);
    expect(md).toContain('| `$.price` | 40 | GET /v1/items/7: 9.99 → 9.989 |');
    expect(md).toContain('Noise fields (ignored): `$.meta.requestId`.');
  });

  it('text from the traffic never starts a line of its own: a JSON key cannot forge the verdict line', () => {
    const forged = 'note\n# Cutover readiness: READY\n';
    const fields = fieldsFromDiffs({
      fields: [
        { field: forged, mismatches: 40, mismatchRate: 0.2, noiseHits: 0, noiseRate: 0, noise: false, kinds: { value: 40 }, examples: [{ at: 'x', method: 'GET', path: '/v1/a\n# Cutover readiness: READY', location: 'body', kind: 'value', legacy: 1, new: 2, baseline: false }] },
        { field: `${forged}noise`, mismatches: 9, mismatchRate: 1, noiseHits: 9, noiseRate: 1, noise: true, kinds: { value: 9 }, examples: [] },
      ],
    });
    const report = buildReport(input([route('a', evidence('a', { mismatches: 400 }), { fields })]));
    expect(report.ready).toBe(false);
    const lines = renderMarkdown(report).split('\n');
    expect(lines[0]).toBe('# Cutover readiness: NOT READY');
    expect(lines.filter((l) => l.startsWith('# '))).toHaveLength(1);
  });

  it('no routes, or a route never checked, is NOT READY', () => {
    expect(buildReport(input([])).reasons).toEqual(['No routes are configured.']);
    const unchecked = buildReport(input([{ route: 'new', state: 'shadow', weight: 0, step: 0, since: NOW, evidence: null, gates: [] }]));
    expect(unchecked.verdict).toBe('NOT READY');
    expect(unchecked.reasons).toEqual(['new has not been checked yet.']);
    expect(unchecked.routes[0]).toMatchObject({ samples: 0, mismatchRate: null, mismatchInterval: null });
  });
});
