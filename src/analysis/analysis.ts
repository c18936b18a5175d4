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
import { DEFAULT_NOISE_THRESHOLDS, KnownSpans, RecentPairs, type CompareState, type KnownSpansStats, type NoiseThresholds, type RecentPairsStats } from '../compare/index.js';
import { DEFAULT_COMPARE_QUEUE_BYTES } from '../config/schema.js';
import type { EvidenceSource, RouteEvidence } from '../cutover/types.js';
import type { RouteTable } from '../routing/table.js';
import type { CapturedAnswerPair } from '../shadow/pair.js';
import type { ComparisonResult } from '../telemetry/metrics.js';
import { RouteAnalysis } from './classifier.js';
import { ComparisonQueue } from './queue.js';
import { decodedPairBytes } from './size.js';
import { ComparePool, workerFile } from './workers.js';
import { buildDiffsReport, type DiffsReport } from './report.js';

export type { DiffsReport, Example, ErrorExample, FieldReport, LatencyReport } from './report.js';

export interface AnalysisOptions {
  /** How long pairs completing before a route's first baseline may wait for it (docs/compare.md, Warm-up). */
  warmupMs: number;
  /** Length of the sliding window the rates are computed over. */
  windowMs: number;
  /** The window is kept as this many slices, dropped one at a time as they age out. */
  slices: number;
  /** Distinct fields tracked per route and window; more fold into `_other`. */
  maxFields: number;
  examplesPerField: number;
  /** Pairs waiting for (or in) comparison; mirrors past it are not sent and are counted as overload. */
  queueLimit: number;
  /** Bytes of answers waiting for (or in) comparison, the same way (`shadow.compareQueueBytes`). */
  queueBytes: number;
  /** Comparison worker threads; 0 compares on the main thread (`shadow.compareWorkers`). */
  workers: number;
  /** Main-thread time per turn spent draining the queue, in milliseconds. */
  sliceMs: number;
  /**
   * Pairs smaller than this (all answers together, decoded: see size.ts) are compared on the main thread even with workers:
   * handing a few KB to a worker (structured clone, a fresh ArrayBuffer per body, two messages) costs
   * the main thread more than comparing them (measured by CPU profile: postMessage ~8% of the main
   * thread at 2.4 KB bodies, against ~13% of a worker for the comparisons themselves).
   */
  inlineBytes: number;
  /**
   * Bytes of big JSON values kept so that a value read before is recognised by a native compare
   * rather than read again (compare/known.ts): per process, split between the comparison workers.
   */
  knownBytes: number;
  /**
   * Bytes of recent pairs kept so that the next answers to a request are compared through what
   * changed since (compare/recent.ts): per thread that compares; the workers split theirs.
   */
  recentBytes: number;
  noise: NoiseThresholds;
  now: () => number;
}

export const DEFAULT_ANALYSIS: AnalysisOptions = {
  windowMs: 5 * 60_000,
  slices: 10,
  maxFields: 200,
  examplesPerField: 5,
  queueLimit: 2_000,
  queueBytes: DEFAULT_COMPARE_QUEUE_BYTES,
  workers: 0,
  sliceMs: 5,
  inlineBytes: 16 * 1024,
  knownBytes: 16 * 1024 * 1024,
  recentBytes: 4 * 1024 * 1024,
  noise: DEFAULT_NOISE_THRESHOLDS,
  now: Date.now,
  warmupMs: 5_000,
};

export class Analysis implements EvidenceSource {
  private readonly options: AnalysisOptions;
  private readonly byName = new Map<string, RouteAnalysis>();
  /**
   * Routes a reload removed, kept for a window's length for the mirrors still on their way: each is
   * still compared and counted in the route's counters (which stay exported), so requests are
   * comparisons plus skips for a removed route too. Nothing reads their window or evidence.
   */
  private readonly retired = new Map<string, { ra: RouteAnalysis; until: number }>();
  private readonly queue: ComparisonQueue;
  private readonly sliceMs: number;
  /** Null when comparing on the main thread (configured so, or no worker build to run). */
  private readonly pool: ComparePool | null;
  /** What the main thread keeps between its comparisons: big values (without workers), recent pairs. */
  private readonly state: CompareState;

  constructor(routes: RouteTable, options: Partial<AnalysisOptions> = {}) {
    this.options = { ...DEFAULT_ANALYSIS, ...options };
    this.sliceMs = Math.max(1, Math.floor(this.options.windowMs / this.options.slices));
    const file = this.options.workers > 0 ? workerFile() : null;
    this.pool = file === null ? null : new ComparePool(this.options.workers, file, this.options.knownBytes, this.options.recentBytes);
    // With workers the main thread compares only small pairs, where no value is big enough to keep.
    this.state = {
      known: this.pool === null && this.options.knownBytes > 0 ? new KnownSpans(this.options.knownBytes) : undefined,
      recent: this.options.recentBytes > 0 ? new RecentPairs(this.options.recentBytes) : undefined,
    };
    const limits = { count: this.options.queueLimit, bytes: this.options.queueBytes, sliceMs: this.options.sliceMs };
    const inline = (pair: CapturedAnswerPair): void => void this.process(pair);
    const inlineBytes = this.options.inlineBytes;
    const processor = this.pool === null ? inline : (pair: CapturedAnswerPair) => (decodedPairBytes(pair, inlineBytes) < inlineBytes ? inline(pair) : this.offload(pair));
    this.queue = new ComparisonQueue(limits, processor, (pair) => {
      const ra = this.analysisOf(pair);
      if (ra !== undefined) ra.dropped++;
      pair.route.metrics.shadowOverload('comparison_queue');
    }, this.failed);
    if (this.pool !== null) this.queue.maxRunning = this.pool.capacity;
    this.configure(routes);
  }

  /**
   * A pair whose comparison or record threw (never meant to): counted as a comparison that failed,
   * with the error as its reason, once; if recording that throws too, the pair is let go.
   */
  private readonly failed = (pair: CapturedAnswerPair, err: unknown): void => {
    const ra = this.analysisOf(pair);
    try {
      ra?.record(pair, { baseline: null, main: null, failure: `compare_failed: ${err instanceof Error ? err.message : String(err)}` });
    } catch {
      // Nothing more can be said of this pair.
    }
  };

  /** Whether comparisons of big pairs run in worker threads (false: everything on the main thread). */
  get inWorkers(): boolean {
    return this.pool !== null && this.pool.usable;
  }

  private readonly offload = async (pair: CapturedAnswerPair): Promise<void> => {
    const ra = this.analysisOf(pair);
    if (ra === undefined || this.pool === null) return;
    if (pair.primary.error === 'client_aborted') {
      ra.record(pair, { baseline: null, main: null });
      return;
    }
    // The worker compiles the settings of the snapshot the request started on; the record half runs
    // when it answers, on a turn of its own. It gets what it compares, never the request's credential.
    const { method, path, primaryIsNew, primary, shadow, baseline } = pair;
    const input = { route: pair.route.name, method, path, primaryIsNew, primary, shadow, baseline };
    const compared = this.pool.usable ? await this.pool.compare(input, pair.route.compare) : ra.compare(pair);
    ra.record(pair, compared);
  };

  /**
   * The big values kept by each thread that compares them (compare/known.ts): the main thread's
   * when it compares them, else each worker's as of its last answer (null before one).
   */
  spans(): (KnownSpansStats | null)[] {
    const known = this.state.known;
    return known !== undefined ? [known.stats()] : (this.pool?.spans() ?? []);
  }

  /**
   * Recent pairs (compare/recent.ts): the main thread's first (null when it keeps none), then each
   * worker's as of its last answer (null before one).
   */
  recentPairs(): (RecentPairsStats | null)[] {
    return [this.state.recent?.stats() ?? null, ...(this.pool?.recentPairs() ?? [])];
  }

  /** Stops the comparison workers. */
  close(): Promise<void> {
    return this.pool?.close() ?? Promise.resolve();
  }

  /**
   * Takes the routes of a (re)loaded config: known routes keep their window and evidence (each pair
   * carries the compiled rules of the config it ran under); new routes start empty; routes no longer
   * configured are forgotten (once the mirrors sent for them are compared: see `retired`).
   */
  configure(routes: RouteTable): void {
    const keep = new Set<string>();
    const now = this.options.now();
    for (const [name, { until }] of this.retired) if (until < now) this.retired.delete(name);
    for (const route of routes.routes) {
      keep.add(route.name);
      this.retired.delete(route.name);
      let ra = this.byName.get(route.name);
      if (ra === undefined) this.byName.set(route.name, (ra = new RouteAnalysis(route.name, this.options.slices, this.sliceMs, this.options)));
      // The route's skips reach its evidence, so the controller can say why a route short of comparisons holds.
      route.metrics.observeEvidence(ra.evidence);
      ra.evidenceFrom = route.metrics;
    }
    for (const [name, ra] of this.byName) {
      if (keep.has(name)) continue;
      // A route's metrics outlive it (its counters stay exported): they must not keep its evidence alive.
      ra.evidenceFrom?.observeEvidence(null);
      this.byName.delete(name);
      const retired = { ra, until: now + this.options.windowMs };
      this.retired.set(name, retired);
      // Let go at the end of its window even if no reload or pair comes to sweep it.
      setTimeout(() => {
        if (this.retired.get(name) === retired) this.retired.delete(name);
      }, this.options.windowMs).unref();
    }
  }

  /** The analysis a pair is recorded in: its route's, or a removed route's while its mirrors come back. */
  private analysisOf(pair: CapturedAnswerPair): RouteAnalysis | undefined {
    const name = pair.route.name;
    const ra = this.byName.get(name);
    if (ra !== undefined) return ra;
    const retired = this.retired.get(name);
    if (retired === undefined) return undefined;
    if (retired.until >= this.options.now()) return retired.ra;
    this.retired.delete(name);
    return undefined;
  }

  /** Takes a completed pair; the comparison runs later, never on the caller's stack. */
  readonly submit = (pair: CapturedAnswerPair): void => this.queue.submit(pair);

  /**
   * For the shadow engine: a place in the queue taken before a mirror is sent, and the pair that
   * then fills it. Bodies may move to a comparison worker once the pair is queued.
   */
  readonly reserve = (route: string): boolean => this.queue.reserve(route);
  readonly unreserve = (route: string): void => this.queue.unreserve(route);
  readonly typicalBytes = (route: string): number => this.queue.typicalBytes(route);
  readonly submitReserved = (pair: CapturedAnswerPair): void => this.queue.submit(pair, true);

  /** Pairs queued and not yet compared. */
  get pending(): number {
    return this.queue.pending;
  }

  /** Places in the comparison queue reserved for mirrors to come (held for their live answer, or sent). */
  get reservedPlaces(): number {
    return this.queue.reservedPlaces;
  }

  /** Compares one pair and records what it shows. Public for tests that want no event-loop hop. */
  process(pair: CapturedAnswerPair): ComparisonResult | null {
    const ra = this.analysisOf(pair);
    return ra === undefined ? null : ra.process(pair, this.state);
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
    if (ra === undefined) return { route, since, comparisons: 0, mismatches: 0, legacy: { requests: 0, errors: 0, latencies: [] }, new: { requests: 0, errors: 0, latencies: [] }, paired: { legacy: [], new: [] } };
    return ra.evidence.read(since);
  }
}
