/**
 * The sliding window of one route: the last `windowMs` kept as `slices` slices, each dropped whole
 * as it ages out. A slice holds counts by result, per-field mismatch and noise counts, and latency
 * histograms of both backends.
 */
import type { DiffKind, FieldRates } from '../compare/index.js';
import type { ComparisonResult } from '../telemetry/metrics.js';
import { LatencyHistogram } from './latency.js';

export interface FieldSlice {
  mismatches: number;
  noiseHits: number;
  kinds: Partial<Record<DiffKind, number>>;
}

export class Slice {
  id = -1;
  comparisons = 0;
  baselineComparisons = 0;
  results: Record<ComparisonResult, number> = { match: 0, mismatch: 0, noise: 0, error: 0 };
  fields = new Map<string, FieldSlice>();
  /** Compared pairs by `legacy new` status label (see statusLabel): the route's status matrix. */
  statusPairs = new Map<string, number>();
  legacy = new LatencyHistogram();
  new = new LatencyHistogram();

  reset(id: number): void {
    this.id = id;
    this.comparisons = 0;
    this.baselineComparisons = 0;
    this.results = { match: 0, mismatch: 0, noise: 0, error: 0 };
    this.fields = new Map();
    this.statusPairs = new Map();
    this.legacy = new LatencyHistogram();
    this.new = new LatencyHistogram();
  }

  field(name: string): FieldSlice {
    let f = this.fields.get(name);
    if (f === undefined) {
      f = { mismatches: 0, noiseHits: 0, kinds: {} };
      this.fields.set(name, f);
    }
    return f;
  }
}

export class RouteWindow {
  private readonly slices: Slice[];

  constructor(
    slices: number,
    private readonly sliceMs: number,
  ) {
    this.slices = Array.from({ length: slices }, () => new Slice());
  }

  idAt(now: number): number {
    return Math.floor(now / this.sliceMs);
  }

  /** The slice that `now` falls in, reset when it last held an older period. */
  current(now: number): Slice {
    const id = this.idAt(now);
    const s = this.slices[id % this.slices.length];
    if (s.id !== id) s.reset(id);
    return s;
  }

  /** The slices still inside the window at slice `currentId`. */
  live(currentId: number): Slice[] {
    const n = this.slices.length;
    return this.slices.filter((s) => s.id > currentId - n && s.id <= currentId);
  }

  /** Counts over the live slices, for the noise classifier. */
  rates(live: readonly Slice[], field: string): FieldRates {
    let mismatches = 0;
    let comparisons = 0;
    let noiseHits = 0;
    let baselineComparisons = 0;
    for (const s of live) {
      comparisons += s.comparisons;
      baselineComparisons += s.baselineComparisons;
      const f = s.fields.get(field);
      if (f !== undefined) {
        mismatches += f.mismatches;
        noiseHits += f.noiseHits;
      }
    }
    return { mismatches, comparisons, noiseHits, baselineComparisons };
  }
}
