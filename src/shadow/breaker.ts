/**
 * A circuit breaker per shadow target. A shadow backend that is down (connections refused, resets,
 * timeouts) would otherwise cost every mirrored request a failed connection attempt, on the proxy's
 * one thread, for no evidence at all: after `threshold` failures in a row the breaker opens and
 * mirrors to that backend are skipped (`shadow_down`) for a cool-down that doubles up to `maxMs`.
 * Then one probe is let through: success closes the breaker, failure opens it again.
 *
 * A target that hangs fails no call until `shadow.timeout` runs out, so counting failures alone
 * keeps sending it mirrors, each holding a connection and a comparison place, for that whole time.
 * With `timeoutMs` given, the breaker also opens when the target has gone silent: `threshold`
 * mirrors sent since its last answer and still waiting (not failed), the first of them waiting
 * `stallAfter()` (4× its slowest recent answer, timed from the socket; at least 1 s; half the
 * timeout before it has answered anything). A slow but live target
 * keeps answering, so its silence never lasts that long; one that got much slower at once is
 * probed, and the probe's answer teaches the breaker its new pace. Mirrors already sent go on
 * waiting (their answers are still compared).
 *
 * Only the mirror path consults it; the client path never does.
 */
export interface BreakerOptions {
  threshold: number;
  initialMs: number;
  maxMs: number;
  now: () => number;
  /** The mirrors' time budget (shadow.timeout): turns on the silence rule. Without it, only failures open the breaker. */
  timeoutMs?: number;
  /** Told when the breaker opens (not again on each failed probe) and when an answer closes it. */
  onChange?: (event: BreakerEvent) => void;
}

/** An open or a close: why it opened, and for silence how long and how many mirrors waited. */
export type BreakerEvent = { open: true; reason: 'failures'; failures: number } | { open: true; reason: 'silence'; silentMs: number; waiting: number } | { open: false };

/** Silence shorter than this never opens the breaker, however fast the target usually answers. */
export const STALL_FLOOR_MS = 1_000;
/** Silence this many times the target's slowest recent answer opens it. */
export const STALL_FACTOR = 4;
/** The slowest recent answer is forgotten by half every this long (a slow spell long past says little). */
const SLOWEST_HALF_LIFE_MS = 60_000;

/** What the admin API shows of one backend's breaker (GET /api/state, `shadowBackends`). */
export interface BreakerView {
  /** Mirrors to this backend are being skipped as shadow_down. */
  open: boolean;
  /** Since when (ISO), why, and the sentence the log said; only while open. */
  since?: string;
  reason?: 'failures' | 'silence';
  detail?: string;
  /** Times it opened because the backend went silent, since the proxy started. */
  stalls: number;
}

/** The log line of a breaker event toward `backend`. */
export function breakerMessage(backend: string, event: BreakerEvent): string {
  if (!event.open) return `the shadow backend ${backend} answers again: mirrors to it are sent again`;
  const why =
    event.reason === 'silence'
      ? `has answered nothing for ${(event.silentMs / 1000).toFixed(1)} s while ${event.waiting} mirrors wait`
      : `failed ${event.failures} mirrors in a row (no whole answer)`;
  return `the shadow backend ${backend} ${why}: mirrors to it are skipped as shadow_down, and probed one at a time, until it answers`;
}

export const DEFAULT_BREAKER: BreakerOptions = { threshold: 5, initialMs: 1_000, maxMs: 30_000, now: Date.now };

/** What `allow` decided: no mirror, a normal mirror, or the one probe of an open breaker. */
export enum Admission {
  Refused = 0,
  Normal = 1,
  Probe = 2,
}

export class ShadowBreaker {
  private readonly options: BreakerOptions;
  private failures = 0;
  private openUntil = 0;
  private cooldown: number;
  private probing = false;
  /** Mirrors sent since the target last answered and still waiting, and when the first of them was sent. */
  private unanswered = 0;
  private silentSince = 0;
  /** The slowest answer lately (ms, decaying), and when it was last updated; 0: none yet. */
  private slowestMs = 0;
  private slowestAt = 0;
  /** Times the breaker opened because the target went silent (not because calls failed). */
  stalls = 0;
  /** Why and when it last opened, while it is open. */
  private opening: { at: number; event: Extract<BreakerEvent, { open: true }> } | null = null;

  constructor(options: Partial<BreakerOptions> = {}) {
    this.options = { ...DEFAULT_BREAKER, ...options };
    this.cooldown = this.options.initialMs;
  }

  get open(): boolean {
    return this.failures >= this.options.threshold;
  }

  /**
   * How long the target may stay silent while mirrors wait before it is taken as down (ms), or
   * Infinity without a timeout. Never past the timeout itself, where the waiting mirrors fail anyway.
   */
  stallAfter(now = this.options.now()): number {
    const timeout = this.options.timeoutMs;
    if (timeout === undefined) return Infinity;
    if (this.slowestMs === 0) return Math.max(STALL_FLOOR_MS, timeout / 2);
    return Math.min(timeout, Math.max(STALL_FLOOR_MS, STALL_FACTOR * this.slowest(now)));
  }

  /**
   * Whether `allow()` would refuse now (open, and no probe due): asked before anything is taken for
   * a mirror. A target found silent (see above) is opened here, so the mirror asking is refused.
   */
  refusing(): boolean {
    if (!this.open && this.unanswered >= this.options.threshold) {
      const now = this.options.now();
      const silent = now - this.silentSince;
      if (silent >= STALL_FLOOR_MS && silent >= this.stallAfter(now)) this.trip(now, silent);
    }
    return this.open && (this.probing || this.options.now() < this.openUntil);
  }

  /** Opens the breaker for a silent target, as `threshold` failures would. */
  private trip(now: number, silentMs: number): void {
    const waiting = this.unanswered;
    this.stalls++;
    this.failures = this.options.threshold;
    this.openUntil = now + this.cooldown;
    this.unanswered = 0;
    this.opened(now, { open: true, reason: 'silence', silentMs, waiting });
  }

  private opened(at: number, event: Extract<BreakerEvent, { open: true }>): void {
    this.opening = { at, event };
    this.options.onChange?.(event);
  }

  /** Its state for the admin API; `backend` names it in the detail sentence. */
  view(backend: string): BreakerView {
    const o = this.open ? this.opening : null;
    if (o === null) return { open: this.open, stalls: this.stalls };
    return { open: true, since: new Date(o.at).toISOString(), reason: o.event.reason, detail: breakerMessage(backend, o.event), stalls: this.stalls };
  }

  /** A mirror went out to the target. */
  sent(): void {
    if (this.unanswered++ === 0) this.silentSince = this.options.now();
  }

  /** Whether a mirror may be sent now (at most one probe at a time while the breaker is open). */
  allow(): Admission {
    if (!this.open) return Admission.Normal;
    if (this.refusing()) return Admission.Refused;
    this.probing = true;
    return Admission.Probe;
  }

  /**
   * Gives back a probe that judged nothing: it was not sent after all, or its call failed for a
   * reason this breaker does not weigh. The next mirror may probe, with no longer a cool-down.
   */
  release(): void {
    this.probing = false;
  }

  /**
   * Records how a mirrored call ended: whether the backend answered at all, whether that call was
   * the probe, and for an answer how long the backend took (`answerMs`, timed from the socket as
   * UpstreamAnswer.seconds is: the wait for a pooled connection is the proxy's, not the backend's
   * pace). Any answer closes the breaker. While it is open, only the probe's failure counts: a
   * mirror sent before the breaker opened and failing late says nothing new.
   */
  record(answered: boolean, probe: boolean, answerMs?: number): void {
    if (answered) {
      if (answerMs !== undefined) this.answeredAfter(answerMs);
      const wasOpen = this.open;
      this.unanswered = 0;
      this.failures = 0;
      this.probing = false;
      this.cooldown = this.options.initialMs;
      if (wasOpen) {
        this.opening = null;
        this.options.onChange?.({ open: false });
      }
      return;
    }
    // A mirror that failed is no longer waiting (its failure counts below): only those still out
    // make a silence, so mirrors that timed out long ago cannot trip it for ones sent just now.
    if (this.unanswered > 0) this.unanswered--;
    if (probe) {
      this.probing = false;
      this.cooldown = Math.min(this.options.maxMs, this.cooldown * 2);
      this.openUntil = this.options.now() + this.cooldown;
      return;
    }
    if (this.failures >= this.options.threshold) return;
    if (++this.failures === this.options.threshold) {
      const now = this.options.now();
      this.openUntil = now + this.cooldown;
      this.opened(now, { open: true, reason: 'failures', failures: this.failures });
    }
  }

  /** The slowest recent answer time (ms), decayed by its age. */
  private slowest(now: number): number {
    return this.slowestMs * 0.5 ** ((now - this.slowestAt) / SLOWEST_HALF_LIFE_MS);
  }

  /** Keeps the slowest recent answer time (at least 1 ms, so 0 still means none yet). */
  private answeredAfter(ms: number): void {
    // While this answer and the slowest kept are both under the floor's share, stallAfter() is the
    // floor whatever their exact values: a fast backend's answers cost no clock read here.
    if (this.slowestMs > 0 && Math.max(ms, this.slowestMs) * STALL_FACTOR <= STALL_FLOOR_MS) return;
    const now = this.options.now();
    this.slowestMs = Math.max(ms, this.slowest(now), 1);
    this.slowestAt = now;
  }
}
