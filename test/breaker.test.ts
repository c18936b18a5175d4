import { describe, expect, it } from 'vitest';
import { ShadowBreaker } from '../src/shadow/breaker.js';

describe('shadow circuit breaker', () => {
  it('opens after consecutive failures, probes once after the cool-down, doubles it on failure, closes on success', () => {
    let now = 0;
    const b = new ShadowBreaker({ threshold: 3, initialMs: 1_000, maxMs: 4_000, now: () => now });
    for (let i = 0; i < 2; i++) {
      expect(b.allow()).toBe(true);
      b.record(false);
    }
    b.record(true); // a success in between resets the count
    for (let i = 0; i < 3; i++) b.record(false);
    expect(b.open).toBe(true);
    expect(b.allow()).toBe(false);
    now = 999;
    expect(b.allow()).toBe(false);
    now = 1_000;
    expect(b.allow()).toBe(true); // the probe
    expect(b.allow()).toBe(false); // only one at a time
    b.record(false); // probe failed: cool-down doubles
    now = 2_999;
    expect(b.allow()).toBe(false);
    now = 3_000;
    expect(b.allow()).toBe(true);
    b.record(true);
    expect(b.open).toBe(false);
    expect(b.allow()).toBe(true);
  });

  it('caps the cool-down', () => {
    let now = 0;
    const b = new ShadowBreaker({ threshold: 1, initialMs: 1_000, maxMs: 2_000, now: () => now });
    b.record(false);
    for (let i = 0; i < 5; i++) {
      now += 10_000;
      expect(b.allow()).toBe(true);
      b.record(false);
    }
    now += 2_000;
    expect(b.allow()).toBe(true);
  });
});
