/**
 * The one place metrics are defined. Other modules get typed recorders from here and never touch
 * prom-client directly. Each app instance owns its registry, so several proxies can live in one
 * process (tests, the demo) without sharing counters.
 *
 * Hot path: label children are resolved once per route (`RouteMetrics`) and reused, because
 * `counter.labels(...)` hashes its label values on every call.
 */
import client from 'prom-client';
import type { OutboundKind } from '../forward/shaping.js';

export type BackendName = 'legacy' | 'new';
export type Role = 'primary' | 'shadow';
export type Outcome = '2xx' | '3xx' | '4xx' | '5xx' | 'timeout' | 'error';
export type ComparisonResult = 'match' | 'mismatch' | 'noise' | 'error';
export type SkipReason = 'sampled_out' | 'unsafe_method' | 'body_too_large' | 'overload' | 'bypass' | 'shadow_down' | 'unmapped' | 'upgrade';
/** Which bound an `overload` skip hit: mirrors in flight, the comparison queue, or the busy event loop. */
export type OverloadCause = 'in_flight' | 'comparison_queue' | 'event_loop';
/**
 * Why a request was not mirrored, as decided before its live answer: a reason, or the bound an
 * overload skip hit. Counted when the live answer is whole (RouteMetrics.skip), not when decided.
 */
export type Skip = Exclude<SkipReason, 'overload'> | OverloadCause;
/** Why the proxy answered a request itself instead of forwarding it. */
export type RejectReason = 'body_too_large' | 'body_timeout' | 'body_buffer_full' | 'saturated' | 'bad_path' | 'bad_host' | 'bad_method' | 'bad_upgrade' | 'revoked' | 'draining';

export const OUTCOMES: readonly Outcome[] = ['2xx', '3xx', '4xx', '5xx', 'timeout', 'error'];
const BACKENDS: readonly BackendName[] = ['legacy', 'new'];
const ROLES: readonly Role[] = ['primary', 'shadow'];
/** Why the proxy sent an upstream request again (`cutover_upstream_retries_total{reason}`). */
export type RetryReason = 'stale_connection' | 'unauthorized';
const RETRY_REASONS: readonly RetryReason[] = ['stale_connection', 'unauthorized'];
const COMPARISON_RESULTS: readonly ComparisonResult[] = ['match', 'mismatch', 'noise', 'error'];
export const SKIP_REASONS: readonly SkipReason[] = ['sampled_out', 'unsafe_method', 'body_too_large', 'overload', 'bypass', 'shadow_down', 'unmapped', 'upgrade'];
const OVERLOAD_CAUSES: readonly OverloadCause[] = ['in_flight', 'comparison_queue', 'event_loop'];
const REJECT_REASONS: readonly RejectReason[] = ['body_too_large', 'body_timeout', 'body_buffer_full', 'saturated', 'bad_path', 'bad_host', 'bad_method', 'bad_upgrade', 'revoked', 'draining'];

/** The route's evidence log, as the metrics feed it: requests not mirrored (why a route holds), and every live answer. */
export interface EvidenceSink {
  skipped(reason: SkipReason): void;
  /**
   * One answer of a backend (`seconds` only when it succeeded). `startedAt` (epoch ms): when its
   * request was sent, so one sent before the route's last weight change is not that step's evidence.
   */
  answer(backend: BackendName, failed: boolean, seconds: number | null, startedAt?: number): void;
}

const CUTOVER_STATES = ['shadow', 'shifting', 'paused', 'rolled_back', 'complete'] as const;

export interface CutoverMetrics {
  stage(route: string, step: number): void;
  /** Sets the route's current state to 1 and every other state to 0. */
  state(route: string, current: (typeof CUTOVER_STATES)[number]): void;
  gate(route: string, gate: string, verdict: 'pass' | 'fail' | 'no_data'): void;
  rollback(route: string, reason: string): void;
}

/** Latency buckets from 1 ms to 30 s: wide enough for slow legacy APIs, fine enough for p50 of fast ones. */
export const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * Waiting for a pooled connection is usually nothing, so the queue histogram starts at 0.1 ms; when a
 * pool is short of connections it grows to the upstream's own latency and beyond.
 */
export const QUEUE_BUCKETS = [0.0001, 0.0005, ...DURATION_BUCKETS];

/** At most this many distinct field labels per route; the rest are counted under `_other`. */
export const MAX_FIELDS_PER_ROUTE = 50;
/** The field label (and analysis key) that fields past the cap fold into. */
export const OTHER_FIELD = '_other';

/** The status class of an HTTP status, as the `outcome` label (1xx counts as success, like 2xx). */
/** An answer that counts as the backend's failure: a 5xx, a timeout, a broken connection. */
export function isFailure(outcome: Outcome): boolean {
  return outcome === '5xx' || outcome === 'timeout' || outcome === 'error';
}

export function outcomeOf(status: number): Outcome {
  if (status < 300) return '2xx';
  if (status < 400) return '3xx';
  if (status < 500) return '4xx';
  return '5xx';
}

/** Status codes that keep their own label in cutover_status_pairs_total; the rest become their class. */
const EXACT_STATUSES = new Set([200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504]);

/**
 * The bounded label of a status for the status matrix: the common codes as they are, any other as
 * its class (`1xx` … `5xx`; anything else `other`), so a route has at most 23 × 23 series.
 */
export function statusLabel(status: number): string {
  if (EXACT_STATUSES.has(status)) return String(status);
  if (Number.isInteger(status) && status >= 100 && status <= 599) return `${Math.floor(status / 100)}xx`;
  return 'other';
}

/** Escapes a label value for the text exposition format. */
function escapeLabel(value: string): string {
  return /[\\"\n]/.test(value) ? value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"') : value;
}

function formatValue(v: number): string {
  if (Number.isFinite(v)) return String(v);
  return Number.isNaN(v) ? 'NaN' : v > 0 ? '+Inf' : '-Inf';
}

/** One counter or gauge series: a number the hot path bumps, and its label text rendered once. */
class Scalar {
  value = 0;
  constructor(readonly labels: string) {}
  inc(by = 1): void {
    this.value += by;
  }
  set(v: number): void {
    this.value = v;
  }
}

/** One histogram series: per-bucket counts (not cumulative; cumulated when rendered), sum and count. */
class Buckets {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: string,
    readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }
  observe(v: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && v > bounds[i]) i++;
    if (i < bounds.length) this.counts[i]++;
    this.sum += v;
    this.count++;
  }
}

/**
 * A metric family with fixed label names. Series are created once (per route, at start-up, or per
 * field on first sight) and kept by reference, so recording is a field increment: no label hashing
 * on the request path. Rendering writes the text format directly, which is several times faster than
 * prom-client's generic path and keeps a scrape's event-loop block short.
 */
class Family<S extends Scalar | Buckets> {
  private readonly byKey = new Map<string, S>();
  private readonly header: string;
  constructor(
    readonly name: string,
    help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
    private readonly labelNames: readonly string[],
    private readonly make: (labels: string) => S,
  ) {
    this.header = `# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}\n# TYPE ${name} ${type}\n`;
  }

  series(...values: string[]): S {
    const key = values.join('\u0000');
    let s = this.byKey.get(key);
    if (s === undefined) {
      s = this.make(values.map((v, i) => `${this.labelNames[i]}="${escapeLabel(v)}"`).join(','));
      this.byKey.set(key, s);
    }
    return s;
  }

  /** Forgets every series (for an info gauge whose label value changes). */
  clear(): void {
    this.byKey.clear();
  }

  /** Forgets the series whose first label has this value (a gauge of a route no longer configured). */
  forget(first: string): void {
    for (const key of this.byKey.keys()) if (key === first || key.startsWith(`${first}\u0000`)) this.byKey.delete(key);
  }

  render(): string {
    if (this.byKey.size === 0) return '';
    let out = this.header;
    const name = this.name;
    for (const s of this.byKey.values()) {
      if (s instanceof Scalar) {
        out += s.labels === '' ? `${name} ${formatValue(s.value)}\n` : `${name}{${s.labels}} ${formatValue(s.value)}\n`;
        continue;
      }
      let cumulative = 0;
      const bounds = s.bounds;
      for (let i = 0; i < s.counts.length; i++) {
        cumulative += s.counts[i];
        out += `${name}_bucket{${s.labels},le="${bounds[i]}"} ${cumulative}\n`;
      }
      out += `${name}_bucket{${s.labels},le="+Inf"} ${s.count}\n${name}_sum{${s.labels}} ${formatValue(s.sum)}\n${name}_count{${s.labels}} ${s.count}\n`;
    }
    return out;
  }
}

/** A family of counters or gauges (every family but the histograms). */
function scalarFamily(name: string, help: string, type: 'counter' | 'gauge', labelNames: readonly string[]): Family<Scalar> {
  return new Family(name, help, type, labelNames, (l) => new Scalar(l));
}

interface Series {
  outcomes: Record<Outcome, Scalar>;
  duration: Buckets;
}

/** Pre-resolved series of one route. */
export class RouteMetrics {
  readonly route: string;
  private readonly series: Record<BackendName, Record<Role, Series>>;
  private readonly comparisons: Record<ComparisonResult, Scalar>;
  private readonly skipped: Record<SkipReason, Scalar>;
  private readonly overloads: Record<OverloadCause, Scalar>;
  private readonly rejections: Record<RejectReason, Scalar>;
  /** Series of cutover_mismatch_fields_total by field, then kind (bounded by MAX_FIELDS_PER_ROUTE + 1 fields). */
  private readonly fields = new Map<string, Map<string, Scalar>>();
  /** Series of cutover_status_pairs_total, created as pairs are seen (zeroing all 529 would bloat every scrape). */
  private readonly statusPairs = new Map<string, Scalar>();
  private readonly telemetry: Telemetry;
  private evidenceSink: EvidenceSink | null = null;

  constructor(telemetry: Telemetry, route: string) {
    this.telemetry = telemetry;
    this.route = route;
    const { requestsTotal, requestDuration, comparisonsTotal, shadowSkippedTotal, trafficWeight } = telemetry;
    // Every series exists from the start, at 0: a series born at its first increment hides that
    // increment from rate(), and an error ratio needs its error series before the first error.
    const series = {} as Record<BackendName, Record<Role, Series>>;
    for (const backend of BACKENDS) {
      series[backend] = {} as Record<Role, Series>;
      for (const role of ROLES) {
        const outcomes = {} as Record<Outcome, Scalar>;
        for (const outcome of OUTCOMES) outcomes[outcome] = requestsTotal.series(route, backend, role, outcome);
        series[backend][role] = { outcomes, duration: requestDuration.series(route, backend, role) };
      }
    }
    this.series = series;
    this.comparisons = Object.fromEntries(COMPARISON_RESULTS.map((r) => [r, comparisonsTotal.series(route, r)])) as Record<ComparisonResult, Scalar>;
    this.skipped = Object.fromEntries(SKIP_REASONS.map((r) => [r, shadowSkippedTotal.series(route, r)])) as Record<SkipReason, Scalar>;
    this.overloads = Object.fromEntries(OVERLOAD_CAUSES.map((c) => [c, telemetry.shadowOverloadTotal.series(route, c)])) as Record<OverloadCause, Scalar>;
    trafficWeight.series(route);
    this.rejections = Object.fromEntries(REJECT_REASONS.map((r) => [r, telemetry.rejectedRequestsTotal.series(route, r)])) as Record<RejectReason, Scalar>;
  }

  /** The proxy answered this request itself (408, 503, 400) instead of forwarding it. */
  rejected(reason: RejectReason): void {
    this.rejections[reason].value++;
  }

  /** One upstream exchange finished (or failed): counts it and observes its duration in seconds. */
  request(backend: BackendName, role: Role, outcome: Outcome, seconds: number, startedAt?: number): void {
    const s = this.series[backend][role];
    s.outcomes[outcome].value++;
    s.duration.observe(seconds);
    // Every live answer is evidence, mirrored or not (a route's POSTs, its sampled-out requests): the
    // controller must see new failing where nothing is compared. Mirrors reach it with their pair.
    if (role === 'primary') {
      const unanswered = outcome === 'timeout' || outcome === 'error';
      this.evidenceSink?.answer(backend, isFailure(outcome), unanswered ? null : seconds, startedAt);
    }
  }

  /**
   * A live request its client gave up on before the backend answered it: not the backend's failure
   * in the counters (the client left), but in the evidence a backend that makes every client give up
   * must not look healthy. Both backends see the same impatient clients, so it compares fairly.
   */
  unanswered(backend: BackendName, startedAt?: number): void {
    this.evidenceSink?.answer(backend, true, null, startedAt);
  }

  comparison(result: ComparisonResult): void {
    this.comparisons[result].value++;
  }

  shadowSkipped(reason: SkipReason): void {
    this.skipped[reason].value++;
    this.evidenceSink?.skipped(reason);
  }

  /** A mirror skipped as `overload`, counted under that reason and under the bound it hit. */
  shadowOverload(cause: OverloadCause): void {
    this.shadowSkipped('overload');
    this.overloads[cause].value++;
  }

  /** Counts a skip decided earlier (an overload under its bound too). */
  skip(skip: Skip): void {
    if (skip in this.overloads) this.shadowOverload(skip as OverloadCause);
    else this.shadowSkipped(skip as SkipReason);
  }

  /** Where skips and live answers are told besides the counters (the route's evidence log; one per route, the last set wins). */
  observeEvidence(sink: EvidenceSink | null): void {
    this.evidenceSink = sink;
  }

  /** Counts one mismatching field; past MAX_FIELDS_PER_ROUTE distinct fields they fold into `_other`. */
  mismatchField(field: string, kind: string): void {
    let kinds = this.fields.get(field);
    let label = field;
    if (kinds === undefined) {
      if (this.fields.size >= MAX_FIELDS_PER_ROUTE) label = OTHER_FIELD;
      kinds = this.fields.get(label);
      if (kinds === undefined) {
        kinds = new Map();
        this.fields.set(label, kinds);
      }
    }
    let s = kinds.get(kind);
    if (s === undefined) {
      s = this.telemetry.mismatchFieldsTotal.series(this.route, label, kind);
      kinds.set(kind, s);
    }
    s.value++;
  }

  /** Counts one compared pair by its legacy and new status (the route's status matrix). */
  statusPair(legacy: number, next: number): void {
    const l = statusLabel(legacy);
    const n = statusLabel(next);
    const key = `${l} ${n}`;
    let s = this.statusPairs.get(key);
    if (s === undefined) {
      s = this.telemetry.statusPairsTotal.series(this.route, l, n);
      this.statusPairs.set(key, s);
    }
    s.value++;
  }

  setWeight(percent: number): void {
    // Looked up each time (weights change rarely): a route removed and added back gets its series again.
    this.telemetry.trafficWeight.series(this.route).value = percent;
  }

  /** Time a request waited for a pooled connection, before its latency timer started. */
  queued(backend: BackendName, role: Role, seconds: number): void {
    this.telemetry.queueWait[backend][role].observe(seconds);
  }
}

export type ReloadResult = 'ok' | 'error';
export type TokenFetchResult = 'ok' | 'error';
/** Where a legacy credential was found (the `scheme` label). */
export type CredentialScheme = 'header' | 'bearer' | 'basic' | 'cookie' | 'query';
export type CredentialWindow = '1h' | '24h';

/** The credential metrics: outbound token fetches, legacy credential use, and the inventory's gauge. */
export class CredentialMetrics {
  readonly tokenFetchesTotal = scalarFamily('cutover_token_fetches_total', 'Calls to a backend\'s OAuth2 token endpoint, by backend and result (ok, error).', 'counter', ['backend', 'result']);
  readonly credentialRequestsTotal = scalarFamily(
    'cutover_credential_requests_total',
    'Requests carrying a legacy credential, by route, where it was found (scheme) and the backend that served the request.',
    'counter',
    ['route', 'scheme', 'backend'],
  );
  readonly legacyActive = scalarFamily('cutover_legacy_credentials_active', 'Distinct legacy credentials seen within the window (1h, 24h).', 'gauge', ['window']);
  readonly families = [this.tokenFetchesTotal, this.credentialRequestsTotal, this.legacyActive];

  /** A recorder of one backend's token fetches; both series exist from the start, at 0. */
  tokenFetches(backend: string): (result: TokenFetchResult) => void {
    const ok = this.tokenFetchesTotal.series(backend, 'ok');
    const error = this.tokenFetchesTotal.series(backend, 'error');
    return (result) => (result === 'ok' ? ok : error).value++;
  }

  credentialRequest(route: string, scheme: CredentialScheme, backend: BackendName): void {
    this.credentialRequestsTotal.series(route, scheme, backend).value++;
  }

  setActive(window: CredentialWindow, distinct: number): void {
    this.legacyActive.series(window).value = distinct;
  }
}

export class Telemetry {
  /** prom-client's registry, for its default process and Node.js metrics only. */
  readonly registry = new client.Registry();
  readonly requestsTotal = scalarFamily(
    'cutover_requests_total',
    'Upstream requests made by the proxy, by route, backend, role (primary: its answer went to the client; shadow: mirrored) and outcome (status class, timeout or connection error).',
    'counter',
    ['route', 'backend', 'role', 'outcome'],
  );
  readonly requestDuration = new Family(
    'cutover_request_duration_seconds',
    'Time from the moment an upstream request got a pooled connection (so without queueing; see cutover_upstream_queue_seconds) to the end of its response body, by route, backend and role.',
    'histogram',
    ['route', 'backend', 'role'],
    (l) => new Buckets(l, DURATION_BUCKETS),
  );
  readonly comparisonsTotal = scalarFamily(
    'cutover_comparisons_total',
    'Comparisons of a primary answer with its mirrored answer: match, mismatch (a real difference), noise (only fields that also differ between two calls to the same backend), error (could not compare).',
    'counter',
    ['route', 'result'],
  );
  readonly mismatchFieldsTotal = scalarFamily(
    'cutover_mismatch_fields_total',
    'Differing fields found by comparisons, by route, normalised field path (at most 50 per route, then _other) and kind of difference.',
    'counter',
    ['route', 'field', 'kind'],
  );
  readonly shadowSkippedTotal = scalarFamily(
    'cutover_shadow_skipped_total',
    'Requests not mirrored, by route and reason: sampled_out, unsafe_method, body_too_large, overload (no room: see cutover_shadow_overload_total for which bound), bypass, shadow_down (the shadow backend keeps failing; its circuit breaker is open), unmapped (a credential new may not serve), upgrade (a WebSocket or other upgrade: a tunnel is never mirrored).',
    'counter',
    ['route', 'reason'],
  );
  readonly shadowOverloadTotal = scalarFamily(
    'cutover_shadow_overload_total',
    'Mirrors skipped as overload (cutover_shadow_skipped_total{reason="overload"}), by route and the bound they hit: in_flight (shadow.maxInFlight mirrors running), comparison_queue (the comparison queue full by count or shadow.compareQueueBytes), event_loop (the proxy\'s own event loop late or busy: shadow.shedAt).',
    'counter',
    ['route', 'cause'],
  );
  readonly statusPairsTotal = scalarFamily(
    'cutover_status_pairs_total',
    'Compared pairs by route and the status each backend answered (legacy, new): the common codes exactly (200, 404, …), others as their class (4xx). Series appear as pairs are seen.',
    'counter',
    ['route', 'legacy', 'new'],
  );
  readonly trafficWeight = scalarFamily('cutover_traffic_weight', 'Percent of live traffic (0-100) served by the new backend, by route.', 'gauge', ['route']);
  readonly cutoverStage = scalarFamily('cutover_stage', 'Index into cutover.steps of the step each route is at.', 'gauge', ['route']);
  readonly cutoverState = scalarFamily(
    'cutover_state',
    'Where each route is in its cutover: 1 for its current state (shadow, shifting, paused, rolled_back, complete), 0 for the others.',
    'gauge',
    ['route', 'state'],
  );
  readonly gateStatus = scalarFamily(
    'cutover_gate_status',
    "Each gate's verdict at the route's latest check: 1 pass, 0 fail, -1 inconclusive (not enough data).",
    'gauge',
    ['route', 'gate'],
  );
  readonly rollbacksTotal = scalarFamily('cutover_rollbacks_total', 'Rollbacks to step 0, by route and reason (the failing gate, or manual).', 'counter', ['route', 'reason']);
  readonly upstreamQueue = new Family(
    'cutover_upstream_queue_seconds',
    'Time an upstream request waited for a pooled connection (including connecting) before it was sent, by backend and role. Not part of cutover_request_duration_seconds.',
    'histogram',
    ['backend', 'role'],
    (l) => new Buckets(l, QUEUE_BUCKETS),
  );
  readonly configReloadsTotal = scalarFamily('cutover_config_reloads_total', 'Config reloads (SIGHUP, POST /api/reload, cutover reload) by result: ok, or error (the running config was kept).', 'counter', ['result']);
  readonly configInfo = scalarFamily('cutover_config_info', 'The loaded config, by hash of its validated content (1 for the loaded one).', 'gauge', ['hash']);
  readonly stateStoreUp = scalarFamily('cutover_state_store_up', '1 when the state store answers (its last read or write succeeded), else 0.', 'gauge', []);
  readonly rejectedRequestsTotal = scalarFamily(
    'cutover_rejected_requests_total',
    'Requests the proxy answered itself instead of forwarding, by route and reason: body_too_large (413, over listen.bodyLimit), body_timeout (408, the body came too slowly), body_buffer_full (503, too many body bytes buffered at once), saturated (503, the backend pool queue is full), bad_path (400: a path that cannot be made canonical, or a route parameter holding a separator or dot-segment), bad_host (400: two Host headers or a malformed authority), bad_method (405: TRACE on a route that does not name it), bad_upgrade (400: a non-WebSocket upgrade with a body), revoked (401: a revoked legacy credential), draining (503: arrived during shutdown).',
    'counter',
    ['route', 'reason'],
  );
  readonly adminRefusedTotal = scalarFamily(
    'cutover_admin_refused_total',
    'Admin API requests refused by the token check, by reason: unauthorized (401: no token, or one that matches none), forbidden (403: a token whose role may not do this). A rising unauthorized rate is someone guessing tokens.',
    'counter',
    ['reason'],
  );
  readonly upstreamRetriesTotal = scalarFamily(
    'cutover_upstream_retries_total',
    'Upstream requests the proxy sent again by itself, by backend, role and reason: stale_connection (a kept-alive connection the backend had closed failed the request before any answer; idempotent methods with a buffered body are sent again on another connection, as nginx does), unauthorized (the backend answered 401 to the proxy\'s OAuth2 token: the token is purged and an idempotent request sent once more with a fresh one). Each request is counted once in cutover_requests_total, with the outcome of the attempt that answered.',
    'counter',
    ['backend', 'role', 'reason'],
  );
  private readonly families = [
    this.requestsTotal,
    this.requestDuration,
    this.comparisonsTotal,
    this.mismatchFieldsTotal,
    this.shadowSkippedTotal,
    this.shadowOverloadTotal,
    this.trafficWeight,
    this.statusPairsTotal,
    this.upstreamQueue,
    this.configReloadsTotal,
    this.configInfo,
    this.stateStoreUp,
    this.cutoverStage,
    this.cutoverState,
    this.gateStatus,
    this.rollbacksTotal,
    this.rejectedRequestsTotal,
    this.adminRefusedTotal,
    this.upstreamRetriesTotal,
  ];
  readonly credentials = new CredentialMetrics();
  readonly queueWait: Record<BackendName, Record<Role, Buckets>>;
  /** One RouteMetrics per route name, so a reloaded route table keeps its field cap and series. */
  private readonly routes = new Map<string, RouteMetrics>();
  /** Run before each exposition: gauges computed from state (e.g. distinct credentials in a window). */
  private readonly collectors: (() => void)[] = [];

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics !== false) client.collectDefaultMetrics({ register: this.registry });
    this.families.push(...this.credentials.families);
    const queueWait = {} as Record<BackendName, Record<Role, Buckets>>;
    for (const backend of BACKENDS) queueWait[backend] = { primary: this.upstreamQueue.series(backend, 'primary'), shadow: this.upstreamQueue.series(backend, 'shadow') };
    this.queueWait = queueWait;
    this.configReloadsTotal.series('ok');
    this.configReloadsTotal.series('error');
    this.adminRefusedTotal.series('unauthorized');
    this.adminRefusedTotal.series('forbidden');
    for (const backend of BACKENDS) for (const role of ROLES) for (const reason of RETRY_REASONS) this.upstreamRetriesTotal.series(backend, role, reason);
  }

  /** A recorder of one backend's requests sent again for `reason`, by the kind of call. */
  retries(backend: BackendName, reason: RetryReason): (kind: OutboundKind) => void {
    const primary = this.upstreamRetriesTotal.series(backend, 'primary', reason);
    const shadow = this.upstreamRetriesTotal.series(backend, 'shadow', reason);
    return (kind) => (kind === 'mirror' || kind === 'baseline' ? shadow : primary).value++;
  }

  /** Registers a function run before every exposition, to set gauges from state. */
  onCollect(collect: () => void): void {
    this.collectors.push(collect);
  }

  /**
   * A route left the config: its gauges (weight, stage, state, gate verdicts) stop being exported, or
   * dashboards would show a ghost route at its last weight. Its counters stay: they only go up.
   */
  forgetRoute(name: string): void {
    for (const family of [this.trafficWeight, this.cutoverStage, this.cutoverState, this.gateStatus]) family.forget(name);
  }

  route(name: string): RouteMetrics {
    let metrics = this.routes.get(name);
    if (metrics === undefined) {
      metrics = new RouteMetrics(this, name);
      this.routes.set(name, metrics);
    }
    return metrics;
  }

  configReload(result: ReloadResult): void {
    this.configReloadsTotal.series(result).value++;
  }

  /** Marks `hash` as the loaded config (the previous one's series goes away). */
  setConfigInfo(hash: string): void {
    this.configInfo.clear();
    this.configInfo.series(hash).value = 1;
  }

  /** Reads the state store's health at every scrape. */
  watchStateStore(up: () => boolean): void {
    this.onCollect(() => {
      this.stateStoreUp.series().value = up() ? 1 : 0;
    });
  }

  /** The controller's recorders (stage, state, gate verdicts, rollbacks). */
  readonly cutover: CutoverMetrics = {
    stage: (route, step) => this.cutoverStage.series(route).set(step),
    state: (route, current) => {
      for (const state of CUTOVER_STATES) this.cutoverState.series(route, state).set(state === current ? 1 : 0);
    },
    gate: (route, gate, verdict) => this.gateStatus.series(route, gate).set(verdict === 'pass' ? 1 : verdict === 'fail' ? 0 : -1),
    rollback: (route, reason) => this.rollbacksTotal.series(route, reason).inc(),
  };

  /** The Prometheus text exposition of every metric: ours, then prom-client's process metrics. */
  async exposition(): Promise<string> {
    for (const collect of this.collectors) collect();
    let out = '';
    for (const family of this.families) out += family.render();
    return out + (await this.registry.metrics());
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
