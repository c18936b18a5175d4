/**
 * The one place metrics are defined. Other modules get typed recorders from here and never touch
 * prom-client directly. Each app instance owns its registry, so several proxies can live in one
 * process (tests, the demo) without sharing counters.
 *
 * Hot path: label children are resolved once per route (`RouteMetrics`) and reused, because
 * `counter.labels(...)` hashes its label values on every call.
 */
import client from 'prom-client';

export type BackendName = 'legacy' | 'new';
export type Role = 'primary' | 'shadow';
export type Outcome = '2xx' | '3xx' | '4xx' | '5xx' | 'timeout' | 'error';
export type ComparisonResult = 'match' | 'mismatch' | 'noise' | 'error';
export type SkipReason = 'sampled_out' | 'unsafe_method' | 'body_too_large' | 'overload' | 'bypass' | 'shadow_down';

export const OUTCOMES: readonly Outcome[] = ['2xx', '3xx', '4xx', '5xx', 'timeout', 'error'];
const BACKENDS: readonly BackendName[] = ['legacy', 'new'];
const ROLES: readonly Role[] = ['primary', 'shadow'];
const COMPARISON_RESULTS: readonly ComparisonResult[] = ['match', 'mismatch', 'noise', 'error'];
const SKIP_REASONS: readonly SkipReason[] = ['sampled_out', 'unsafe_method', 'body_too_large', 'overload', 'bypass', 'shadow_down'];

/** Latency buckets from 1 ms to 30 s: wide enough for slow legacy APIs, fine enough for p50 of fast ones. */
export const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** At most this many distinct field labels per route; the rest are counted under `_other`. */
export const MAX_FIELDS_PER_ROUTE = 50;
const OTHER_FIELD = '_other';

/** The status class of an HTTP status, as the `outcome` label (1xx counts as success, like 2xx). */
export function outcomeOf(status: number): Outcome {
  if (status < 300) return '2xx';
  if (status < 400) return '3xx';
  if (status < 500) return '4xx';
  return '5xx';
}

type CounterChild = ReturnType<client.Counter<string>['labels']>;
type HistogramChild = ReturnType<client.Histogram<string>['labels']>;

interface Series {
  outcomes: Record<Outcome, CounterChild>;
  duration: HistogramChild;
}

/** Pre-resolved label children of one route. */
export class RouteMetrics {
  readonly route: string;
  private readonly series: Record<BackendName, Record<Role, Series>>;
  private readonly comparisons: Record<ComparisonResult, CounterChild>;
  private readonly skipped: Record<SkipReason, CounterChild>;
  private readonly weight: ReturnType<client.Gauge<string>['labels']>;
  /** Label children of cutover_mismatch_fields_total by field, then kind (bounded by MAX_FIELDS_PER_ROUTE + 1). */
  private readonly fields = new Map<string, Map<string, CounterChild>>();
  private readonly telemetry: Telemetry;

  constructor(telemetry: Telemetry, route: string) {
    this.telemetry = telemetry;
    this.route = route;
    const { requestsTotal, requestDuration, comparisonsTotal, shadowSkippedTotal, trafficWeight } = telemetry;
    const series = {} as Record<BackendName, Record<Role, Series>>;
    for (const backend of BACKENDS) {
      series[backend] = {} as Record<Role, Series>;
      for (const role of ROLES) {
        const outcomes = {} as Record<Outcome, CounterChild>;
        for (const outcome of OUTCOMES) outcomes[outcome] = requestsTotal.labels(route, backend, role, outcome);
        series[backend][role] = { outcomes, duration: requestDuration.labels(route, backend, role) };
      }
    }
    this.series = series;
    this.comparisons = Object.fromEntries(COMPARISON_RESULTS.map((r) => [r, comparisonsTotal.labels(route, r)])) as Record<ComparisonResult, CounterChild>;
    this.skipped = Object.fromEntries(SKIP_REASONS.map((r) => [r, shadowSkippedTotal.labels(route, r)])) as Record<SkipReason, CounterChild>;
    // Counters start at an exported 0: a series born at its first increment hides that increment from
    // rate(), and an error ratio needs its error series before the first error.
    for (const backend of BACKENDS) for (const role of ROLES) for (const outcome of OUTCOMES) series[backend][role].outcomes[outcome].inc(0);
    for (const r of COMPARISON_RESULTS) this.comparisons[r].inc(0);
    for (const r of SKIP_REASONS) this.skipped[r].inc(0);
    this.weight = trafficWeight.labels(route);
  }

  /** One upstream exchange finished (or failed): counts it and observes its duration in seconds. */
  request(backend: BackendName, role: Role, outcome: Outcome, seconds: number): void {
    const s = this.series[backend][role];
    s.outcomes[outcome].inc();
    s.duration.observe(seconds);
  }

  comparison(result: ComparisonResult): void {
    this.comparisons[result].inc();
  }

  shadowSkipped(reason: SkipReason): void {
    this.skipped[reason].inc();
  }

  /** Counts one mismatching field; past MAX_FIELDS_PER_ROUTE distinct fields they fold into `_other`. */
  mismatchField(field: string, kind: string): void {
    let kinds = this.fields.get(field);
    if (kinds === undefined) {
      const label = this.fields.size >= MAX_FIELDS_PER_ROUTE ? OTHER_FIELD : field;
      kinds = this.fields.get(label);
      if (kinds === undefined) {
        kinds = new Map();
        this.fields.set(label, kinds);
      }
    }
    let child = kinds.get(kind);
    if (child === undefined) {
      const label = this.fields.get(field) === kinds ? field : OTHER_FIELD;
      child = this.telemetry.mismatchFieldsTotal.labels(this.route, label, kind);
      kinds.set(kind, child);
    }
    child.inc();
  }

  setWeight(percent: number): void {
    this.weight.set(percent);
  }
}

export class Telemetry {
  readonly registry = new client.Registry();
  readonly requestsTotal = new client.Counter({
    name: 'cutover_requests_total',
    help: 'Upstream requests made by the proxy, by route, backend, role (primary: its answer went to the client; shadow: mirrored) and outcome (status class, timeout or connection error).',
    labelNames: ['route', 'backend', 'role', 'outcome'],
    registers: [this.registry],
  });
  readonly requestDuration = new client.Histogram({
    name: 'cutover_request_duration_seconds',
    help: 'Time from sending an upstream request to the end of its response body, by route, backend and role.',
    labelNames: ['route', 'backend', 'role'],
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly comparisonsTotal = new client.Counter({
    name: 'cutover_comparisons_total',
    help: 'Comparisons of a primary answer with its mirrored answer: match, mismatch (a real difference), noise (only fields that also differ between two calls to the same backend), error (could not compare).',
    labelNames: ['route', 'result'],
    registers: [this.registry],
  });
  readonly mismatchFieldsTotal = new client.Counter({
    name: 'cutover_mismatch_fields_total',
    help: 'Differing fields found by comparisons, by route, normalised field path (at most 50 per route, then _other) and kind of difference.',
    labelNames: ['route', 'field', 'kind'],
    registers: [this.registry],
  });
  readonly shadowSkippedTotal = new client.Counter({
    name: 'cutover_shadow_skipped_total',
    help: 'Requests not mirrored, by route and reason: sampled_out, unsafe_method, body_too_large, overload (too many mirrors in flight or comparisons queued), bypass, shadow_down (the shadow backend keeps failing; its circuit breaker is open).',
    labelNames: ['route', 'reason'],
    registers: [this.registry],
  });
  readonly trafficWeight = new client.Gauge({
    name: 'cutover_traffic_weight',
    help: 'Percent of live traffic (0-100) served by the new backend, by route.',
    labelNames: ['route'],
    registers: [this.registry],
  });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics !== false) client.collectDefaultMetrics({ register: this.registry });
  }

  route(name: string): RouteMetrics {
    return new RouteMetrics(this, name);
  }

  /** The Prometheus text exposition of every metric. */
  async exposition(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
