import { describe, expect, it } from 'vitest';
import { Admission, ShadowBreaker, breakerMessage, type BreakerEvent } from '../src/shadow/breaker.js';

describe('shadow circuit breaker', () => {
  it('opens after consecutive failures, probes once after the cool-down, doubles it on failure, closes on success', () => {
    let now = 0;
    const b = new ShadowBreaker({ threshold: 3, initialMs: 1_000, maxMs: 4_000, now: () => now });
    for (let i = 0; i < 2; i++) {
      expect(b.allow()).toBe(Admission.Normal);
      b.record(false, false);
    }
    b.record(true, false); // a success in between resets the count
    for (let i = 0; i < 3; i++) b.record(false, false);
    expect(b.open).toBe(true);
    expect(b.allow()).toBe(Admission.Refused);
    now = 999;
    expect(b.allow()).toBe(Admission.Refused);
    now = 1_000;
    expect(b.allow()).toBe(Admission.Probe);
    expect(b.allow()).toBe(Admission.Refused); // only one at a time
    b.record(false, true); // probe failed: cool-down doubles
    now = 2_999;
    expect(b.allow()).toBe(Admission.Refused);
    now = 3_000;
    expect(b.allow()).toBe(Admission.Probe);
    b.record(true, true);
    expect(b.open).toBe(false);
    expect(b.allow()).toBe(Admission.Normal);
  });

  it('lets a late failure of a mirror sent before it opened change nothing while the probe is out', () => {
    let now = 0;
    const b = new ShadowBreaker({ threshold: 2, initialMs: 1_000, maxMs: 8_000, now: () => now });
    b.record(false, false);
    b.record(false, false);
    now = 1_000;
    expect(b.allow()).toBe(Admission.Probe);
    b.record(false, false); // an old mirror failing late
    expect(b.allow()).toBe(Admission.Refused); // still only the one probe
    now = 5_000;
    expect(b.allow()).toBe(Admission.Refused); // and the cool-down was not touched: the probe decides
    b.record(false, true);
    now = 6_999;
    expect(b.allow()).toBe(Admission.Refused);
    now = 7_000;
    expect(b.allow()).toBe(Admission.Probe);
  });

  it('takes a probe back that judged nothing: the next mirror may probe at once, the cool-down unchanged', () => {
    let now = 0;
    const b = new ShadowBreaker({ threshold: 1, initialMs: 1_000, maxMs: 8_000, now: () => now });
    b.record(false, false);
    now = 1_000;
    expect(b.allow()).toBe(Admission.Probe);
    b.release(); // e.g. the other breaker refused the mirror, so it was never sent
    expect(b.allow()).toBe(Admission.Probe);
    b.record(false, true); // a real probe failure doubles the cool-down from 1 s, not from a refund
    now = 2_999;
    expect(b.allow()).toBe(Admission.Refused);
    now = 3_000;
    expect(b.allow()).toBe(Admission.Probe);
  });

  it('caps the cool-down', () => {
    let now = 0;
    const b = new ShadowBreaker({ threshold: 1, initialMs: 1_000, maxMs: 2_000, now: () => now });
    b.record(false, false);
    for (let i = 0; i < 5; i++) {
      now += 10_000;
      expect(b.allow()).toBe(Admission.Probe);
      b.record(false, true);
    }
    now += 2_000;
    expect(b.allow()).toBe(Admission.Probe);
  });

  describe('a target gone silent (hanging, not failing)', () => {
    const silentBreaker = (clock: { now: number }, timeoutMs: number | undefined = 4_000) =>
      new ShadowBreaker({ threshold: 5, initialMs: 1_000, maxMs: 8_000, now: () => clock.now, timeoutMs });
    const send = (b: ShadowBreaker, n: number): void => {
      for (let i = 0; i < n; i++) b.sent();
    };

    it('before any answer: opens once `threshold` mirrors wait and the first has waited half the timeout', () => {
      const clock = { now: 0 };
      const b = silentBreaker(clock);
      expect(b.stallAfter()).toBe(2_000);
      send(b, 5);
      clock.now = 1_999;
      expect(b.refusing()).toBe(false);
      expect(b.open).toBe(false);
      clock.now = 2_000;
      expect(b.refusing()).toBe(true);
      expect(b.open).toBe(true);
      expect(b.stalls).toBe(1);
      // From here it is an open breaker like any other: one probe after the cool-down.
      clock.now = 2_999;
      expect(b.allow()).toBe(Admission.Refused);
      clock.now = 3_000;
      expect(b.allow()).toBe(Admission.Probe);
    });

    it('fewer waiting mirrors than the threshold never open it, however long the silence', () => {
      const clock = { now: 0 };
      const b = silentBreaker(clock);
      send(b, 4);
      clock.now = 60_000;
      expect(b.refusing()).toBe(false);
      expect(b.stalls).toBe(0);
    });

    it('counts only mirrors still waiting: ones that failed long ago do not make a silence for ones sent now', () => {
      const clock = { now: 0 };
      const b = silentBreaker(clock);
      send(b, 3);
      clock.now = 4_000;
      for (let i = 0; i < 3; i++) b.record(false, false); // timed out
      clock.now = 60_000;
      send(b, 5);
      expect(b.refusing()).toBe(false);
      clock.now = 60_000 + 1_999;
      expect(b.refusing()).toBe(false);
      clock.now = 60_000 + 2_000; // their own silence, from when they were sent
      expect(b.refusing()).toBe(true);
    });

    it('after fast answers: one second of silence is enough (the floor)', () => {
      const clock = { now: 0 };
      const b = silentBreaker(clock);
      for (let i = 0; i < 20; i++) {
        b.sent();
        clock.now += 50;
        b.record(true, false, 50);
      }
      expect(b.stallAfter()).toBe(1_000);
      const start = clock.now;
      send(b, 5);
      clock.now = start + 999;
      expect(b.refusing()).toBe(false);
      clock.now = start + 1_000;
      expect(b.refusing()).toBe(true);
    });

    it('a slow target that keeps answering never trips it; its pace is what silence is measured against', () => {
      const clock = { now: 0 };
      const b = silentBreaker(clock, 5_000);
      // Its pace known (a cold start is the test below): answers take 3 s, but one comes every
      // 100 ms, so the silence is never longer than that.
      b.sent();
      clock.now = 3_000;
      b.record(true, false, 3_000);
      const inFlight: number[] = [];
      for (let t = 3_000; t < 23_000; t += 100) {
        clock.now = t;
        b.sent();
        inFlight.push(t);
        while (inFlight.length > 0 && t - inFlight[0]! >= 3_000) b.record(true, false, t - inFlight.shift()!);
        expect(b.refusing()).toBe(false);
      }
      // Four times 3 s is past the timeout: silence is only taken as down at the timeout itself.
      expect(b.stallAfter()).toBe(5_000);
      expect(b.stalls).toBe(0);
    });

    it('a late answer closes it and teaches the slower pace, so it does not trip again', () => {
      const clock = { now: 0 };
      const b = silentBreaker(clock, 5_000);
      send(b, 5); // a cold target that takes 3 s: taken as silent at 2.5 s
      clock.now = 2_500;
      expect(b.refusing()).toBe(true);
      clock.now = 3_000;
      b.record(true, false, 3_000); // but it answers
      expect(b.open).toBe(false);
      expect(b.stallAfter()).toBe(5_000);
      const again = clock.now;
      send(b, 5);
      clock.now = again + 4_999;
      expect(b.refusing()).toBe(false);
      expect(b.stalls).toBe(1);
    });

    it('forgets a slow spell by half every minute', () => {
      const clock = { now: 0 };
      const b = silentBreaker(clock, 30_000);
      b.sent();
      clock.now = 4_000;
      b.record(true, false, 4_000); // one 4 s answer
      expect(b.stallAfter()).toBe(16_000);
      clock.now = 4_000 + 60_000;
      expect(b.stallAfter()).toBeCloseTo(8_000, 6);
      clock.now = 4_000 + 300_000;
      expect(b.stallAfter()).toBe(1_000); // 4 × 125 ms is under the floor
    });

    it('tells each opening once, with its reason, and the close', () => {
      const clock = { now: 0 };
      const events: BreakerEvent[] = [];
      const b = new ShadowBreaker({ threshold: 3, initialMs: 1_000, maxMs: 8_000, now: () => clock.now, timeoutMs: 4_000, onChange: (e) => events.push(e) });
      for (let i = 0; i < 3; i++) b.record(false, false);
      clock.now = 1_000;
      expect(b.allow()).toBe(Admission.Probe);
      b.record(false, true); // a failed probe: still open, not told again
      clock.now = 3_000;
      expect(b.allow()).toBe(Admission.Probe);
      b.record(true, true, 10);
      send(b, 3);
      clock.now = 3_000 + 1_500;
      expect(b.refusing()).toBe(true);
      b.record(true, false, 1_500); // a late answer closes it
      expect(events).toEqual([
        { open: true, reason: 'failures', failures: 3 },
        { open: false },
        { open: true, reason: 'silence', silentMs: 1_500, waiting: 3 },
        { open: false },
      ]);
      expect(breakerMessage('new', events[2]!)).toBe(
        'the shadow backend new has answered nothing for 1.5 s while 3 mirrors wait: mirrors to it are skipped as shadow_down, and probed one at a time, until it answers',
      );
    });

    it('without a timeout (the oversize cool-downs) silence never opens it', () => {
      const clock = { now: 0 };
      const b = new ShadowBreaker({ threshold: 5, now: () => clock.now });
      send(b, 50);
      clock.now = 3_600_000;
      expect(b.refusing()).toBe(false);
      expect(b.stallAfter()).toBe(Infinity);
    });
  });
});
