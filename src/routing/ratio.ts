/**
 * An exact ratio without randomness, as Traefik's mirror applies its percent: after n calls,
 * `next()` has said yes exactly floor-ish(n * percent / 100) times, so a 5 % split or sample is 5 %
 * over any window, and what happened can be explained afterwards.
 */
import { BUCKETS, weightToBuckets } from './hash.js';

export class ExactRatio {
  private buckets: number;
  private total = 0;
  private taken = 0;

  constructor(percent: number) {
    this.buckets = weightToBuckets(percent);
  }

  set(percent: number): void {
    this.buckets = weightToBuckets(percent);
    this.total = 0;
    this.taken = 0;
  }

  get percent(): number {
    return (this.buckets * 100) / BUCKETS;
  }

  next(): boolean {
    if (this.buckets === 0) return false;
    if (this.buckets === BUCKETS) return true;
    this.total++;
    if (this.taken * BUCKETS < this.total * this.buckets) {
      this.taken++;
      return true;
    }
    return false;
  }
}
