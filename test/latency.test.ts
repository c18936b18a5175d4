import { describe, expect, it } from 'vitest';
import { LatencyHistogram } from '../src/analysis/latency.js';

describe('latency histogram', () => {
  it('reads quantiles within 5 % of the true value, from 0.2 ms to 20 s', () => {
    for (const scale of [0.0002, 0.005, 0.2, 20]) {
      const h = new LatencyHistogram();
      for (let i = 1; i <= 1000; i++) h.observe((i / 1000) * scale);
      for (const q of [0.5, 0.9, 0.99]) {
        const got = h.quantile(q)!;
        expect(Math.abs(got - q * scale) / (q * scale), `scale ${scale} q ${q}: ${got}`).toBeLessThan(0.05);
      }
    }
  });

  it('merges windows by adding, and answers null with no data', () => {
    const a = new LatencyHistogram();
    const b = new LatencyHistogram();
    expect(a.quantile(0.5)).toBeNull();
    for (let i = 0; i < 90; i++) a.observe(0.01);
    for (let i = 0; i < 10; i++) b.observe(1);
    a.add(b);
    expect(a.count).toBe(100);
    expect(a.quantile(0.5)!).toBeLessThan(0.011);
    expect(a.quantile(0.95)!).toBeGreaterThan(0.95);
  });
});
