/**
 * How the bench merges the rounds of one scenario (bench/lib/report.mjs): pure, so tested on rows
 * shaped like the ones bench/run.mjs measures.
 */
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ES module of the bench, without types
import { checkTargets, computeRatios, mergeRounds } from '../bench/lib/report.mjs';

function measured(rps: number, p50: number): Record<string, unknown> {
  return {
    scenario: 'shadow-1mb-open',
    label: 'x',
    proxy: 'cutover',
    durationS: 5,
    requests: rps * 5,
    sent: rps * 5,
    rps,
    bytesPerSec: rps * 1000,
    latencyMs: { p50, p90: p50 * 2, p99: p50 * 4, p999: p50 * 5, mean: p50, max: p50 * 6 },
    non2xx: 0,
    errors: 1,
    timeouts: 0,
    resets: 0,
    proxyCpu: { usPerRequest: 100, coresUsed: 0.5 },
    rssMB: { start: 100, afterWarmup: 120, peak: 150 + rps / 100, end: 130, hwm: 150 + rps / 100, samples: 10 },
    proxyCounters: { comparisons: rps },
  };
}
const skipped = { scenario: 'shadow-1mb-open', label: 'x', proxy: 'cutover', skipped: 'needs the passthrough-1mb row in the same round (its req/s sets the rate)' };

describe('mergeRounds', () => {
  it('merges the measured rounds of a fixed-rate row whose rate was missing in one round', () => {
    const row = mergeRounds([measured(200, 2), skipped, measured(180, 3)]);
    expect(row.skipped).toBeUndefined();
    expect(row).toMatchObject({ rps: 190, medianOf: 2, skippedRounds: 1, requests: 1900, errors: 2, proxyCounters: { comparisons: 380 } });
    expect(row.latencyMs.p50).toBe(2.5);
    expect(row.rssMB.peak).toBe(152);
    expect(row.rounds).toHaveLength(3);
  });

  it('one measured round and one skipped: that round, with the skip counted', () => {
    const row = mergeRounds([skipped, measured(200, 2)]);
    expect(row).toMatchObject({ rps: 200, skippedRounds: 1 });
    expect(row.rounds).toHaveLength(2);
  });

  it('a row skipped in every round stays skipped; a broken round breaks the row', () => {
    expect(mergeRounds([skipped, skipped]).skipped).toMatch(/needs the passthrough-1mb row/);
    const broken = mergeRounds([measured(200, 2), { ...skipped, skipped: undefined, error: 'proxy exited with code 1' }]);
    expect(broken.error).toBe('proxy exited with code 1');
  });
});

describe('checkTargets', () => {
  /** A merged row with its two rounds, as bench/run.mjs keeps them. */
  function row(scenario: string, proxy: string, rps: [number, number], cpu: [number, number]): Record<string, unknown> {
    const round = (i: 0 | 1) => ({ ...measured(rps[i], 2), scenario, proxy, proxyCpu: { usPerRequest: cpu[i], coresUsed: 0.9 } });
    return mergeRounds([round(0), round(1)]);
  }

  it('reads each ratio within each round too, and says when the rounds disagree on the verdict', () => {
    const rows = [
      row('http-proxy', 'http-proxy', [10_000, 10_000], [100, 100]),
      // 1.4x then 1.2x http-proxy's req/s: the median (1.3x) passes, one round does not.
      row('passthrough', 'cutover', [14_000, 12_000], [70, 80]),
      // 2.1x then 1.9x pass-through's CPU per request.
      row('shadow-all', 'cutover', [6_000, 6_000], [147, 152]),
    ];
    const targets = checkTargets(rows, computeRatios(rows));
    const rps = targets.find((t: { name: string }) => t.name.startsWith('pass-through req/s'));
    expect(rps).toMatchObject({ verdict: 'PASS', rounds: [1.4, 1.2], split: true });
    expect(rps.detail).toBe('measured 1.30×, rounds 1.40× and 1.20× disagree, target ≥ 1.3×');
    const cpu = targets.find((t: { name: string }) => t.name.startsWith('shadowed CPU'));
    expect(cpu.rounds).toEqual([2.1, 1.9]);
    expect(cpu.split).toBe(true);
    const rss = targets.find((t: { name: string }) => t.name.startsWith('cutover peak RSS'));
    expect(rss).toMatchObject({ verdict: 'MISS', split: false });
    expect(rss.rounds).toHaveLength(2);
  });
});
