/**
 * Evidence for controller tests: timestamped comparisons and requests per route, answered for "since
 * a moment" like the analysis does. It is the input the controller judges, built by the test (the
 * real analysis is exercised by its own tests and wired in by the app).
 */
import type { EvidenceSource, RouteEvidence } from '../../src/cutover/types.js';

interface Event {
  at: number;
  mismatch: boolean;
  legacy: { error: boolean; seconds: number };
  new: { error: boolean; seconds: number };
}

export class TestEvidence implements EvidenceSource {
  private readonly events = new Map<string, Event[]>();
  /** Every `since` the controller asked for, by route. */
  readonly asked = new Map<string, number[]>();

  constructor(private readonly now: () => number) {}

  /** `n` comparisons at the current time; `mismatchShare` of them differ, `newErrorShare` of new's answers fail. */
  add(route: string, n: number, opts: { mismatchShare?: number; newErrorShare?: number; newSlowdown?: number } = {}): void {
    const list = this.events.get(route) ?? [];
    const mismatches = Math.round(n * (opts.mismatchShare ?? 0));
    const errors = Math.round(n * (opts.newErrorShare ?? 0));
    for (let i = 0; i < n; i++) {
      // Deterministic spread of 15-25 ms, the same shape on both sides.
      const base = 0.015 + ((i * 7919) % 100) / 10_000;
      list.push({
        at: this.now(),
        mismatch: i < mismatches,
        legacy: { error: false, seconds: base },
        new: { error: i < errors, seconds: base * (opts.newSlowdown ?? 1) },
      });
    }
    this.events.set(route, list);
  }

  evidence(route: string, since: number): RouteEvidence {
    this.asked.set(route, [...(this.asked.get(route) ?? []), since]);
    const list = (this.events.get(route) ?? []).filter((e) => e.at >= since);
    return {
      route,
      since,
      comparisons: list.length,
      mismatches: list.filter((e) => e.mismatch).length,
      legacy: { requests: list.length, errors: list.filter((e) => e.legacy.error).length, latencies: list.map((e) => e.legacy.seconds) },
      new: { requests: list.length, errors: list.filter((e) => e.new.error).length, latencies: list.map((e) => e.new.seconds) },
      paired: { legacy: list.map((e) => e.legacy.seconds), new: list.map((e) => e.new.seconds) },
    };
  }
}
