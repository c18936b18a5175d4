/**
 * Evidence for the controller: what one route's comparisons showed since a moment (the route's last
 * weight change), never older traffic. Kept apart from the sliding window because the window's
 * slices are coarse (30 s) and a step's evidence must start at the step.
 *
 * Counts are kept per second, and latency samples carry their time, so `read(since)` answers for any
 * `since` after the log's start, even one the controller asks about late (a step taken at t, checked
 * first at t + 30 s, still sees the 30 s in between). Reading with a later `since` than before also
 * forgets what came earlier, which keeps the log bounded by one step. Bounds: at most
 * `MAX_SECONDS` per-second buckets (older ones fold into one carried total, used only when the whole
 * log is asked for), and a reservoir of latency samples per backend.
 *
 * Requests not mirrored are counted by reason, in the same per-second buckets, so a route that holds
 * for want of comparisons can say why (sampled out, unsafe methods, upgrades, overload...).
 *
 * Latency samples are bounded reservoirs (uniform over the period), so a two-sample test sees the
 * distributions, not a single quantile: one per backend of its live answers, and one of compared
 * pairs (both backends' latency on the same request). A mirror's latency is only ever kept with its
 * live answer's: mirrors are safe methods only and are shed when the proxy is busy, so set against
 * live answers they would measure the mix and the moment (see the latency gate, cutover/gates.ts).
 * They are upstream latencies from the moment a request got a pooled connection
 * (`forward/exchange.ts`), so pool queueing never biases them.
 */
import type { RouteEvidence } from '../cutover/types.js';
import { SKIP_REASONS, type EvidenceSink, type SkipReason } from '../telemetry/metrics.js';

export const EVIDENCE_SAMPLES = 2_000;
/** Per-second buckets kept before the oldest fold into a carried total (one hour). */
export const MAX_SECONDS = 3_600;

interface Sample {
  at: number;
  seconds: number;
}

interface PairSample {
  at: number;
  legacy: number;
  new: number;
}

class Reservoir<T extends { at: number }> {
  samples: T[] = [];
  private seen = 0;

  constructor(
    private readonly size: number,
    private readonly random: () => number,
  ) {}

  add(sample: T): void {
    this.seen++;
    if (this.samples.length < this.size) this.samples.push(sample);
    else {
      const j = Math.floor(this.random() * this.seen);
      if (j < this.size) this.samples[j] = sample;
    }
  }

  /** Keeps only samples from `since` to `now`; they stay a uniform sample of that shorter period. */
  keepBetween(since: number, now: number): void {
    this.samples = this.samples.filter((s) => s.at >= since && s.at <= now);
    this.seen = this.samples.length;
  }
}

/** What happened in one second (or, for the carried total, before the kept seconds). */
class Counts {
  comparisons = 0;
  mismatches = 0;
  legacyRequests = 0;
  legacyErrors = 0;
  newRequests = 0;
  newErrors = 0;
  /** Requests not mirrored, by index in SKIP_REASONS; only made in a second that has some. */
  skips: number[] | null = null;

  add(o: Counts): void {
    this.comparisons += o.comparisons;
    this.mismatches += o.mismatches;
    this.legacyRequests += o.legacyRequests;
    this.legacyErrors += o.legacyErrors;
    this.newRequests += o.newRequests;
    this.newErrors += o.newErrors;
    if (o.skips !== null) {
      const skips = (this.skips ??= new Array<number>(SKIP_REASONS.length).fill(0));
      for (let i = 0; i < skips.length; i++) skips[i] += o.skips[i];
    }
  }
}

const SKIP_INDEX = Object.fromEntries(SKIP_REASONS.map((r, i) => [r, i])) as Record<SkipReason, number>;

/** How far below the wall clock's now the start goes when the clock stepped back under it. */
const CLOCK_BACK_MARGIN_MS = 60_000;

export class RouteEvidenceLog implements EvidenceSink {
  /** Where the log counts from: the start asked for, or the wall clock's now if that went back below it. */
  private since = 0;
  /** The latest start asked for (a later one restarts the log). */
  private asked = 0;
  /** Counts by second (epoch ms / 1000, floored), in insertion order. */
  private seconds = new Map<number, Counts>();
  /** Counts of seconds folded out of `seconds` because of its bound. */
  private carried = new Counts();
  private legacy: Reservoir<Sample>;
  private next: Reservoir<Sample>;
  private pairs: Reservoir<PairSample>;

  constructor(
    private readonly route: string,
    private readonly now: () => number = Date.now,
    private readonly samples = EVIDENCE_SAMPLES,
    private readonly random: () => number = Math.random,
  ) {
    this.legacy = new Reservoir(samples, random);
    this.next = new Reservoir(samples, random);
    this.pairs = new Reservoir(samples, random);
  }

  private bucket(at: number): Counts {
    const second = Math.floor(at / 1000);
    let c = this.seconds.get(second);
    if (c === undefined) {
      c = new Counts();
      this.seconds.set(second, c);
      if (this.seconds.size > MAX_SECONDS) {
        const [oldest, counts] = this.seconds.entries().next().value as [number, Counts];
        this.carried.add(counts);
        this.seconds.delete(oldest);
      }
    }
    return c;
  }

  /**
   * One answer of a backend, counted; a live one's `seconds` (only when it succeeded) join its
   * backend's live samples. A mirror's is given without: its latency goes in with its pair
   * (`pair`). A live request sent before the log's start (`startedAt`) went where the step before
   * sent it: left out.
   */
  answer(backend: 'legacy' | 'new', failed: boolean, seconds: number | null, startedAt?: number): void {
    const at = this.now();
    this.follow(at);
    if (startedAt !== undefined && startedAt < this.since) return;
    const c = this.bucket(at);
    if (backend === 'legacy') {
      c.legacyRequests++;
      if (failed) c.legacyErrors++;
    } else {
      c.newRequests++;
      if (failed) c.newErrors++;
    }
    if (seconds !== null) (backend === 'legacy' ? this.legacy : this.next).add({ at, seconds });
  }

  /** Both backends answered one compared request (its live answer and its mirror): their latencies, together. */
  pair(legacySeconds: number, newSeconds: number): void {
    this.pairs.add({ at: this.now(), legacy: legacySeconds, new: newSeconds });
  }

  comparison(realMismatch: boolean): void {
    const c = this.bucket(this.now());
    c.comparisons++;
    if (realMismatch) c.mismatches++;
  }

  /** A request of the route that was not mirrored (told by its RouteMetrics, see Analysis.configure). */
  skipped(reason: SkipReason): void {
    const c = this.bucket(this.now());
    (c.skips ??= new Array<number>(SKIP_REASONS.length).fill(0))[SKIP_INDEX[reason]]++;
  }

  /** Whether `at` (epoch ms) lies before the moment the log counts from (a pair asked for before a weight change). */
  before(at: number): boolean {
    this.follow(this.now());
    return at < this.since;
  }

  /**
   * A wall clock stepped back (NTP, a restored VM) below the start would leave every answer and
   * pair "before the step" until it caught up, and the gates blind (no_data, no rollback) that long:
   * the start follows the clock down, to a minute before now (requests sent since the jump read
   * earlier than now), keeping what the log has.
   */
  private follow(now: number): void {
    if (now >= this.since) return;
    this.since = now - CLOCK_BACK_MARGIN_MS;
    // The next step's start is read on the stepped-back clock too: it must still restart the log.
    this.asked = Math.min(this.asked, this.since);
  }

  /** Forgets everything before `since` (to the second for counts, exactly for latency samples). */
  private restart(since: number, now: number): void {
    this.since = since;
    const first = Math.floor(since / 1000);
    const last = Math.floor(now / 1000);
    // The second `since` falls in holds traffic from before it too: it goes as well (unless `since`
    // starts it), so a new step never counts the previous one's last moments. Seconds after now
    // were counted before the clock stepped back: the previous step's too.
    for (const second of this.seconds.keys()) if (second < first || (second === first && since % 1000 !== 0) || second > last) this.seconds.delete(second);
    this.carried = new Counts();
    this.legacy.keepBetween(since, now);
    this.next.keepBetween(since, now);
    this.pairs.keepBetween(since, now);
  }

  /**
   * The evidence since `since`. A later `since` than the last one starts the log there (what came
   * before is forgotten); an earlier one gets everything the log has, and says from when.
   */
  read(since: number): RouteEvidence {
    const now = this.now();
    // A start after now is the same step seen on a clock stepped back since: followed, not restarted.
    if (since > this.asked && since <= now) {
      this.asked = since;
      this.restart(since, now);
    } else this.follow(now);
    const total = new Counts();
    total.add(this.carried);
    for (const c of this.seconds.values()) total.add(c);
    const latencies = (r: Reservoir<Sample>) => r.samples.map((s) => s.seconds);
    const pairs = this.pairs.samples;
    const notMirrored: Record<string, number> = {};
    for (let i = 0; total.skips !== null && i < SKIP_REASONS.length; i++) if (total.skips[i] > 0) notMirrored[SKIP_REASONS[i]] = total.skips[i];
    return {
      route: this.route,
      since: this.since,
      comparisons: total.comparisons,
      mismatches: total.mismatches,
      legacy: { requests: total.legacyRequests, errors: total.legacyErrors, latencies: latencies(this.legacy) },
      new: { requests: total.newRequests, errors: total.newErrors, latencies: latencies(this.next) },
      paired: { legacy: pairs.map((p) => p.legacy), new: pairs.map((p) => p.new) },
      notMirrored,
    };
  }
}
