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

  /** Whether a mirror may be sent now (at most one probe while the breaker is open). */
  allow(): boolean {
    if (this.failures < this.options.threshold) return true;
    if (this.probing || this.options.now() < this.openUntil) return false;
    this.probing = true;
    return true;
  }

  /** Records how a mirrored call to this backend ended: whether the backend answered at all. */
  record(answered: boolean): void {
    if (answered) {
      this.failures = 0;
      this.probing = false;
      this.cooldown = this.options.initialMs;
      return;
    }
    this.failures++;
    if (this.probing) {
      this.probing = false;
      this.cooldown = Math.min(this.options.maxMs, this.cooldown * 2);
    }
    if (this.failures >= this.options.threshold) this.openUntil = this.options.now() + this.cooldown;
  }
}
