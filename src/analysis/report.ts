/**
 * The diffs report of one route over its window: comparisons by result, per-field counts by kind,
 * mismatch and noise rates, redacted examples, latency of both backends, recent errors. Redaction
 * and formatting happen here, on read, never when a pair is recorded.
 */
import { boundName, isRealDifference, redactDifference, type CompiledRules, type DiffKind, type Difference, type NoiseThresholds } from '../compare/index.js';
import type { ComparisonResult } from '../telemetry/metrics.js';
import { LatencyHistogram } from './latency.js';
import type { FieldSlice, Slice } from './window.js';

export interface Example {
  at: string;
  method: string;
  path: string;
  /** Concrete location of the difference, e.g. `$.items[3].price`. */
  location: string;
  kind: DiffKind;
  legacy?: unknown;
  new?: unknown;
  /** The example came from a baseline pair (two answers of the same backend). */
  baseline: boolean;
}

export interface ErrorExample {
  at: string;
  method: string;
  path: string;
  reason: string;
}

/** What is kept of an example until someone reads it. */
export interface StoredExample {
  at: number;
  method: string;
  path: string;
  diff: Difference;
  rules: CompiledRules;
  baseline: boolean;
  /** The request's credential values, blanked wherever they appear when the example is shown. */
  secrets?: readonly string[];
}

export interface FieldReport {
  field: string;
  mismatches: number;
  mismatchRate: number;
  noiseHits: number;
  noiseRate: number;
  /** True when the field's mismatches are explained by noise (it differs between two answers of one backend as often). */
  noise: boolean;
  kinds: Partial<Record<DiffKind, number>>;
  examples: Example[];
}

/** One cell of the status matrix: how many compared pairs had this legacy and this new status. */
export interface StatusPair {
  legacy: string;
  new: string;
  count: number;
}

export interface LatencyReport {
  count: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
}

export interface DiffsReport {
  route: string;
  windowSeconds: number;
  comparisons: Record<ComparisonResult, number> & { total: number };
  baselineComparisons: number;
  mismatchRate: number;
  latency: { legacy: LatencyReport; new: LatencyReport; p50Ratio: number | null; p99Ratio: number | null };
  fields: FieldReport[];
  /** Legacy → new status counts over the window, most frequent first (labels as in cutover_status_pairs_total). */
  statusPairs: StatusPair[];
  recentErrors: ErrorExample[];
  droppedForOverload: number;
  /** Examples left out because the answer reached its size bound (MAX_EXAMPLES_CHARS). */
  examplesOmitted: number;
}

export interface ReportInput {
  route: string;
  windowSeconds: number;
  live: readonly Slice[];
  examples: ReadonlyMap<string, readonly StoredExample[]>;
  errors: readonly ErrorExample[];
  dropped: number;
  noise: NoiseThresholds;
}

function latencyReport(h: LatencyHistogram): LatencyReport {
  return { count: h.count, p50: h.quantile(0.5), p90: h.quantile(0.9), p99: h.quantile(0.99) };
}

function ratio(a: number | null, b: number | null): number | null {
  return a === null || b === null || b === 0 ? null : a / b;
}

/** Each example value, as JSON, is cut to this many characters (a cut value becomes a string ending in "…"). */
export const MAX_EXAMPLE_VALUE_CHARS = 1024;
/** All examples of one diffs answer together (approximate JSON characters); past it fields list none. */
export const MAX_EXAMPLES_CHARS = 512 * 1024;

function boundValue(v: unknown): unknown {
  if (v === undefined) return undefined;
  const text = typeof v === 'string' ? v : JSON.stringify(v);
  if (text === undefined || text.length <= MAX_EXAMPLE_VALUE_CHARS) return v;
  return `${text.slice(0, MAX_EXAMPLE_VALUE_CHARS - 1)}…`;
}

/** A redacted example with every part bounded: an admin answer never grows with what a backend sent. */
function example(stored: StoredExample): Example {
  const r = redactDifference(stored.diff, stored.rules, stored.secrets);
  return {
    at: new Date(stored.at).toISOString(),
    method: stored.method,
    path: boundName(stored.path, MAX_EXAMPLE_VALUE_CHARS),
    location: boundName(r.path, MAX_EXAMPLE_VALUE_CHARS),
    kind: r.kind,
    legacy: boundValue(r.legacy),
    new: boundValue(r.candidate),
    baseline: stored.baseline,
  };
}

function exampleSize(e: Example): number {
  return 120 + e.path.length + e.location.length + jsonLength(e.legacy) + jsonLength(e.new);
}

function jsonLength(v: unknown): number {
  return v === undefined ? 0 : typeof v === 'string' ? v.length + 2 : (JSON.stringify(v)?.length ?? 0);
}

export function buildDiffsReport(input: ReportInput): DiffsReport {
  const results: Record<ComparisonResult, number> = { match: 0, mismatch: 0, noise: 0, error: 0 };
  const legacy = new LatencyHistogram();
  const next = new LatencyHistogram();
  let comparisons = 0;
  let baselineComparisons = 0;
  const pairs = new Map<string, number>();
  const fields = new Map<string, FieldSlice>();
  for (const s of input.live) {
    comparisons += s.comparisons;
    baselineComparisons += s.baselineComparisons;
    for (const k of Object.keys(results) as ComparisonResult[]) results[k] += s.results[k];
    for (const [k, v] of s.statusPairs) pairs.set(k, (pairs.get(k) ?? 0) + v);
    legacy.add(s.legacy);
    next.add(s.new);
    for (const [name, f] of s.fields) {
      const agg = fields.get(name) ?? { mismatches: 0, noiseHits: 0, kinds: {} };
      agg.mismatches += f.mismatches;
      agg.noiseHits += f.noiseHits;
      for (const [k, v] of Object.entries(f.kinds) as [DiffKind, number][]) agg.kinds[k] = (agg.kinds[k] ?? 0) + v;
      fields.set(name, agg);
    }
  }
  const report: FieldReport[] = [...fields].map(([field, f]) => ({
    field,
    mismatches: f.mismatches,
    mismatchRate: comparisons ? f.mismatches / comparisons : 0,
    noiseHits: f.noiseHits,
    noiseRate: baselineComparisons ? f.noiseHits / baselineComparisons : 0,
    noise: f.mismatches > 0 ? !isRealDifference({ mismatches: f.mismatches, comparisons, noiseHits: f.noiseHits, baselineComparisons }, input.noise) : f.noiseHits > 0,
    kinds: f.kinds,
    examples: [] as Example[],
  }));
  report.sort((a, b) => Number(a.noise) - Number(b.noise) || b.mismatches - a.mismatches || a.field.localeCompare(b.field));
  // Examples are rendered in report order, so the fields that matter most keep theirs within the budget.
  let budget = MAX_EXAMPLES_CHARS;
  let examplesOmitted = 0;
  for (const f of report) {
    for (const stored of input.examples.get(f.field) ?? []) {
      const e = example(stored);
      const size = exampleSize(e);
      if (size > budget) {
        examplesOmitted++;
        continue;
      }
      budget -= size;
      f.examples.push(e);
    }
  }
  const l = latencyReport(legacy);
  const n = latencyReport(next);
  return {
    route: input.route,
    windowSeconds: input.windowSeconds,
    comparisons: { ...results, total: comparisons },
    baselineComparisons,
    mismatchRate: comparisons ? results.mismatch / comparisons : 0,
    latency: { legacy: l, new: n, p50Ratio: ratio(n.p50, l.p50), p99Ratio: ratio(n.p99, l.p99) },
    fields: report,
    statusPairs: [...pairs]
      .map(([k, count]) => {
        const [l, n] = k.split(' ');
        return { legacy: l, new: n, count };
      })
      .sort((a, b) => b.count - a.count || a.legacy.localeCompare(b.legacy) || a.new.localeCompare(b.new)),
    recentErrors: input.errors.map((e) => ({ ...e, path: boundName(e.path, MAX_EXAMPLE_VALUE_CHARS), reason: boundName(e.reason, MAX_EXAMPLE_VALUE_CHARS) })),
    droppedForOverload: input.dropped,
    examplesOmitted,
  };
}
