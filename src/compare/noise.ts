/**
 * Is a field's mismatch rate in shadow comparisons explained by the noise seen when the primary
 * backend is asked the same thing twice? See docs/compare.md, "Noise".
 */
import type { FieldRates, NoiseThresholds } from './types.js';

/** Diffy's default thresholds (20% relative, 0.03% absolute) plus a 95% one-sided significance test. */
export const DEFAULT_NOISE_THRESHOLDS: NoiseThresholds = Object.freeze({ relative: 0.2, absolute: 0.0003, z: 1.645 });

function count(n: number): number {
  return Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

/**
 * r = mismatches / comparisons, q = noiseHits / baselineComparisons (0 without baselines).
 * Diffy's rule: real when r > q, r − q > absolute and (r − q) / (r + q) > relative — the gap measured
 * against both rates, so r must exceed q by half again at the default 0.2 (r > 1.5·q), not merely
 * by a quarter as (r − q) / r would ask. On top of it, when the baselines have shown the field to
 * be noisy at all, the pooled two-proportion z score
 * (r − q) / √(p(1−p)(1/n₁ + 1/n₂)) reaches `z`.
 * The z test is what keeps 3 mismatches in 4 shadows against 1 noise hit in 2 baselines from being
 * called real, while 10 in 100 against 1 in 50 is. A field that never differed in any baseline has
 * shown no noise: like a field with no baselines at all, its differences are real, whatever the
 * sample size (otherwise the very first baseline would turn a real difference into "noise").
 */
export function isRealDifference(rates: FieldRates, t: NoiseThresholds = DEFAULT_NOISE_THRESHOLDS): boolean {
  const n1 = count(rates.comparisons);
  const x1 = Math.min(count(rates.mismatches), n1);
  const n2 = count(rates.baselineComparisons);
  const x2 = Math.min(count(rates.noiseHits), n2);
  if (x1 === 0) return false;
  const r = x1 / n1;
  const q = n2 === 0 ? 0 : x2 / n2;
  const gap = r - q;
  if (!(gap > t.absolute)) return false;
  if (!(gap / (r + q) > t.relative)) return false;
  // Without evidence of noise, a difference is a difference.
  if (x2 === 0) return true;
  const p = (x1 + x2) / (n1 + n2);
  const se = Math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2));
  if (se === 0) return gap > 0;
  return gap / se >= (t.z ?? DEFAULT_NOISE_THRESHOLDS.z ?? 1.645);
}
