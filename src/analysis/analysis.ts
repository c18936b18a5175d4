/**
 * Where mirrored answers become evidence. Completed pairs wait in a bounded queue (`queue.ts`) and are
 * compared off the client path; each route's `RouteAnalysis` (`classifier.ts`) learns noise, classifies
 * fields over its sliding window (`window.ts`) and keeps the controller's evidence (`evidence.ts`);
 * `report.ts` builds the diffs report on read.
 *
 * Everything is keyed by route name, so `configure()` with a reloaded route table keeps every window.
 * Bounds: the queue, the fields tracked per route, the examples per field, and the window itself. What
 * does not fit is counted, never silently dropped.
 */
import { DEFAULT_NOISE_THRESHOLDS, type NoiseThresholds } from '../compare/index.js';
import type { EvidenceSource, RouteEvidence } from '../cutover/types.js';
import type { RouteTable } from '../routing/table.js';
import type { CapturedAnswerPair } from '../shadow/pair.js';
import type { ComparisonResult } from '../telemetry/metrics.js';
import { RouteAnalysis } from './classifier.js';
import { ComparisonQueue } from './queue.js';
import { buildDiffsReport, type DiffsReport } from './report.js';

export type { DiffsReport, Example, ErrorExample, FieldReport, LatencyReport } from './report.js';

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

export class Analysis implements EvidenceSource {
  private readonly options: AnalysisOptions;
  private readonly byName = new Map<string, RouteAnalysis>();
  private readonly queue: ComparisonQueue;
  private readonly sliceMs: number;

  constructor(routes: RouteTable, options: Partial<AnalysisOptions> = {}) {
    this.options = { ...DEFAULT_ANALYSIS, ...options };
    this.sliceMs = Math.max(1, Math.floor(this.options.windowMs / this.options.slices));
    this.queue = new ComparisonQueue(this.options.queueLimit, (pair) => this.process(pair), (pair) => {
      const ra = this.byName.get(pair.route.name);
      if (ra !== undefined) ra.dropped++;
      pair.route.metrics.shadowSkipped('overload');
    });
    this.configure(routes);
  }

  /**
   * Takes the routes of a (re)loaded config: known routes keep their window and evidence (each pair
   * carries the compiled rules of the config it ran under); new routes start empty; routes no longer
   * configured are forgotten.
   */
  configure(routes: RouteTable): void {
    const keep = new Set<string>();
    for (const route of routes.routes) {
      keep.add(route.name);
      if (!this.byName.has(route.name)) this.byName.set(route.name, new RouteAnalysis(route.name, this.options.slices, this.sliceMs, this.options));
    }
    for (const name of this.byName.keys()) if (!keep.has(name)) this.byName.delete(name);
  }

  /** Takes a completed pair; the comparison runs later, never on the caller's stack. */
  readonly submit = (pair: CapturedAnswerPair): void => this.queue.submit(pair);

  /** Pairs queued and not yet compared. */
  get pending(): number {
    return this.queue.pending;
  }

  /** Compares one pair and records what it shows. Public for tests that want no event-loop hop. */
  process(pair: CapturedAnswerPair): ComparisonResult | null {
    const ra = this.byName.get(pair.route.name);
    return ra === undefined ? null : ra.process(pair);
  }

  /** The diffs report of one route over the current window, or undefined for an unknown route. */
  diffs(routeName: string): DiffsReport | undefined {
    const ra = this.byName.get(routeName);
    if (ra === undefined) return undefined;
    return buildDiffsReport({
      route: routeName,
      windowSeconds: this.options.windowMs / 1000,
      live: ra.window.live(ra.window.idAt(this.options.now())),
      examples: ra.examples.byField(this.options.now() - this.options.windowMs),
      errors: ra.errors,
      dropped: ra.dropped,
      noise: this.options.noise,
    });
  }

  /**
   * The controller's evidence on a route since `since` (its last weight change). Call it when a step
   * begins, so the log starts there; a route the analysis does not know has no evidence.
   */
  evidence(route: string, since: number): RouteEvidence {
    const ra = this.byName.get(route);
    if (ra === undefined) return { route, since, comparisons: 0, mismatches: 0, legacy: { requests: 0, errors: 0, latencies: [] }, new: { requests: 0, errors: 0, latencies: [] } };
    return ra.evidence.read(since);
  }
}
