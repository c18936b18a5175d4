/**
 * The controller's evidence log of one route: bounded in seconds kept and latency samples, without
 * losing a count when old seconds fold into the carried total.
 */
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { MAX_SECONDS, RouteEvidenceLog } from '../src/analysis/evidence.js';
import { ExchangeClock } from '../src/forward/exchange.js';
import { waitFor } from './helpers/backend.js';
import { baseConfig } from './helpers/proxy.js';
import { scoped } from './helpers/scoped.js';

describe('route evidence log', () => {
  it('keeps at most MAX_SECONDS per-second buckets, folding older ones without losing counts, and a bounded reservoir', () => {
    let now = 0;
    const log = new RouteEvidenceLog('r', () => now, 50, () => 0.5);
    const seconds = MAX_SECONDS + 500;
    for (let s = 0; s < seconds; s++) {
      now = s * 1000;
      log.answer('legacy', false, 0.01);
      log.answer('new', s % 2 === 0, s % 2 === 0 ? null : 0.02);
      log.comparison(s % 10 === 0);
    }
    // Reads the private map on purpose: its size is the bound under test.
    expect((log as unknown as { seconds: Map<number, unknown> }).seconds.size).toBe(MAX_SECONDS);
    const all = log.read(0);
    expect(all.comparisons).toBe(seconds);
    expect(all.mismatches).toBe(seconds / 10);
    expect(all.legacy).toMatchObject({ requests: seconds, errors: 0 });
    expect(all.new).toMatchObject({ requests: seconds, errors: seconds / 2 });
    expect(all.legacy.latencies).toHaveLength(50);
    expect(all.new.latencies).toHaveLength(50);

    // A later start forgets what came before it, carried total included.
    const recent = log.read((seconds - 10) * 1000);
    expect(recent.comparisons).toBe(10);
    expect(recent.legacy.requests).toBe(10);
  });

  it("a start inside a second forgets that second's earlier traffic: the previous step never counts for the next", () => {
    const clock = { t: 1_800_000_000_000 };
    const log = new RouteEvidenceLog('r', () => clock.t);
    log.read(clock.t);
    for (let i = 0; i < 200; i++) {
      clock.t += 4;
      log.answer('legacy', false, 0.02);
      log.answer('new', true, null);
      log.comparison(true);
    }
    // 800 ms into the second, the weight changes: nothing of the 200 before counts.
    const fresh = log.read(clock.t);
    expect({ comparisons: fresh.comparisons, mismatches: fresh.mismatches, newErrors: fresh.new.errors }).toEqual({ comparisons: 0, mismatches: 0, newErrors: 0 });
  });

  it('a wall clock stepped back below the start: the start follows it down, so what comes after still counts', () => {
    const clock = { t: 1_800_000_000_000 };
    const log = new RouteEvidenceLog('r', () => clock.t);
    const step = clock.t;
    log.read(step);
    clock.t += 1_000;
    log.answer('new', true, null, clock.t - 5);
    // NTP steps the clock back ten minutes: answers and pairs now start "before" the step.
    clock.t -= 600_000;
    for (let i = 0; i < 10; i++) {
      clock.t += 10;
      expect(log.before(clock.t - 5)).toBe(false);
      log.answer('new', true, null, clock.t - 5);
      log.comparison(true);
    }
    const seen = log.read(step);
    expect({ newRequests: seen.new.requests, newErrors: seen.new.errors, comparisons: seen.comparisons }).toEqual({ newRequests: 11, newErrors: 11, comparisons: 10 });
    // A step asked for later restarts the log as before.
    clock.t += 1_000;
    expect(log.read(clock.t).new.requests).toBe(0);
  });

  it('counts requests not mirrored by reason since the start it is read from, carried seconds included', () => {
    let now = 0;
    const log = new RouteEvidenceLog('r', () => now);
    expect(log.read(0).notMirrored).toEqual({});
    for (let s = 0; s < MAX_SECONDS + 10; s++) {
      now = s * 1000;
      log.skipped('upgrade');
      if (s % 2 === 0) log.skipped('sampled_out');
    }
    // Old seconds folded into the carried total still count when the whole log is asked for.
    expect(log.read(0).notMirrored).toEqual({ upgrade: MAX_SECONDS + 10, sampled_out: (MAX_SECONDS + 10) / 2 });
    // A later start forgets what came before it.
    expect(log.read((MAX_SECONDS + 6) * 1000).notMirrored).toEqual({ upgrade: 4, sampled_out: 2 });
  });
});

describe('live answers in the evidence, through a running proxy', () => {
  const { backend, proxy } = scoped();

  it('a live request sent before the step began is left out of its evidence, one sent after counts', async () => {
    const held: (() => void)[] = [];
    const legacy = await backend((_req, res) => held.push(() => res.end('{}')));
    const p = await proxy(baseConfig(legacy.url, legacy.url, { routes: [{ name: 'r', match: { path: '/r' }, weight: 0, shadow: { percent: 0 } }] }));
    const before = request(`${p.dataUrl}/r`);
    await waitFor(() => held.length === 1, 5_000, 'the first request at the backend');
    // The step begins while it is in flight (the controller reads its evidence from the change on).
    await new Promise((resolve) => setTimeout(resolve, 5));
    const since = Date.now();
    p.analysis.evidence('r', since);
    await new Promise((resolve) => setTimeout(resolve, 5));
    held[0]();
    await (await before).body.dump();
    const after = request(`${p.dataUrl}/r`);
    await waitFor(() => held.length === 2, 5_000, 'the second request at the backend');
    held[1]();
    await (await after).body.dump();
    await waitFor(() => p.analysis.evidence('r', since).legacy.requests > 0, 5_000, 'the second answer in the evidence');
    expect(p.analysis.evidence('r', since).legacy).toMatchObject({ requests: 1, errors: 0 });
  });
});

describe('the dispatch time of a live answer', () => {
  it('is on the wall clock the steps use, even when performance.timeOrigin disagrees with it (a clock stepped forward since start)', () => {
    const real = performance.timeOrigin;
    Object.defineProperty(performance, 'timeOrigin', { value: real - 3_600_000, configurable: true });
    try {
      const clock = new ExchangeClock();
      expect(Math.abs(clock.startedAt() - Date.now())).toBeLessThan(1_000);
    } finally {
      Object.defineProperty(performance, 'timeOrigin', { value: real, configurable: true });
    }
  });
});
