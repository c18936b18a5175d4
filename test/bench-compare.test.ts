/**
 * The comparator micro-benchmark's polled rows (bench/compare.mjs): the load runs' own answers, a
 * new request id each time, timed compared alone and compared and recorded. What they time must be
 * the path the proxy takes with such traffic: recent pairs serve nearly every pair, in both rows.
 * (Timings are the bench's to judge; this only says the rows measure what they name.)
 */
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ES module of the bench, without types (it reads the build in dist/)
import { polledRows } from '../bench/compare.mjs';

interface Row {
  impl: string;
  ops: number;
  reported: string;
}

describe('bench/compare.mjs polled rows', () => {
  it('time the comparison and the comparison with its recording, both served by recent pairs', () => {
    const rows = (polledRows as (budgetMs: number) => Row[])(150);
    expect(rows.map((r) => r.impl)).toEqual(['cutover compareResponses, recent pairs kept', 'cutover Analysis.process: compared and recorded']);
    for (const row of rows) {
      expect(row.ops).toBeGreaterThan(0);
      const [, hits, calls] = /^(\d+) of (\d+) pairs/.exec(row.reported) ?? [];
      // 16 paths: each path's first pair is only sighted and its second kept; every later one is a hit.
      expect(Number(calls)).toBeGreaterThan(64);
      expect(Number(hits)).toBe(Number(calls) - 32);
    }
  });
});
