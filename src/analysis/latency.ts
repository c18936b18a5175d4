/**
 * A small log-bucketed latency histogram for quantiles in the analysis window: buckets grow by 5 %
 * from 0.1 ms to ~2 min, so a quantile read from it is within ~2.5 % of the true value, and merging
 * windows is adding arrays.
 */
const MIN_SECONDS = 0.0001;
const GROWTH = 1.05;
const LOG_GROWTH = Math.log(GROWTH);
export const LATENCY_BUCKETS = 290; // MIN_SECONDS * 1.05^289 ≈ 130 s

export function bucketIndex(seconds: number): number {
  if (!(seconds > MIN_SECONDS)) return 0;
  return Math.min(LATENCY_BUCKETS - 1, Math.ceil(Math.log(seconds / MIN_SECONDS) / LOG_GROWTH));
}

/** Upper bound of a bucket, in seconds. */
function upperBound(index: number): number {
  return MIN_SECONDS * GROWTH ** index;
}

export class LatencyHistogram {
  readonly counts = new Uint32Array(LATENCY_BUCKETS);
  count = 0;
  sum = 0;

  observe(seconds: number): void {
    this.counts[bucketIndex(seconds)]++;
    this.count++;
    this.sum += seconds;
  }

  add(other: LatencyHistogram): void {
    for (let i = 0; i < LATENCY_BUCKETS; i++) this.counts[i] += other.counts[i];
    this.count += other.count;
    this.sum += other.sum;
  }

  /** The q-quantile in seconds (interpolated inside its bucket), or null with no data. */
  quantile(q: number): number | null {
    if (this.count === 0) return null;
    const rank = q * this.count;
    let seen = 0;
    for (let i = 0; i < LATENCY_BUCKETS; i++) {
      const c = this.counts[i];
      if (c === 0) continue;
      if (seen + c >= rank) {
        const lower = i === 0 ? 0 : upperBound(i - 1);
        const upper = upperBound(i);
        return lower + (upper - lower) * Math.min(1, Math.max(0, (rank - seen) / c));
      }
      seen += c;
    }
    return upperBound(LATENCY_BUCKETS - 1);
  }
}
