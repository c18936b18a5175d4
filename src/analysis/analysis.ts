/**
 * Where mirrored answers become evidence. For each completed pair it runs the comparison (off the
 * client path: pairs are queued and drained on setImmediate), learns noise from baseline pairs,
 * classifies each differing field as real or noise over a sliding window, and keeps per-route
 * latency histograms and a few redacted examples per field.
 *
 * Bounds: the queue (pairs waiting for comparison), the fields tracked per route, the examples per
 * field, and the window itself. What does not fit is counted, never silently dropped.
 */
import { compileRules, compareResponses, isRealDifference, redactDifference, type Captured, type CompiledRules, type Comparison, type DiffKind, type Difference, type NoiseThresholds, DEFAULT_NOISE_THRESHOLDS } from '../compare/index.js';
import type { UpstreamAnswer } from '../forward/capture.js';
import type { Route, RouteTable } from '../routing/table.js';
import type { CapturedAnswerPair } from '../shadow/pair.js';
import { OTHER_FIELD, type ComparisonResult } from '../telemetry/metrics.js';
import { LatencyHistogram } from './latency.js';

export interface AnalysisOptions {
  /** Length of the sliding window the rates are computed over. */
  windowMs: number;
  /** The window is kept as this many slices, dropped one at a time as they age out. */
  slices: number;
  /** Distinct fields tracked per route and window; more fold into `_other`. */
  maxFields: number;
  examplesPerField: number;
  /** Pairs waiting for comparison; more are dropped and counted as shadow overload. */
  queueLimit: number;
  noise: NoiseThresholds;
  now: () => number;
}

export const DEFAULT_ANALYSIS: AnalysisOptions = {
  windowMs: 5 * 60_000,
  slices: 10,
  maxFields: 200,
  examplesPerField: 5,
  queueLimit: 2_000,
  noise: DEFAULT_NOISE_THRESHOLDS,
  now: Date.now,
};


interface FieldSlice {
  mismatches: number;
  noiseHits: number;
  kinds: Partial<Record<DiffKind, number>>;
}

class Slice {
  id = -1;
  comparisons = 0;
  baselineComparisons = 0;
  results: Record<ComparisonResult, number> = { match: 0, mismatch: 0, noise: 0, error: 0 };
  fields = new Map<string, FieldSlice>();
  legacy = new LatencyHistogram();
  new = new LatencyHistogram();

  reset(id: number): void {
    this.id = id;
    this.comparisons = 0;
    this.baselineComparisons = 0;
    this.results = { match: 0, mismatch: 0, noise: 0, error: 0 };
    this.fields = new Map();
    this.legacy = new LatencyHistogram();
    this.new = new LatencyHistogram();
  }

  field(name: string): FieldSlice {
    let f = this.fields.get(name);
    if (f === undefined) {
      f = { mismatches: 0, noiseHits: 0, kinds: {} };
      this.fields.set(name, f);
    }
    return f;
  }
}

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

/** What is kept of an example until someone reads it: redaction and formatting happen on read. */
interface StoredExample {
  at: number;
  method: string;
  path: string;
  diff: Difference;
  rules: CompiledRules;
  baseline: boolean;
}

interface RouteRules {
  shadow: CompiledRules;
  /** For baseline pairs: both answers come from one backend, so no mapping or transform applies. */
  baseline: CompiledRules;
}

class RouteAnalysis {
  readonly slices: Slice[];
  readonly examples = new Map<string, StoredExample[]>();
  readonly errors: ErrorExample[] = [];
  readonly rules: RouteRules;
  /** Pairs of this route dropped because the comparison queue was full. */
  dropped = 0;

  constructor(route: Route, slices: number) {
    this.slices = Array.from({ length: slices }, () => new Slice());
    const compare = route.compare;
    this.rules = {
      shadow: compileRules(compare),
      baseline: compileRules({ ...compare, mappings: [], transform: undefined, transformPath: undefined }),
    };
  }

  live(currentId: number): Slice[] {
    const n = this.slices.length;
    return this.slices.filter((s) => s.id > currentId - n && s.id <= currentId);
  }
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
  recentErrors: ErrorExample[];
  droppedForOverload: number;
}

function ok(answer: UpstreamAnswer): boolean {
  return answer.error === undefined && answer.status > 0;
}

function captured(answer: UpstreamAnswer): Captured {
  return { status: answer.status, headers: answer.headers, body: answer.body, truncated: answer.truncated };
}

function latencyReport(h: LatencyHistogram): LatencyReport {
  return { count: h.count, p50: h.quantile(0.5), p90: h.quantile(0.9), p99: h.quantile(0.99) };
}

function ratio(a: number | null, b: number | null): number | null {
  return a === null || b === null || b === 0 ? null : a / b;
}

export class Analysis {
  private readonly options: AnalysisOptions;
  private readonly byRoute = new Map<Route, RouteAnalysis>();
  private readonly byName = new Map<string, Route>();
  private queue: CapturedAnswerPair[] = [];
  private scheduled = false;
  private readonly sliceMs: number;

  constructor(routes: RouteTable, options: Partial<AnalysisOptions> = {}) {
    this.options = { ...DEFAULT_ANALYSIS, ...options };
    this.sliceMs = Math.max(1, Math.floor(this.options.windowMs / this.options.slices));
    for (const route of routes.routes) {
      this.byRoute.set(route, new RouteAnalysis(route, this.options.slices));
      this.byName.set(route.name, route);
    }
  }

  /** Takes a completed pair; the comparison runs later, never on the caller's stack. */
  readonly submit = (pair: CapturedAnswerPair): void => {
    if (this.queue.length >= this.options.queueLimit) {
      const ra = this.byRoute.get(pair.route);
      if (ra !== undefined) ra.dropped++;
      pair.route.metrics.shadowSkipped('overload');
      return;
    }
    this.queue.push(pair);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.drain);
    }
  };

  private readonly drain = (): void => {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    for (const pair of batch) this.process(pair);
  };

  /** Pairs queued and not yet compared. */
  get pending(): number {
    return this.queue.length;
  }

  private slice(ra: RouteAnalysis): Slice {
    const id = Math.floor(this.options.now() / this.sliceMs);
    const s = ra.slices[id % ra.slices.length];
    if (s.id !== id) s.reset(id);
    return s;
  }

  private fieldName(ra: RouteAnalysis, slice: Slice, field: string): string {
    if (slice.fields.has(field) || ra.examples.has(field)) return field;
    return slice.fields.size >= this.options.maxFields ? OTHER_FIELD : field;
  }

  private rates(live: readonly Slice[], field: string): { mismatches: number; comparisons: number; noiseHits: number; baselineComparisons: number } {
    let mismatches = 0;
    let comparisons = 0;
    let noiseHits = 0;
    let baselineComparisons = 0;
    for (const s of live) {
      comparisons += s.comparisons;
      baselineComparisons += s.baselineComparisons;
      const f = s.fields.get(field);
      if (f !== undefined) {
        mismatches += f.mismatches;
        noiseHits += f.noiseHits;
      }
    }
    return { mismatches, comparisons, noiseHits, baselineComparisons };
  }

  private remember(ra: RouteAnalysis, field: string, example: StoredExample): void {
    let list = ra.examples.get(field);
    if (list === undefined) {
      if (ra.examples.size >= this.options.maxFields) return;
      list = [];
      ra.examples.set(field, list);
    }
    list.push(example);
    if (list.length > this.options.examplesPerField) list.shift();
  }

  private rememberError(ra: RouteAnalysis, pair: CapturedAnswerPair, reason: string): void {
    ra.errors.push({ at: new Date(this.options.now()).toISOString(), method: pair.method, path: pair.path, reason });
    if (ra.errors.length > this.options.examplesPerField) ra.errors.shift();
  }

  /** Compares one pair and records what it shows. Public for tests that want no event-loop hop. */
  process(pair: CapturedAnswerPair): ComparisonResult | null {
    const ra = this.byRoute.get(pair.route);
    // A client that walked away leaves an incomplete primary answer: there is nothing fair to compare.
    if (ra === undefined || pair.primary.error === 'client_aborted') return null;
    const slice = this.slice(ra);
    const legacy = pair.primaryIsNew ? pair.shadow : pair.primary;
    const candidate = pair.primaryIsNew ? pair.primary : pair.shadow;
    if (ok(legacy)) slice.legacy.observe(legacy.seconds);
    if (ok(candidate)) slice.new.observe(candidate.seconds);
    const ctx = { route: pair.route.name, method: pair.method, path: pair.path };
    const at = this.options.now();

    if (pair.baseline !== null && ok(pair.primary) && ok(pair.baseline)) {
      const base = compareResponses(captured(pair.primary), captured(pair.baseline), ra.rules.baseline, ctx);
      slice.baselineComparisons++;
      const seen = new Set<string>();
      for (const d of base.differences) {
        const name = this.fieldName(ra, slice, d.field);
        if (seen.has(name)) continue;
        seen.add(name);
        slice.field(name).noiseHits++;
        this.remember(ra, name, { at, method: pair.method, path: pair.path, diff: d, rules: ra.rules.baseline, baseline: true });
      }
    }

    slice.comparisons++;
    let comparison: Comparison;
    if (!ok(legacy) || !ok(candidate)) {
      const failed = !ok(legacy) ? 'legacy' : 'new';
      const answer = failed === 'legacy' ? legacy : candidate;
      return this.finish(ra, slice, pair, 'error', `${failed} backend ${answer.error ?? 'failed'}`);
    }
    try {
      comparison = compareResponses(captured(legacy), captured(candidate), ra.rules.shadow, ctx);
    } catch (err) {
      // compare/ is meant never to throw; if it does, the evidence says "could not compare", not "match".
      return this.finish(ra, slice, pair, 'error', `compare_failed: ${(err as Error).message}`);
    }
    if (comparison.result === 'error') return this.finish(ra, slice, pair, 'error', comparison.error ?? 'compare_error');
    if (comparison.result === 'match') return this.finish(ra, slice, pair, 'match');

    // Count every differing field first, so its rate below includes this comparison.
    const byField = new Map<string, Difference>();
    for (const d of comparison.differences) {
      const name = this.fieldName(ra, slice, d.field);
      const f = slice.field(name);
      f.kinds[d.kind] = (f.kinds[d.kind] ?? 0) + 1;
      if (!byField.has(name)) {
        byField.set(name, d);
        f.mismatches++;
        this.remember(ra, name, { at, method: pair.method, path: pair.path, diff: d, rules: ra.rules.shadow, baseline: false });
      }
    }
    let real = false;
    const live = ra.live(slice.id);
    for (const [name, d] of byField) {
      if (isRealDifference(this.rates(live, name), this.options.noise)) {
        real = true;
        pair.route.metrics.mismatchField(name, d.kind);
      }
    }
    return this.finish(ra, slice, pair, real ? 'mismatch' : 'noise');
  }

  private finish(ra: RouteAnalysis, slice: Slice, pair: CapturedAnswerPair, result: ComparisonResult, reason?: string): ComparisonResult {
    slice.results[result]++;
    pair.route.metrics.comparison(result);
    if (reason !== undefined) this.rememberError(ra, pair, reason);
    return result;
  }

  private static example(stored: StoredExample): Example {
    const r = redactDifference(stored.diff, stored.rules);
    return { at: new Date(stored.at).toISOString(), method: stored.method, path: stored.path, location: r.path, kind: r.kind, legacy: r.legacy, new: r.candidate, baseline: stored.baseline };
  }

  /** The diffs report of one route over the current window, or undefined for an unknown route. */
  diffs(routeName: string): DiffsReport | undefined {
    const route = this.byName.get(routeName);
    const ra = route && this.byRoute.get(route);
    if (route === undefined || ra === undefined) return undefined;
    const currentId = Math.floor(this.options.now() / this.sliceMs);
    const live = ra.live(currentId);
    const results: Record<ComparisonResult, number> = { match: 0, mismatch: 0, noise: 0, error: 0 };
    const legacy = new LatencyHistogram();
    const next = new LatencyHistogram();
    let comparisons = 0;
    let baselineComparisons = 0;
    const fields = new Map<string, { mismatches: number; noiseHits: number; kinds: Partial<Record<DiffKind, number>> }>();
    for (const s of live) {
      comparisons += s.comparisons;
      baselineComparisons += s.baselineComparisons;
      for (const k of Object.keys(results) as ComparisonResult[]) results[k] += s.results[k];
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
      noise: f.mismatches > 0 ? !isRealDifference({ mismatches: f.mismatches, comparisons, noiseHits: f.noiseHits, baselineComparisons }, this.options.noise) : f.noiseHits > 0,
      kinds: f.kinds,
      examples: (ra.examples.get(field) ?? []).map(Analysis.example),
    }));
    report.sort((a, b) => Number(a.noise) - Number(b.noise) || b.mismatches - a.mismatches || a.field.localeCompare(b.field));
    const l = latencyReport(legacy);
    const n = latencyReport(next);
    return {
      route: routeName,
      windowSeconds: this.options.windowMs / 1000,
      comparisons: { ...results, total: comparisons },
      baselineComparisons,
      mismatchRate: comparisons ? results.mismatch / comparisons : 0,
      latency: { legacy: l, new: n, p50Ratio: ratio(n.p50, l.p50), p99Ratio: ratio(n.p99, l.p99) },
      fields: report,
      recentErrors: [...ra.errors],
      droppedForOverload: ra.dropped,
    };
  }
}
