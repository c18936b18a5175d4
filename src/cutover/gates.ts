/**
 * The gates: pure functions from a route's evidence (gathered since its last weight change) to
 * pass / fail / no_data verdicts. Shaped after Kayenta's judge: samples rather than single numbers,
 * intervals rather than point estimates, an effect size beside significance, and "no data" as its own
 * class that never fails. The controller only advances on pass and only counts fail toward a rollback.
 *
 * A rate is judged three ways: pass when its 95% interval lies within the threshold, fail when the
 * interval lies beyond it, and no_data (inconclusive: hold) while the interval still straddles it.
 */
import type { GateCheck, GateResult, GateThresholds, GateVerdict, RouteEvidence } from './types.js';
import type { SkipReason } from '../telemetry/metrics.js';

export const DEFAULT_GATES: GateThresholds = { minComparisons: 200, maxMismatchRate: 0.01, maxErrorRateIncrease: 0.005, maxLatencyRatio: 1.5 };

/** Requests each backend must have answered before their error rates are compared. */
export const MIN_REQUESTS_PER_SIDE = 30;
/** Latency samples each backend needs before the latency gate judges. */
export const MIN_LATENCY_SAMPLES = 30;
/** One-sided significance level of the Mann-Whitney test. */
export const LATENCY_ALPHA = 0.05;
/**
 * Effect-size tolerance: the Hodges-Lehmann shift of new over legacy must exceed this share of
 * legacy's median before a latency difference counts, so a few slow requests never fail a route on
 * their own.
 */
export const LATENCY_EFFECT_TOLERANCE = 0.1;
/**
 * And it must exceed this many seconds. Each sample is timed on the proxy's event loop, from the
 * socket to the answer's last byte, so it carries whatever else the loop did meanwhile (other
 * answers, a comparison, a GC pause). On a busy host that is tenths of a millisecond that are the
 * proxy's, not the backend's, and they need not land alike on both sides: a fresh-clone CI run saw
 * a sub-millisecond route rolled back on a 0.08 ms median shift (p99 5.87 ms against 2.06 ms). A
 * shift under a millisecond is below what the proxy can tell apart from its own delay, and below
 * what a client across a network would notice. The report's "clearly slower" uses the same floor.
 */
export const LATENCY_MIN_SHIFT_SECONDS = 0.001;

/** The shift (seconds) new's latency must exceed to count: `share` of legacy's median, and the floor. */
export function materialShift(legacyMedian: number, share = LATENCY_EFFECT_TOLERANCE): number {
  return Math.max(share * legacyMedian, LATENCY_MIN_SHIFT_SECONDS);
}
/** Samples per side used for the test (evenly spaced order statistics beyond that: bounded cost). */
const MAX_TEST_SAMPLES = 2_000;
const MAX_SHIFT_SAMPLES = 400;
/** Differences kept for the paired shift: ~160k Walsh averages, as many as the two-sample shift's differences. */
const MAX_PAIRED_SHIFT_SAMPLES = 565;
const Z95 = 1.959963984540054;

export interface Interval {
  low: number;
  high: number;
}

/** The 95% Wilson score interval of a proportion `x / n` (n > 0). */
export function wilson(x: number, n: number, z = Z95): Interval {
  if (n <= 0) return { low: 0, high: 1 };
  const p = x / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const center = (p + z2 / (2 * n)) / denom;
  const half = (z / denom) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return { low: Math.max(0, center - half), high: Math.min(1, center + half) };
}

/** Newcombe's hybrid score interval for the difference of two proportions `a/n - b/m`. */
export function differenceInterval(a: number, n: number, b: number, m: number): Interval & { diff: number } {
  const p1 = a / n;
  const p2 = b / m;
  const w1 = wilson(a, n);
  const w2 = wilson(b, m);
  const diff = p1 - p2;
  return {
    diff,
    low: diff - Math.sqrt((p1 - w1.low) ** 2 + (w2.high - p2) ** 2),
    high: diff + Math.sqrt((w1.high - p1) ** 2 + (p2 - w2.low) ** 2),
  };
}

/** Standard normal CDF (Abramowitz-Stegun 7.1.26 erf, error < 1.5e-7). */
export function normalCdf(z: number): number {
  const x = Math.abs(z) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * x);
  const erf = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
  return z >= 0 ? 0.5 * (1 + erf) : 0.5 * (1 - erf);
}

/** The q-quantile of an ascending array (linear interpolation), or null when empty. */
export function quantile(sorted: ArrayLike<number>, q: number): number | null {
  if (sorted.length === 0) return null;
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function ascending(values: readonly number[]): number[] {
  return values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
}

/** At most `max` evenly spaced order statistics of an ascending array: keeps its shape, bounds the cost. */
function thin(sorted: number[], max: number): number[] {
  if (sorted.length <= max) return sorted;
  const out = new Array<number>(max);
  for (let i = 0; i < max; i++) out[i] = sorted[Math.round((i * (sorted.length - 1)) / (max - 1))];
  return out;
}

export interface MannWhitney {
  /** U of `candidate` (how often a candidate sample exceeds a baseline one, ties half). */
  u: number;
  z: number;
  /** One-sided p-value for "candidate is stochastically larger than baseline". */
  pGreater: number;
}

/** Two-sample Mann-Whitney U test (normal approximation with tie correction and continuity). */
export function mannWhitney(baseline: readonly number[], candidate: readonly number[]): MannWhitney {
  const n1 = candidate.length;
  const n2 = baseline.length;
  const all = [...candidate.map((v) => ({ v, c: true })), ...baseline.map((v) => ({ v, c: false }))].sort((a, b) => a.v - b.v);
  const total = all.length;
  let rankSum = 0;
  let tieTerm = 0;
  for (let i = 0; i < total; ) {
    let j = i;
    while (j + 1 < total && all[j + 1].v === all[i].v) j++;
    const rank = (i + j + 2) / 2;
    const t = j - i + 1;
    tieTerm += t * t * t - t;
    for (let k = i; k <= j; k++) if (all[k].c) rankSum += rank;
    i = j + 1;
  }
  const u = rankSum - (n1 * (n1 + 1)) / 2;
  const mean = (n1 * n2) / 2;
  const variance = ((n1 * n2) / 12) * (total + 1 - tieTerm / (total * (total - 1)));
  if (!(variance > 0)) return { u, z: 0, pGreater: 0.5 };
  const z = (u - mean - 0.5) / Math.sqrt(variance);
  return { u, z, pGreater: 1 - normalCdf(z) };
}

/**
 * The median of `values` (the mean of the two middle ones for an even count, as `quantile(…, 0.5)`
 * of the sorted array), found by selection: reorders `values`, O(n) on average. The shift
 * estimates below take the median of ~160k numbers on the proxy's event loop at every controller
 * check of every route; sorting them took ~10 ms each.
 */
export function medianInPlace(values: Float64Array): number {
  const n = values.length;
  if (n === 0) return 0;
  const k = (n - 1) >> 1;
  let lo = 0;
  let hi = n - 1;
  while (hi > lo) {
    // Hoare partition around the median of three.
    const mid = (lo + hi) >> 1;
    const a = values[lo];
    const b = values[mid];
    const c = values[hi];
    const pivot = a < b ? (b < c ? b : a < c ? c : a) : a < c ? a : b < c ? c : b;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (values[i] < pivot) i++;
      while (values[j] > pivot) j--;
      if (i <= j) {
        const t = values[i];
        values[i] = values[j];
        values[j] = t;
        i++;
        j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break; // values[j+1 .. i-1] all equal the pivot, which is the k-th
  }
  const low = values[k];
  if (n % 2 === 1) return low;
  // The next order statistic: the smallest of what lies after k (all of it ≥ values[k]).
  let next = Infinity;
  for (let i = k + 1; i < n; i++) if (values[i] < next) next = values[i];
  return low + (next - low) * 0.5; // as quantile() interpolates: bit for bit the value sorting gave
}

/** Hodges-Lehmann estimate of the shift candidate − baseline: the median of all pairwise differences. */
export function hodgesLehmann(baselineSorted: number[], candidateSorted: number[]): number {
  const a = thin(baselineSorted, MAX_SHIFT_SAMPLES);
  const b = thin(candidateSorted, MAX_SHIFT_SAMPLES);
  const diffs = new Float64Array(a.length * b.length);
  let k = 0;
  for (const y of b) for (const x of a) diffs[k++] = y - x;
  return medianInPlace(diffs);
}

/**
 * Wilcoxon's signed-rank test on paired differences (candidate − baseline of one request each):
 * the one-sided p-value for "candidate is slower", normal approximation with the tie correction and
 * continuity. Zero differences carry no direction and are left out (Wilcoxon's own rule).
 */
export function signedRank(differences: readonly number[]): { z: number; pGreater: number } {
  const d = differences.filter((v) => v !== 0 && Number.isFinite(v)).sort((x, y) => Math.abs(x) - Math.abs(y));
  const n = d.length;
  if (n === 0) return { z: 0, pGreater: 0.5 };
  let positive = 0;
  let tieTerm = 0;
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && Math.abs(d[j + 1]) === Math.abs(d[i])) j++;
    const rank = (i + j + 2) / 2;
    const t = j - i + 1;
    tieTerm += t * t * t - t;
    for (let k = i; k <= j; k++) if (d[k] > 0) positive += rank;
    i = j + 1;
  }
  const mean = (n * (n + 1)) / 4;
  const variance = (n * (n + 1) * (2 * n + 1)) / 24 - tieTerm / 48;
  if (!(variance > 0)) return { z: 0, pGreater: 0.5 };
  const z = (positive - mean - 0.5) / Math.sqrt(variance);
  return { z, pGreater: 1 - normalCdf(z) };
}

/** The paired Hodges-Lehmann shift: the median of the Walsh averages (d_i + d_j) / 2, i ≤ j, of the differences. */
export function pairedShift(differencesSorted: number[]): number {
  const d = thin(differencesSorted, MAX_PAIRED_SHIFT_SAMPLES);
  const n = d.length;
  if (n === 0) return 0;
  const walsh = new Float64Array((n * (n + 1)) / 2);
  let k = 0;
  for (let i = 0; i < n; i++) for (let j = i; j < n; j++) walsh[k++] = (d[i] + d[j]) / 2;
  return medianInPlace(walsh);
}

function pct(rate: number): string {
  return `${(rate * 100).toFixed(rate < 0.001 && rate > 0 ? 3 : 2)}%`;
}

function ms(seconds: number | null): string {
  return seconds === null ? 'n/a' : `${(seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1)} ms`;
}

/** What an operator can do about the commonest reason a route's requests were not mirrored (one per reason). */
const SKIP_ADVICE: Readonly<Record<SkipReason, string>> = {
  upgrade:
    'WebSocket and other upgrades are never mirrored (a tunnel cannot be replayed to a second backend), so a route that carries only them gathers no comparisons: judge it by its live outcomes and promote it by hand (POST /api/routes/{route}/promote).',
  unsafe_method: 'Unsafe methods are mirrored only with shadow.unsafe: true (for a new backend that may receive writes twice).',
  sampled_out: 'Raise the route\'s shadow.percent to gather comparisons sooner.',
  overload: 'The proxy had no room for mirrors (cutover_shadow_overload_total says which bound): give it CPU or lower shadow.percent.',
  shadow_down: 'The mirror target keeps failing, so its circuit breaker is open: see its errors (cutover_requests_total, role shadow).',
  body_too_large: 'Bodies are over shadow.maxBodyBytes, or answers over compare.maxBodyBytes.',
  unmapped: 'Credentials new may not serve (unmapped, or refused by legacy) are not mirrored: map them (credentials.mappings).',
  bypass: 'Bypass is on: nothing is mirrored until it is turned off (POST /api/bypass).',
};

/** Why a route short of comparisons holds, from its requests not mirrored since the step began. */
function notMirroredDetail(e: RouteEvidence): string {
  const reasons = Object.entries(e.notMirrored ?? {}).sort((a, b) => b[1] - a[1]);
  if (reasons.length === 0) return '';
  const total = reasons.reduce((sum, [, n]) => sum + n, 0);
  const [top] = reasons[0];
  // Reasons come from stored evidence as strings: only the table's own keys have advice.
  const advice = Object.hasOwn(SKIP_ADVICE, top) ? SKIP_ADVICE[top as SkipReason].replace('{route}', encodeURIComponent(e.route)) : undefined;
  return ` Meanwhile ${total} request${total === 1 ? ' was' : 's were'} not mirrored (${reasons.map(([r, n]) => `${r} ${n}`).join(', ')}).${advice === undefined ? '' : ` ${advice}`}`;
}

export function minComparisonsGate(e: RouteEvidence, t: GateThresholds): GateResult {
  const enough = e.comparisons >= t.minComparisons;
  return {
    gate: 'minComparisons',
    verdict: enough ? 'pass' : 'no_data',
    value: e.comparisons,
    threshold: t.minComparisons,
    detail: enough
      ? `${e.comparisons} comparisons since the last weight change, at least the ${t.minComparisons} needed.`
      : `Only ${e.comparisons} of the ${t.minComparisons} comparisons needed since the last weight change; holding.${notMirroredDetail(e)}`,
  };
}

export function mismatchRateGate(e: RouteEvidence, t: GateThresholds): GateResult {
  const base = { gate: 'maxMismatchRate', threshold: t.maxMismatchRate };
  if (e.comparisons < Math.max(1, t.minComparisons)) {
    return { ...base, verdict: 'no_data', value: null, detail: `Not judged below ${t.minComparisons} comparisons (${e.comparisons} so far).` };
  }
  const rate = e.mismatches / e.comparisons;
  const ci = wilson(e.mismatches, e.comparisons);
  const range = `${pct(rate)} (95% interval ${pct(ci.low)}–${pct(ci.high)}, ${e.mismatches} of ${e.comparisons}, noise excluded)`;
  let verdict: GateVerdict;
  let detail: string;
  if (ci.high <= t.maxMismatchRate) {
    verdict = 'pass';
    detail = `Mismatch rate ${range} is within ${pct(t.maxMismatchRate)}.`;
  } else if (ci.low > t.maxMismatchRate) {
    verdict = 'fail';
    detail = `Mismatch rate ${range} is above ${pct(t.maxMismatchRate)} even at its lower bound.`;
  } else {
    verdict = 'no_data';
    detail = `Mismatch rate ${range} straddles ${pct(t.maxMismatchRate)}; holding for more comparisons.`;
  }
  return { ...base, verdict, value: rate, detail };
}

export function errorRateGate(e: RouteEvidence, t: GateThresholds): GateResult {
  const base = { gate: 'maxErrorRateIncrease', threshold: t.maxErrorRateIncrease };
  const { legacy, new: cand } = e;
  if (legacy.requests < MIN_REQUESTS_PER_SIDE || cand.requests < MIN_REQUESTS_PER_SIDE) {
    return {
      ...base,
      verdict: 'no_data',
      value: null,
      detail: `Not judged below ${MIN_REQUESTS_PER_SIDE} requests per backend (legacy ${legacy.requests}, new ${cand.requests}).`,
    };
  }
  const ci = differenceInterval(cand.errors, cand.requests, legacy.errors, legacy.requests);
  const rates = `new ${pct(cand.errors / cand.requests)} vs legacy ${pct(legacy.errors / legacy.requests)}`;
  // Fail only on a confident increase (the interval's lower bound beyond the margin); pass on a point
  // estimate within the margin, since the mismatch gate already demands plenty of evidence.
  let verdict: GateVerdict;
  let detail: string;
  if (ci.low > t.maxErrorRateIncrease) {
    verdict = 'fail';
    detail = `Error rate ${rates}: an increase of at least ${pct(ci.low)} (95%), beyond the ${pct(t.maxErrorRateIncrease)} margin.`;
  } else if (ci.diff <= t.maxErrorRateIncrease) {
    verdict = 'pass';
    detail = `Error rate ${rates}: the increase ${pct(Math.max(0, ci.diff))} is within the ${pct(t.maxErrorRateIncrease)} margin.`;
  } else {
    verdict = 'no_data';
    detail = `Error rate ${rates}: the increase ${pct(ci.diff)} is above the margin but not yet significant; holding.`;
  }
  return { ...base, verdict, value: ci.diff, detail };
}

/**
 * What the latency gate compares. `paired`: both backends' latency for the same compared requests
 * (the live answer and its mirror), so the two sides see one mix of requests at the same moments.
 * `live`: the live answers of each backend, split by the route's weight, which also covers what is
 * never mirrored (unsafe methods, sampled-out requests). Live answers are never set against mirror
 * answers: mirrors are only safe methods and are shed when the proxy is busy, so such a comparison
 * measures the mix and the moment, not the backend (a route at a high weight, with slow POSTs on
 * both backends, read new as slower).
 */
export type LatencyBasis = 'paired' | 'live';

export interface LatencySummary {
  basis: LatencyBasis;
  legacy: { p50: number | null; p99: number | null; count: number };
  new: { p50: number | null; p99: number | null; count: number };
  p99Ratio: number | null;
  /** Hodges-Lehmann shift new − legacy (seconds) and the one-sided p-value (signed-rank on pairs, Mann-Whitney on live answers). */
  shift: number | null;
  pSlower: number | null;
}

function summary(basis: LatencyBasis, legacy: readonly number[], candidate: readonly number[], test: (a: number[], b: number[]) => { shift: number; pSlower: number }): LatencySummary {
  const a = ascending(legacy);
  const b = ascending(candidate);
  const lp99 = quantile(a, 0.99);
  const np99 = quantile(b, 0.99);
  const tested = a.length >= MIN_LATENCY_SAMPLES && b.length >= MIN_LATENCY_SAMPLES ? test(a, b) : null;
  return {
    basis,
    legacy: { p50: quantile(a, 0.5), p99: lp99, count: a.length },
    new: { p50: quantile(b, 0.5), p99: np99, count: b.length },
    p99Ratio: lp99 !== null && np99 !== null && lp99 > 0 ? np99 / lp99 : null,
    shift: tested?.shift ?? null,
    pSlower: tested?.pSlower ?? null,
  };
}

/** Both comparisons, compared pairs first. */
export function latencySummaries(e: RouteEvidence): [LatencySummary, LatencySummary] {
  const p = e.paired;
  const differences: number[] = [];
  for (let i = 0; i < p.legacy.length && i < p.new.length; i++) if (Number.isFinite(p.legacy[i]) && Number.isFinite(p.new[i])) differences.push(p.new[i] - p.legacy[i]);
  const paired = summary('paired', p.legacy, p.new, () => ({
    shift: pairedShift(differences.sort((x, y) => x - y)),
    pSlower: signedRank(differences).pGreater,
  }));
  const live = summary('live', e.legacy.latencies, e.new.latencies, (a, b) => ({
    shift: hodgesLehmann(a, b),
    pSlower: mannWhitney(thin(a, MAX_TEST_SAMPLES), thin(b, MAX_TEST_SAMPLES)).pGreater,
  }));
  return [paired, live];
}

/** The comparison to show: compared pairs when there are enough of them, else the live answers. */
export function shownLatency([paired, live]: readonly [LatencySummary, LatencySummary]): LatencySummary {
  return paired.pSlower !== null || live.pSlower === null ? paired : live;
}

export const LATENCY_BASIS_WORDS: Readonly<Record<LatencyBasis, string>> = { paired: 'on compared pairs', live: 'on live answers' };

/** A comparison with enough samples on both sides to be judged. */
type JudgedLatency = LatencySummary & { shift: number; pSlower: number; p99Ratio: number };

function judged(s: LatencySummary): s is JudgedLatency {
  return s.shift !== null && s.pSlower !== null && s.p99Ratio !== null;
}

/** One comparison's verdict: fail when p99 is above the ratio, the difference significant and the shift material. */
function judgeLatency(s: JudgedLatency, t: GateThresholds): GateResult {
  const base = { gate: 'maxLatencyRatio', threshold: t.maxLatencyRatio };
  const significant = s.pSlower < LATENCY_ALPHA;
  const minShift = materialShift(s.legacy.p50 ?? 0);
  const head = `p99 new ${ms(s.new.p99)} vs legacy ${ms(s.legacy.p99)} (ratio ${s.p99Ratio.toFixed(2)}), median shift ${ms(s.shift)} (p=${s.pSlower.toFixed(3)}) ${LATENCY_BASIS_WORDS[s.basis]}`;
  if (s.p99Ratio > t.maxLatencyRatio && significant && s.shift > minShift) {
    return { ...base, verdict: 'fail', value: s.p99Ratio, detail: `New is slower: ${head}, above ${t.maxLatencyRatio} and significant.` };
  }
  const why = s.p99Ratio <= t.maxLatencyRatio ? `within ${t.maxLatencyRatio}` : significant ? `but the shift is within ${ms(minShift)} (${LATENCY_EFFECT_TOLERANCE * 100}% of legacy's median, at least ${ms(LATENCY_MIN_SHIFT_SECONDS)})` : 'but the distributions do not differ significantly';
  return { ...base, verdict: 'pass', value: s.p99Ratio, detail: `Latency ${head}, ${why}.` };
}

/**
 * Fails when either comparison finds new slower (p99 above the ratio, significant, and a material
 * shift); passes when at least one could judge and none failed (its detail that of compared pairs
 * when they were judged); no_data when neither has `MIN_LATENCY_SAMPLES` per side.
 */
export function latencyGate(e: RouteEvidence, t: GateThresholds, summaries = latencySummaries(e)): GateResult {
  const verdicts = summaries.filter(judged).map((s) => judgeLatency(s, t));
  if (verdicts.length > 0) return verdicts.find((v) => v.verdict === 'fail') ?? verdicts[0];
  const [paired, live] = summaries;
  return {
    gate: 'maxLatencyRatio',
    threshold: t.maxLatencyRatio,
    verdict: 'no_data',
    value: paired.p99Ratio ?? live.p99Ratio,
    detail:
      `Not judged below ${MIN_LATENCY_SAMPLES} latency samples per backend ` +
      `(compared pairs ${paired.legacy.count}; live answers legacy ${live.legacy.count}, new ${live.new.count}).`,
  };
}

/** Every gate on one route's evidence. */
export function evaluateGates(e: RouteEvidence, t: GateThresholds): GateResult[] {
  return [minComparisonsGate(e, t), mismatchRateGate(e, t), errorRateGate(e, t), latencyGate(e, t)];
}

/** fail if any gate failed, no_data if any had none, else pass. */
export function overallVerdict(results: readonly GateResult[]): GateVerdict {
  if (results.some((r) => r.verdict === 'fail')) return 'fail';
  if (results.some((r) => r.verdict === 'no_data')) return 'no_data';
  return 'pass';
}

export function check(at: number, e: RouteEvidence, t: GateThresholds): GateCheck {
  const gates = evaluateGates(e, t);
  return { at, gates, verdict: overallVerdict(gates) };
}
