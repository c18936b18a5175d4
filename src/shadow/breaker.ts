/**
 * A circuit breaker per shadow target. A shadow backend that is down (connections refused, resets,
 * timeouts) would otherwise cost every mirrored request a failed connection attempt, on the proxy's
 * one thread, for no evidence at all: after `threshold` failures in a row the breaker opens and
 * mirrors to that backend are skipped (`shadow_down`) for a cool-down that doubles up to `maxMs`.
 * Then one probe is let through: success closes the breaker, failure opens it again.
 *
 * Only the mirror path consults it; the client path never does.
 */
export interface BreakerOptions {
  threshold: number;
  initialMs: number;
  maxMs: number;
  now: () => number;
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

  constructor(options: Partial<BreakerOptions> = {}) {
    this.options = { ...DEFAULT_BREAKER, ...options };
    this.cooldown = this.options.initialMs;
  }

  get open(): boolean {
    return this.failures >= this.options.threshold;
  }

  /** Whether `allow()` would refuse now (open, and no probe due): asked before anything is taken for a mirror. */
  refusing(): boolean {
    return this.open && (this.probing || this.options.now() < this.openUntil);
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
   * Records how a mirrored call ended: whether the backend answered at all, and whether that call
   * was the probe. Any answer closes the breaker. While it is open, only the probe's failure counts:
   * a mirror sent before the breaker opened and failing late says nothing new.
   */
  record(answered: boolean, probe: boolean): void {
    if (answered) {
      this.failures = 0;
      this.probing = false;
      this.cooldown = this.options.initialMs;
      return;
    }
    if (probe) {
      this.probing = false;
      this.cooldown = Math.min(this.options.maxMs, this.cooldown * 2);
      this.openUntil = this.options.now() + this.cooldown;
      return;
    }
    if (this.failures >= this.options.threshold) return;
    if (++this.failures === this.options.threshold) this.openUntil = this.options.now() + this.cooldown;
  }
}
