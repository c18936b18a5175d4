/**
 * Evidence for the controller: what one route's comparisons showed since a moment (the route's last
 * weight change), never older traffic. Kept apart from the sliding window because the window's
 * slices are coarse and a step's evidence must start exactly at the step.
 *
 * Latency samples are a bounded reservoir per backend (uniform over the period), so a two-sample
 * test sees the distributions, not a single quantile.
 */
import type { RouteEvidence } from '../cutover/types.js';

export const EVIDENCE_SAMPLES = 2_000;

class Reservoir {
  readonly samples: number[] = [];
  private seen = 0;

  constructor(
    private readonly size: number,
    private readonly random: () => number,
  ) {}

  add(value: number): void {
    this.seen++;
    if (this.samples.length < this.size) this.samples.push(value);
    else {
      const j = Math.floor(this.random() * this.seen);
      if (j < this.size) this.samples[j] = value;
    }
  }
}

interface Side {
  requests: number;
  errors: number;
  latency: Reservoir;
}

export class RouteEvidenceLog {
  private since = 0;
  private comparisons = 0;
  private mismatches = 0;
  private legacy!: Side;
  private next!: Side;

  constructor(
    private readonly route: string,
    private readonly samples = EVIDENCE_SAMPLES,
    private readonly random: () => number = Math.random,
  ) {
    this.restart(0);
  }

  private side(): Side {
    return { requests: 0, errors: 0, latency: new Reservoir(this.samples, this.random) };
  }

  private restart(since: number): void {
    this.since = since;
    this.comparisons = 0;
    this.mismatches = 0;
    this.legacy = this.side();
    this.next = this.side();
  }

  /** One answer of a backend within a compared pair: `seconds` only when it succeeded. */
  answer(backend: 'legacy' | 'new', failed: boolean, seconds: number | null): void {
    const side = backend === 'legacy' ? this.legacy : this.next;
    side.requests++;
    if (failed) side.errors++;
    if (seconds !== null) side.latency.add(seconds);
  }

  comparison(realMismatch: boolean): void {
    this.comparisons++;
    if (realMismatch) this.mismatches++;
  }

  /** The evidence since `since`; a later `since` than the log's starts it afresh (a new step). */
  read(since: number): RouteEvidence {
    if (since > this.since) this.restart(since);
    const side = (s: Side) => ({ requests: s.requests, errors: s.errors, latencies: [...s.latency.samples] });
    return { route: this.route, since: this.since, comparisons: this.comparisons, mismatches: this.mismatches, legacy: side(this.legacy), new: side(this.next) };
  }
}
