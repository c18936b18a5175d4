/**
 * Turns one completed pair into evidence for its route: runs the comparison, learns noise from the
 * baseline answer, decides per differing field whether it is real or noise over the window, and
 * records latency, examples, errors and the controller's evidence.
 */
import { blankSecrets, isRealDifference, secretSpellings, withoutSecrets, type DiffKind, type Difference, type CompareState, type NoiseThresholds } from '../compare/index.js';
import type { UpstreamAnswer } from '../forward/capture.js';
import type { CapturedAnswerPair } from '../shadow/pair.js';
import { isFailure, OTHER_FIELD, statusLabel, type ComparisonResult, type RouteMetrics } from '../telemetry/metrics.js';
import { answered, comparePair, type Compared } from './compare-pair.js';
import { SAFE_METHODS } from '../shadow/methods.js';
import { RouteEvidenceLog } from './evidence.js';
import { ExampleStore } from './examples.js';
import type { ErrorExample, StoredExample } from './report.js';
import { RouteWindow, type Slice } from './window.js';

export interface ClassifierLimits {
  /** Distinct fields tracked per route and window; more fold into `_other`. */
  maxFields: number;
  examplesPerField: number;
  /** Examples older than this are dropped: they expire with the analysis window. */
  windowMs: number;
  noise: NoiseThresholds;
  now: () => number;
  /** How long pairs may wait for a route's first baseline (see `warmup`). */
  warmupMs: number;
}

/** 5xx, timeouts and connection errors: what the error-rate gate counts. */
function failed(answer: UpstreamAnswer): boolean {
  return isFailure(answer.outcome);
}

/** One differing field of a comparison: its first difference of each kind. */
interface FieldGroup {
  name: string;
  firsts: Difference[];
}

/** Differences grouped by a scan of the fields seen so far, up to this many fields; past it, by a Map. */
const GROUP_SCAN = 16;

/** Pairs that may wait for a route's first baseline. */
const WARMUP_PAIRS = 64;

const NO_BODY = Buffer.alloc(0);

/** What `record` reads of a pair once it is compared: everything but the bodies. */
function withoutBodies(pair: CapturedAnswerPair): CapturedAnswerPair {
  return {
    ...pair,
    primary: { ...pair.primary, body: NO_BODY },
    shadow: { ...pair.shadow, body: NO_BODY },
    baseline: pair.baseline === null ? null : { ...pair.baseline, body: NO_BODY },
  };
}

/** Everything the analysis keeps for one route, by route name: a config reload keeps it. */
export class RouteAnalysis {
  readonly window: RouteWindow;
  readonly examples: ExampleStore;
  readonly errors: ErrorExample[] = [];
  readonly evidence: RouteEvidenceLog;
  /** Pairs of this route dropped because the comparison queue was full. */
  dropped = 0;
  /** The route's metrics, which tell `evidence` of the route's skips (set by Analysis.configure). */
  evidenceFrom: RouteMetrics | null = null;
  /**
   * Until the route's first baseline comparison is recorded, nothing is known about noise, and a
   * field that differs on every call (a request id) would be judged real. Mirrors complete out of
   * order, so the first pair (which always carries a baseline) is often not the first to arrive:
   * the pairs that beat it wait here, bodies dropped, and are judged right after it.
   */
  private readonly warmup: { pair: CapturedAnswerPair; compared: Compared; since: number }[] = [];
  private noiseKnown = false;
  private warmupTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly name: string,
    slices: number,
    sliceMs: number,
    private readonly limits: ClassifierLimits,
  ) {
    this.window = new RouteWindow(slices, sliceMs);
    this.evidence = new RouteEvidenceLog(name, limits.now);
    // Two (field, kind) pairs per tracked field on average; past that the least recently updated goes.
    this.examples = new ExampleStore(limits.maxFields * 2, limits.examplesPerField, limits.windowMs);
  }

  private fieldName(slice: Slice, field: string): string {
    if (slice.fields.has(field) || this.examples.hasField(field)) return field;
    return slice.fields.size >= this.limits.maxFields ? OTHER_FIELD : field;
  }

  private remember(field: string, kind: DiffKind, example: StoredExample): void {
    this.examples.add(field, kind, example);
  }

  /**
   * The differences of one comparison grouped by field, each kind once: a field that is both
   * `extra` and `type` in one comparison counts once for each kind, and once as a differing field.
   * Fields in order of first difference, kinds likewise. A comparison has a few differences, so a
   * field is looked up among those seen so far; a long list gets an index.
   */
  private group(slice: Slice, differences: readonly Difference[]): FieldGroup[] {
    const groups: FieldGroup[] = [];
    let index: Map<string, FieldGroup> | null = null;
    for (const d of differences) {
      const name = this.fieldName(slice, d.field);
      let g: FieldGroup | undefined;
      if (index !== null) g = index.get(name);
      else for (let i = groups.length - 1; i >= 0 && g === undefined; i--) if (groups[i].name === name) g = groups[i];
      if (g === undefined) {
        g = { name, firsts: [d] };
        groups.push(g);
        if (index !== null) index.set(name, g);
        else if (groups.length > GROUP_SCAN) index = new Map(groups.map((x) => [x.name, x]));
      } else if (!g.firsts.some((x) => x.kind === d.kind)) g.firsts.push(d);
    }
    return groups;
  }

  /** The request's path with its own credential blanked (a key in a path segment: `/keys/<key>`). */
  private shownPath(pair: CapturedAnswerPair): string {
    const secrets = pair.secrets?.();
    return secrets === undefined || secrets.length === 0 ? pair.path : blankSecrets(pair.path, secretSpellings(secrets));
  }

  /** The differences with the request's own credential out of their fields (a key echoed as an object key). */
  private keyless(pair: CapturedAnswerPair, differences: readonly Difference[]): readonly Difference[] {
    if (pair.secrets === undefined || differences.length === 0) return differences;
    const secrets = pair.secrets();
    return secrets.length === 0 ? differences : withoutSecrets(differences, secrets);
  }

  private rememberError(pair: CapturedAnswerPair, reason: string): void {
    this.errors.push({ at: new Date(this.limits.now()).toISOString(), method: pair.method, path: this.shownPath(pair), reason });
    if (this.errors.length > this.limits.examplesPerField) this.errors.shift();
  }

  /** Compares one pair and records what it shows; null when there was nothing fair to compare. */
  process(pair: CapturedAnswerPair, state?: CompareState): ComparisonResult | null {
    return this.record(pair, this.compare(pair, state));
  }

  /**
   * The pure half: runs the comparisons with the rules of the snapshot the request started on
   * (compiled once when that config was loaded). A comparison worker runs the same code.
   */
  compare(pair: CapturedAnswerPair, state?: CompareState): Compared {
    return comparePair({ ...pair, route: this.name }, pair.route.rules, state);
  }

  /** The main-thread half: applies a pair's comparisons to the window, metrics, examples and evidence. */
  record(pair: CapturedAnswerPair, compared: Compared): ComparisonResult | null {
    // A client that walked away leaves an incomplete primary answer: there is nothing fair to compare.
    if (pair.primary.error === 'client_aborted') return null;
    // Unsafe methods are never replayed (a second POST is a second order): they have nothing to wait for.
    if (!this.noiseKnown && SAFE_METHODS.has(pair.method)) {
      // The pair that carries the first baseline ends the wait, even when that replay failed: the
      // next ones come at baselinePercent, and the wait is for the first, not for a good one.
      if (pair.baseline !== null || pair.route.shadow.baselinePercent === 0) this.noiseKnown = true;
      else if (this.warmup.length < WARMUP_PAIRS && (this.warmup.length === 0 || this.limits.now() - this.warmup[0].since < this.limits.warmupMs)) {
        if (this.warmup.length === 0) {
          // Traffic may stop before the baseline comes: what waits is judged at the deadline anyway.
          this.warmupTimer = setTimeout(() => this.endWarmup(), this.limits.warmupMs);
          this.warmupTimer.unref();
        }
        this.warmup.push({ pair: withoutBodies(pair), compared, since: this.warmup[0]?.since ?? this.limits.now() });
        return null;
      }
      const result = this.judge(pair, compared);
      this.endWarmup();
      return result;
    }
    return this.judge(pair, compared);
  }

  /** Judges what waited for the first baseline; from now on pairs are judged as they come. */
  private endWarmup(): void {
    this.noiseKnown = true;
    if (this.warmupTimer !== null) clearTimeout(this.warmupTimer);
    this.warmupTimer = null;
    for (const held of this.warmup.splice(0)) this.judge(held.pair, held.compared);
  }

  private judge(pair: CapturedAnswerPair, compared: Compared): ComparisonResult | null {
    const at = this.limits.now();
    const slice = this.window.current(at);
    const legacy = pair.primaryIsNew ? pair.shadow : pair.primary;
    const candidate = pair.primaryIsNew ? pair.primary : pair.shadow;
    if (answered(legacy)) slice.legacy.observe(legacy.seconds);
    if (answered(candidate)) slice.new.observe(candidate.seconds);
    // The live answer reached the evidence when it ended (RouteMetrics.request): only the mirror's
    // count here, and the two latencies as a pair (never the mirror's alone among live answers), only
    // for a pair asked for since the route's last weight change.
    if (this.current(pair)) {
      this.evidence.answer(pair.primaryIsNew ? 'legacy' : 'new', failed(pair.shadow), null);
      if (answered(legacy) && answered(candidate)) this.evidence.pair(legacy.seconds, candidate.seconds);
    }
    const rules = pair.route.rules;

    /** The request's path as examples show it, worked out once for the pair when it has one. */
    let shown: string | undefined;
    const base = compared.baseline;
    if (base !== null) {
      slice.baselineComparisons++;
      for (const { name, firsts } of this.group(slice, this.keyless(pair, base.differences))) {
        slice.field(name).noiseHits++;
        for (const d of firsts) this.remember(name, d.kind, { at, method: pair.method, path: (shown ??= this.shownPath(pair)), diff: d, rules: rules.baseline, baseline: true, secrets: pair.secrets?.() });
      }
    }

    slice.comparisons++;
    if (answered(legacy) && answered(candidate)) {
      const key = `${statusLabel(legacy.status)} ${statusLabel(candidate.status)}`;
      slice.statusPairs.set(key, (slice.statusPairs.get(key) ?? 0) + 1);
      pair.route.metrics.statusPair(legacy.status, candidate.status);
    }
    if (!answered(legacy) || !answered(candidate)) {
      const side = !answered(legacy) ? 'legacy' : 'new';
      const answer = side === 'legacy' ? legacy : candidate;
      return this.finish(slice, pair, 'error', `${side} backend ${answer.error ?? 'failed'}`);
    }
    const comparison = compared.main;
    // compare/ is meant never to throw; if it does, the evidence says "could not compare", not "match".
    if (comparison === null) return this.finish(slice, pair, 'error', compared.failure ?? 'compare_failed');
    if (comparison.result === 'error') return this.finish(slice, pair, 'error', comparison.error ?? 'compare_error');
    if (comparison.result === 'match') return this.finish(slice, pair, 'match');

    // Count every differing field first, so its rate below includes this comparison.
    const byField = this.group(slice, this.keyless(pair, comparison.differences));
    for (const { name, firsts } of byField) {
      const f = slice.field(name);
      f.mismatches++;
      for (const d of firsts) {
        f.kinds[d.kind] = (f.kinds[d.kind] ?? 0) + 1;
        this.remember(name, d.kind, { at, method: pair.method, path: (shown ??= this.shownPath(pair)), diff: d, rules: rules.shadow, baseline: false, secrets: pair.secrets?.() });
      }
    }
    let real = false;
    const live = this.window.live(slice.id);
    for (const { name, firsts } of byField) {
      if (isRealDifference(this.window.rates(live, name), this.limits.noise)) {
        real = true;
        for (const d of firsts) pair.route.metrics.mismatchField(name, d.kind);
      }
    }
    return this.finish(slice, pair, real ? 'mismatch' : 'noise');
  }

  /** Whether the pair was asked for since the route's last weight change (else it is not that step's evidence). */
  private current(pair: CapturedAnswerPair): boolean {
    return pair.startedAt === undefined || !this.evidence.before(pair.startedAt);
  }

  private finish(slice: Slice, pair: CapturedAnswerPair, result: ComparisonResult, reason?: string): ComparisonResult {
    slice.results[result]++;
    pair.route.metrics.comparison(result);
    // An error (a backend failed, or the answers could not be compared) is judged by the error gate, not as a mismatch.
    if (result !== 'error' && this.current(pair)) this.evidence.comparison(result === 'mismatch');
    if (reason !== undefined) this.rememberError(pair, reason);
    return result;
  }
}
