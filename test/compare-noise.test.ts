import { describe, expect, it } from 'vitest';
import { compareResponses, compileRules, DEFAULT_NOISE_THRESHOLDS, isRealDifference, type Captured } from '../src/compare/index.js';

describe('isRealDifference', () => {
  it('calls a field that differs on every call on both backends noise', () => {
    expect(isRealDifference({ mismatches: 100, comparisons: 100, noiseHits: 20, baselineComparisons: 20 })).toBe(false);
    // Even with a handful of baselines.
    expect(isRealDifference({ mismatches: 100, comparisons: 100, noiseHits: 3, baselineComparisons: 3 })).toBe(false);
  });

  it('calls a field that never differs in baselines but differs in shadows real', () => {
    expect(isRealDifference({ mismatches: 10, comparisons: 100, noiseHits: 0, baselineComparisons: 50 })).toBe(true);
    expect(isRealDifference({ mismatches: 100, comparisons: 100, noiseHits: 0, baselineComparisons: 3 })).toBe(true);
  });

  it('waits for evidence on tiny samples', () => {
    expect(isRealDifference({ mismatches: 3, comparisons: 4, noiseHits: 1, baselineComparisons: 2 })).toBe(false);
    // No noise ever seen in baselines: a difference is real even in a tiny sample.
    expect(isRealDifference({ mismatches: 1, comparisons: 2, noiseHits: 0, baselineComparisons: 2 })).toBe(true);
    expect(isRealDifference({ mismatches: 0, comparisons: 100, noiseHits: 0, baselineComparisons: 10 })).toBe(false);
  });

  it('applies the relative and absolute thresholds', () => {
    // 55% vs 50% noise: the gap is under 20% of r + q (Diffy's relative difference).
    expect(isRealDifference({ mismatches: 5500, comparisons: 10000, noiseHits: 5000, baselineComparisons: 10000 })).toBe(false);
    // 80% vs 50%: clearly above noise.
    expect(isRealDifference({ mismatches: 8000, comparisons: 10000, noiseHits: 5000, baselineComparisons: 10000 })).toBe(true);
    // 2 in a million with no noise stays under the 0.03% absolute floor.
    expect(isRealDifference({ mismatches: 2, comparisons: 1_000_000, noiseHits: 0, baselineComparisons: 1000 })).toBe(false);
    expect(isRealDifference({ mismatches: 2, comparisons: 1_000_000, noiseHits: 0, baselineComparisons: 1000 }, { relative: 0.2, absolute: 0 , z: 0 })).toBe(true);
  });

  it('treats every mismatch as real when no baselines were taken', () => {
    expect(isRealDifference({ mismatches: 1, comparisons: 1, noiseHits: 0, baselineComparisons: 0 })).toBe(true);
  });

  it('survives nonsense counts', () => {
    expect(isRealDifference({ mismatches: Number.NaN, comparisons: -1, noiseHits: 5, baselineComparisons: 0 })).toBe(false);
    expect(DEFAULT_NOISE_THRESHOLDS).toEqual({ relative: 0.2, absolute: 0.0003, z: 1.645 });
  });

  it('works with baseline comparisons from compareResponses: timestamp is noise, a planted change is real', () => {
    const rules = compileRules({ headers: [], ignoreHeaders: [], ignore: [], unordered: [], tolerance: { absolute: 0, relative: 0 }, mappings: [], sensitive: [], maxBodyBytes: 1 << 20 });
    const ctx = { route: 'r', method: 'GET', path: '/' };
    let t = 0;
    const legacy = (): Captured => ({ status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ at: ++t, total: 3 })), truncated: false });
    const candidate = (): Captured => ({ status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify({ at: ++t, total: 4 })), truncated: false });
    const shadowHits = new Map<string, number>();
    const noiseHits = new Map<string, number>();
    const n = 30;
    for (let i = 0; i < n; i++) {
      for (const d of compareResponses(legacy(), candidate(), rules, ctx).differences) shadowHits.set(d.field, (shadowHits.get(d.field) ?? 0) + 1);
      for (const d of compareResponses(legacy(), legacy(), rules, ctx).differences) noiseHits.set(d.field, (noiseHits.get(d.field) ?? 0) + 1);
    }
    const verdict = (field: string) =>
      isRealDifference({ mismatches: shadowHits.get(field) ?? 0, comparisons: n, noiseHits: noiseHits.get(field) ?? 0, baselineComparisons: n });
    expect([...shadowHits.keys()].sort()).toEqual(['$.at', '$.total']);
    expect(verdict('$.at')).toBe(false);
    expect(verdict('$.total')).toBe(true);
  });
});

describe('the documented noise rule on a grid of rates (Diffy: |r − q| / (r + q) > relative, r − q > absolute)', () => {
  const grid = Array.from({ length: 21 }, (_, i) => i / 20);
  const diffy = (r: number, q: number, t = DEFAULT_NOISE_THRESHOLDS): boolean => r > q && r - q > t.absolute && (r - q) / (r + q) > t.relative;

  it('equals Diffy on every rate pair when samples are large (the z test then never binds)', () => {
    const n = 1_000_000;
    let disagreements = 0;
    for (const r of grid) {
      for (const q of grid) {
        const got = isRealDifference({ mismatches: Math.round(r * n), comparisons: n, noiseHits: Math.round(q * n), baselineComparisons: n });
        if (got !== diffy(r, q)) disagreements++;
      }
    }
    expect(disagreements).toBe(0);
  });

  it('calls r = 0.90 against q = 0.65 at 100/100 noise, as Diffy does ((r − q) / r would have called it real)', () => {
    expect(isRealDifference({ mismatches: 90, comparisons: 100, noiseHits: 65, baselineComparisons: 100 })).toBe(false);
    expect((0.9 - 0.65) / 0.9).toBeGreaterThan(DEFAULT_NOISE_THRESHOLDS.relative);
  });

  it('at 100/100 samples only ever turns Diffy\'s "real" into "noise" (the significance test), never the reverse', () => {
    let stricter = 0;
    for (const r of grid) {
      for (const q of grid) {
        const got = isRealDifference({ mismatches: Math.round(r * 100), comparisons: 100, noiseHits: Math.round(q * 100), baselineComparisons: 100 });
        if (got) expect(diffy(r, q)).toBe(true);
        else if (diffy(r, q)) stricter++;
      }
    }
    // A few small gaps (e.g. r = 0.15 vs q = 0.05 at 100 samples each) need more evidence first.
    expect(stricter).toBeGreaterThan(0);
    expect(stricter).toBeLessThan(40);
  });
});
