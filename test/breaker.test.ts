import { describe, expect, it } from 'vitest';
import { Admission, ShadowBreaker } from '../src/shadow/breaker.js';

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
});
