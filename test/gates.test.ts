import { describe, expect, it } from 'vitest';
import {
  DEFAULT_GATES,
  differenceInterval,
  errorRateGate,
  evaluateGates,
  hodgesLehmann,
  latencyGate,
  mannWhitney,
  medianInPlace,
  minComparisonsGate,
  mismatchRateGate,
  overallVerdict,
  pairedShift,
  quantile,
  signedRank,
  wilson,
} from '../src/cutover/gates.js';
import type { RouteEvidence } from '../src/cutover/types.js';
import { prng as rng } from '../src/demo/backends.js';

/** Log-normal-ish latencies around `median` seconds. */
function latencies(n: number, median: number, seed: number): number[] {
  const r = rng(seed);
  return Array.from({ length: n }, () => median * Math.exp(0.25 * (r() + r() + r() - 1.5)));
}

function evidence(over: Partial<RouteEvidence> = {}): RouteEvidence {
  return {
    route: 'r',
    since: 0,
    comparisons: 1000,
    mismatches: 0,
    legacy: { requests: 1000, errors: 0, latencies: latencies(500, 0.02, 1) },
    new: { requests: 1000, errors: 0, latencies: latencies(500, 0.02, 2) },
    paired: { legacy: [], new: [] },
    ...over,
  };
}

describe('statistics', () => {
  it('wilson matches known values', () => {
    const ci = wilson(0, 200);
    expect(ci.low).toBe(0);
    expect(ci.high).toBeCloseTo(0.0188, 3);
    const mid = wilson(50, 100);
    expect(mid.low).toBeCloseTo(0.4038, 3);
    expect(mid.high).toBeCloseTo(0.5962, 3);
  });

  it('newcombe interval contains the difference', () => {
    const d = differenceInterval(30, 1000, 10, 1000);
    expect(d.diff).toBeCloseTo(0.02, 6);
    expect(d.low).toBeGreaterThan(0);
    expect(d.high).toBeGreaterThan(0.02);
  });

  it('mann-whitney: identical distributions are not significant, a shifted one is', () => {
    const a = latencies(300, 0.02, 5);
    expect(mannWhitney(a, latencies(300, 0.02, 9)).pGreater).toBeGreaterThan(0.05);
    expect(mannWhitney(a, latencies(300, 0.03, 6)).pGreater).toBeLessThan(0.001);
    // Reversed: candidate faster is not "greater".
    expect(mannWhitney(a, latencies(300, 0.01, 6)).pGreater).toBeGreaterThan(0.99);
  });

  it('hodges-lehmann estimates a pure shift', () => {
    const a = latencies(200, 0.02, 7).sort((x, y) => x - y);
    const b = a.map((x) => x + 0.005);
    expect(hodgesLehmann(a, b)).toBeCloseTo(0.005, 4);
  });
});

describe('minComparisons', () => {
  it('holds below the minimum, passes at it', () => {
    expect(minComparisonsGate(evidence({ comparisons: 199 }), DEFAULT_GATES).verdict).toBe('no_data');
    expect(minComparisonsGate(evidence({ comparisons: 200 }), DEFAULT_GATES).verdict).toBe('pass');
  });

  it('says why it holds: the requests not mirrored by reason, and the lever for the commonest', () => {
    const ws = minComparisonsGate({ ...evidence({ comparisons: 0 }), route: 'live feed', notMirrored: { sampled_out: 3, upgrade: 40 } }, DEFAULT_GATES);
    expect(ws.verdict).toBe('no_data');
    expect(ws.detail).toContain('Meanwhile 43 requests were not mirrored (upgrade 40, sampled_out 3).');
    expect(ws.detail).toContain('upgrades are never mirrored');
    expect(ws.detail).toContain('POST /api/routes/live%20feed/promote');
    const post = minComparisonsGate({ ...evidence({ comparisons: 12 }), notMirrored: { unsafe_method: 1 } }, DEFAULT_GATES);
    expect(post.detail).toContain('Meanwhile 1 request was not mirrored (unsafe_method 1). Unsafe methods are mirrored only with shadow.unsafe: true');
    // A reason the table does not know (stored evidence is read back as strings): counted, no advice.
    const odd = minComparisonsGate({ ...evidence({ comparisons: 0 }), notMirrored: { constructor: 2 } }, DEFAULT_GATES);
    expect(odd.detail).toMatch(/not mirrored \(constructor 2\)\.$/);
    // Nothing skipped, or enough comparisons: the plain sentence.
    expect(minComparisonsGate(evidence({ comparisons: 12 }), DEFAULT_GATES).detail).toBe('Only 12 of the 200 comparisons needed since the last weight change; holding.');
    expect(minComparisonsGate({ ...evidence({ comparisons: 200 }), notMirrored: { upgrade: 9 } }, DEFAULT_GATES).detail).not.toContain('not mirrored');
  });
});

describe('maxMismatchRate (Wilson upper bound)', () => {
  const grid: [number, number, string][] = [
    // comparisons, mismatches, verdict at a 1% threshold
    [100, 0, 'no_data'], // below minComparisons
    [200, 0, 'no_data'], // 0% but the upper bound (1.9%) is above 1%: not yet proven
    [1000, 0, 'pass'],
    [1000, 3, 'pass'], // 0.3%, upper 0.88%
    [1000, 8, 'no_data'], // 0.8%, upper 1.57%: straddles
    [1000, 30, 'fail'], // 3%, lower 2.1%
    [10000, 50, 'pass'],
    [10000, 150, 'fail'],
    [200, 20, 'fail'], // 10% on a small sample is still clearly above
  ];
  it.each(grid)('%i comparisons, %i mismatches -> %s', (comparisons, mismatches, verdict) => {
    const r = mismatchRateGate(evidence({ comparisons, mismatches }), DEFAULT_GATES);
    expect(r.verdict).toBe(verdict);
    expect(r.threshold).toBe(0.01);
    expect(r.detail).toMatch(/\.$/);
    if (comparisons >= 200) expect(r.value).toBeCloseTo(mismatches / comparisons, 9);
  });
});

describe('maxErrorRateIncrease', () => {
  const side = (requests: number, errors: number) => ({ requests, errors, latencies: [] });
  const grid: [number, number, number, number, string][] = [
    // legacy requests, errors, new requests, errors -> verdict at a 0.5-point margin
    [10, 0, 10, 3, 'no_data'], // tiny samples never decide, even at 30%
    [29, 0, 1000, 0, 'no_data'],
    [1000, 0, 1000, 0, 'pass'],
    [1000, 10, 1000, 13, 'pass'], // +0.3 points
    [1000, 10, 1000, 20, 'no_data'], // +1 point, not significant yet
    [5000, 50, 5000, 200, 'fail'], // +3 points, clearly
    [100, 0, 100, 30, 'fail'], // 30% errors on 100 requests is clear
    [1000, 50, 1000, 10, 'pass'], // new has fewer errors
  ];
  it.each(grid)('legacy %i/%i new %i/%i -> %s', (lr, le, nr, ne, verdict) => {
    const r = errorRateGate(evidence({ legacy: side(lr, le), new: side(nr, ne) }), DEFAULT_GATES);
    expect(r.verdict).toBe(verdict);
  });
});

describe('maxLatencyRatio (p99 ratio and Mann-Whitney with an effect size)', () => {
  it('a few slow outliers do not fail a route', () => {
    const slowTail = latencies(500, 0.02, 2);
    for (let i = 0; i < 10; i++) slowTail[i * 50] = 0.5; // 2% of requests at 500 ms
    const e = evidence({ new: { requests: 500, errors: 0, latencies: slowTail } });
    const r = latencyGate(e, DEFAULT_GATES);
    expect(r.value).toBeGreaterThan(1.5); // the p99 ratio alone would fail it
    expect(r.verdict).toBe('pass');
  });

  it('a uniformly slower distribution fails', () => {
    const e = evidence({ new: { requests: 500, errors: 0, latencies: latencies(500, 0.04, 2) } });
    const r = latencyGate(e, DEFAULT_GATES);
    expect(r.verdict).toBe('fail');
    expect(r.value).toBeGreaterThan(1.5);
    expect(r.detail).toMatch(/New is slower/);
  });

  it("a sub-millisecond shift does not fail a fast route: it is the proxy's own timing noise", () => {
    // The fresh-clone CI case: a ~0.5 ms API, new's samples 0.08 ms later at the median and with a
    // heavier tail (p99 ratio ~2.9), significant, and above 10% of legacy's median.
    const slower = latencies(500, 0.00058, 2);
    for (let i = 0; i < 10; i++) slower[i * 50] = 0.006;
    const e = evidence({ legacy: { requests: 500, errors: 0, latencies: latencies(500, 0.0005, 1) }, new: { requests: 500, errors: 0, latencies: slower } });
    const r = latencyGate(e, DEFAULT_GATES);
    expect(r.value).toBeGreaterThan(1.5);
    expect(r.detail).toMatch(/p=0\.0[0-4]/); // significant
    expect(r.verdict).toBe('pass');
    expect(r.detail).toMatch(/shift is within 1\.00 ms/);
  });

  it('a shift past a millisecond still fails a fast route', () => {
    const e = evidence({ legacy: { requests: 500, errors: 0, latencies: latencies(500, 0.0005, 1) }, new: { requests: 500, errors: 0, latencies: latencies(500, 0.002, 2) } });
    const r = latencyGate(e, DEFAULT_GATES);
    expect(r.verdict).toBe('fail');
    expect(r.detail).toMatch(/New is slower/);
  });

  it('slower but within the ratio passes', () => {
    const e = evidence({ new: { requests: 500, errors: 0, latencies: latencies(500, 0.024, 2) } });
    expect(latencyGate(e, DEFAULT_GATES).verdict).toBe('pass');
  });

  it('finds the median by selection exactly as the sorted array gives it (odd and even counts, ties)', () => {
    const r = rng(11);
    for (let t = 0; t < 500; t++) {
      const n = 1 + Math.floor(r() * 80);
      // A third of the values from a few integers: runs of ties, the partition's hard case.
      const values = Float64Array.from({ length: n }, () => (r() < 0.33 ? Math.floor(r() * 4) : r() * 10 - 5));
      const sorted = Float64Array.from(values).sort();
      expect(medianInPlace(values)).toBe(quantile(sorted, 0.5));
    }
    expect(medianInPlace(new Float64Array([7, 7, 7, 7]))).toBe(7);
    expect(medianInPlace(new Float64Array(0))).toBe(0);
  });

  it("on compared pairs: Wilcoxon's signed-rank and the paired shift", () => {
    // Five positive differences: W+ = 15, mean 7.5, variance 13.75, z = 7 / 3.708.
    expect(signedRank([1, 2, 3, 4, 5]).pGreater).toBeCloseTo(0.0295, 3);
    expect(signedRank([-1, -2, -3, -4, -5]).pGreater).toBeCloseTo(0.9845, 3); // z = (0 - 7.5 - 0.5) / 3.708
    // Zeros carry no direction; none left is no evidence either way.
    expect(signedRank([0, 0, 0]).pGreater).toBe(0.5);
    expect(pairedShift([1, 2, 3])).toBe(2);
  });

  it('judges compared pairs request by request: a slower new fails, however wide the spread of requests', () => {
    // Requests from 2 to ~60 ms; new takes each 1.8x as long as legacy did for the same request.
    const legacy = latencies(300, 0.02, 3).map((v, i) => v * (1 + (i % 3)));
    const slower = legacy.map((v) => v * 1.8);
    const same = legacy.map((v, i) => v + (i % 2 === 0 ? 0.0001 : -0.0001));
    const fail = latencyGate(evidence({ paired: { legacy, new: slower } }), DEFAULT_GATES);
    expect(fail.verdict).toBe('fail');
    expect(fail.detail).toMatch(/on compared pairs/);
    const pass = latencyGate(evidence({ paired: { legacy, new: same } }), DEFAULT_GATES);
    expect(pass.verdict).toBe('pass');
    expect(pass.detail).toMatch(/on compared pairs/);
  });

  it('fails when either comparison finds new slower: slow live answers fail a route whose pairs are fine', () => {
    const legacy = latencies(300, 0.02, 3);
    const e = evidence({ new: { requests: 500, errors: 0, latencies: latencies(500, 0.04, 2) }, paired: { legacy, new: legacy } });
    const r = latencyGate(e, DEFAULT_GATES);
    expect(r.verdict).toBe('fail');
    expect(r.detail).toMatch(/on live answers/);
  });

  it('no_data names both counts when neither comparison has enough samples', () => {
    const e = evidence({ legacy: { requests: 5, errors: 0, latencies: [0.01] }, new: { requests: 5, errors: 0, latencies: [] }, paired: { legacy: [0.01, 0.01], new: [0.02, 0.02] } });
    const r = latencyGate(e, DEFAULT_GATES);
    expect(r.verdict).toBe('no_data');
    expect(r.detail).toMatch(/compared pairs 2; live answers legacy 1, new 0/);
  });

  it('tiny samples are inconclusive', () => {
    const e = evidence({ legacy: { requests: 5, errors: 0, latencies: [0.01, 0.01, 0.01] }, new: { requests: 5, errors: 0, latencies: [1, 1, 1] } });
    expect(latencyGate(e, DEFAULT_GATES).verdict).toBe('no_data');
  });

  it('no traffic at all is no_data everywhere, never fail', () => {
    const empty = { requests: 0, errors: 0, latencies: [] };
    const results = evaluateGates({ route: 'r', since: 0, comparisons: 0, mismatches: 0, legacy: empty, new: empty, paired: { legacy: [], new: [] } }, DEFAULT_GATES);
    expect(results.map((r) => r.verdict)).toEqual(['no_data', 'no_data', 'no_data', 'no_data']);
    expect(overallVerdict(results)).toBe('no_data');
  });

  it('good evidence passes every gate', () => {
    const results = evaluateGates(evidence(), DEFAULT_GATES);
    expect(results.map((r) => [r.gate, r.verdict])).toEqual([
      ['minComparisons', 'pass'],
      ['maxMismatchRate', 'pass'],
      ['maxErrorRateIncrease', 'pass'],
      ['maxLatencyRatio', 'pass'],
    ]);
    expect(overallVerdict(results)).toBe('pass');
  });
});
