/**
 * The shapes the controller, the state store, the admin levers and the analysis agree on. Types
 * only: the store implementations live in `store.ts` (memory, file; Redis later), the controller in
 * `controller.ts`, the evidence in `analysis/`.
 *
 * Everything is keyed by route *name*, never by object identity, so a config reload keeps state and
 * evidence, and so a fleet of replicas can share one store.
 */

/** Where a route is in its cutover (the `state` label of `cutover_state`). */
export type RouteStateName = 'shadow' | 'shifting' | 'paused' | 'rolled_back' | 'complete';

/** A gate's verdict: pass, fail, or not enough data to say (never a failure). */
export type GateVerdict = 'pass' | 'fail' | 'no_data';

export interface GateResult {
  gate: string;
  verdict: GateVerdict;
  /** The measured value (a rate, a ratio, a count), or null when there is no data. */
  value: number | null;
  threshold: number;
  /** One sentence a person can read: what was measured against what. */
  detail: string;
}

/** One controller check of a route. */
export interface GateCheck {
  /** Epoch ms. */
  at: number;
  gates: GateResult[];
  /** The check's overall verdict: fail if any gate failed, no_data if any had none, else pass. */
  verdict: GateVerdict;
}

/** What the store keeps per route. JSON-serialisable: the file store writes it as is. */
export interface RouteState {
  route: string;
  /** Percent of live traffic to the new backend (0–100, 0.01 resolution). */
  weight: number;
  /** Index into `cutover.steps`. */
  step: number;
  state: RouteStateName;
  /** The controller leaves this route alone until a person resumes it. */
  paused: boolean;
  /** Epoch ms of the last weight change: evidence before it does not count. */
  since: number;
  /** Consecutive passing / failing checks at the current step. */
  passes: number;
  failures: number;
  /** The latest checks, newest last, bounded. */
  history: GateCheck[];
  /** Epoch ms and who made the last change (token name, or `controller`). */
  changedAt: number;
  changedBy: string;
  reason: string;
}

/** Proxy-wide state: the emergency bypass. */
export interface GlobalState {
  bypass: boolean;
  changedAt: number;
  changedBy: string;
  reason: string;
}

export interface StoreSnapshot {
  /** Bumped on every write; a fleet store also uses it as the fencing token. */
  version: number;
  global: GlobalState;
  routes: Record<string, RouteState>;
  /** Other modules' persisted documents (the credential inventory), by key. */
  extra: Record<string, unknown>;
}

/**
 * `keepUnsaved`: whether a change is applied in memory even when it cannot be persisted (the store
 * then reads down, and its next write saves it): for changes that protect clients, such as a
 * rollback and the failing checks leading to it. Otherwise a failed write changes nothing.
 * `onUnsaved` is told the write's error when a change was kept that way, and where the store kept
 * it so that a restart keeps it too (the file store's rescue record), or null when nowhere.
 */
export interface UnsavedOptions<T> {
  keepUnsaved?: (updated: T) => boolean;
  onUnsaved?: (err: unknown, keptIn: string | null) => void;
}

/**
 * The state store. Memory and file now; Redis with a lease and a fencing token in fleet mode. Writes
 * are whole-route updates through `update`, so an implementation can make them atomic (file: temp,
 * fsync, rename; Redis: a transaction checked against the fencing token).
 */
export interface StateStore {
  readonly kind: 'memory' | 'file' | 'redis';
  /** Reads the persisted state (once at start); a missing file is a fresh state. */
  load(): Promise<StoreSnapshot>;
  /** The current state as this replica knows it (synchronous: read on the request path). */
  snapshot(): StoreSnapshot;
  /** Applies `change` to the route's state (created from `seed` when unknown) and persists it. */
  updateRoute(route: string, seed: () => RouteState, change: (current: RouteState) => RouteState, options?: UnsavedOptions<RouteState>): Promise<RouteState>;
  updateGlobal(change: (current: GlobalState) => GlobalState, options?: UnsavedOptions<GlobalState>): Promise<GlobalState>;
  setExtra(key: string, value: unknown): Promise<void>;
  /** Whether the store answers (`cutover_state_store_up`). */
  up(): boolean;
  close(): Promise<void>;
}

/** What the controller asks the analysis for: the evidence on one route since a moment. */
export interface RouteEvidence {
  route: string;
  since: number;
  comparisons: number;
  /** Comparisons with a real (non-noise) difference. */
  mismatches: number;
  /** Requests answered by each backend, and how many of those were errors (5xx, timeout, connection error). */
  /**
   * `latencies` are seconds of the backend's live answers, one per request (unbiased timers; a
   * bounded sample is fine). `requests` and `errors` count live and mirrored answers alike.
   */
  legacy: { requests: number; errors: number; latencies: number[] };
  new: { requests: number; errors: number; latencies: number[] };
  /**
   * Both backends' latency on the same compared requests, index by index (`legacy[i]` and `new[i]`
   * answered one request, live and mirror, at the same moment): the latency gate's like-for-like
   * comparison. Never mixed with `latencies`, which hold live answers only.
   */
  paired: { legacy: number[]; new: number[] };
  /**
   * Requests of the route not mirrored in the same period, by reason (`cutover_shadow_skipped_total`'s
   * reasons, those with none left out): why a route short of comparisons holds. Absent: not known.
   */
  notMirrored?: Readonly<Record<string, number>>;
}

export interface EvidenceSource {
  evidence(route: string, since: number): RouteEvidence;
}

/** The thresholds the gates judge against (`cutover.gates`, merged with `routes[].gates`). */
export interface GateThresholds {
  /** Comparisons needed before the mismatch gate judges at all. */
  minComparisons: number;
  /** Largest acceptable share of comparisons with a real difference (judged by a 95% interval). */
  maxMismatchRate: number;
  /** Largest acceptable error-rate margin of new over legacy in the same window (0.005 = 0.5 points). */
  maxErrorRateIncrease: number;
  /** Largest acceptable p99 latency ratio new / legacy (failing also needs a significant, real shift). */
  maxLatencyRatio: number;
}
