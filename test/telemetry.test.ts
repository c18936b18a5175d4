import { describe, expect, it } from 'vitest';
import { MAX_FIELDS_PER_ROUTE, Telemetry } from '../src/telemetry/metrics.js';

describe('telemetry', () => {
  it('caps mismatch field labels per route and folds the rest into _other', async () => {
    const t = new Telemetry({ defaultMetrics: false });
    const r = t.route('orders');
    for (let i = 0; i < MAX_FIELDS_PER_ROUTE + 10; i++) r.mismatchField(`$.f${i}`, 'value');
    r.mismatchField('$.f0', 'type'); // a known field keeps its own label for a new kind
    r.mismatchField('$.f59', 'type'); // an overflow field stays folded
    const text = await t.exposition();
    const fields = new Set([...text.matchAll(/cutover_mismatch_fields_total\{route="orders",field="([^"]+)"/g)].map((m) => m[1]));
    expect(fields.size).toBe(MAX_FIELDS_PER_ROUTE + 1);
    expect(text).toMatch(/field="_other",kind="value"\} 10/);
    expect(text).toMatch(/field="_other",kind="type"\} 1/);
    expect(text).toMatch(/field="\$.f0",kind="type"\} 1/);
  });

  it('exports every route counter from zero, before the first request', async () => {
    const t = new Telemetry({ defaultMetrics: false });
    t.route('get-widget');
    const text = await t.exposition();
    expect(text).toMatch(/cutover_requests_total\{route="get-widget",backend="new",role="primary",outcome="5xx"\} 0/);
    expect(text).toMatch(/cutover_comparisons_total\{route="get-widget",result="mismatch"\} 0/);
    expect(text).toMatch(/cutover_shadow_skipped_total\{route="get-widget",reason="overload"\} 0/);
  });
});

describe('exposition', () => {
  it('renders the text format Prometheus parses: escaped labels, cumulative buckets, +Inf, sum and count', async () => {
    const t = new Telemetry({ defaultMetrics: false });
    const r = t.route('r');
    r.mismatchField('$["a\\"b"]\nx', 'value');
    r.request('legacy', 'primary', '2xx', 0.004);
    r.request('legacy', 'primary', '2xx', 0.2);
    r.request('legacy', 'primary', '5xx', 100);
    const text = await t.exposition();
    expect(text).toContain('cutover_mismatch_fields_total{route="r",field="$[\\"a\\\\\\"b\\"]\\nx",kind="value"} 1');
    expect(text).toContain('cutover_request_duration_seconds_bucket{route="r",backend="legacy",role="primary",le="0.001"} 0');
    expect(text).toContain('cutover_request_duration_seconds_bucket{route="r",backend="legacy",role="primary",le="0.005"} 1');
    expect(text).toContain('cutover_request_duration_seconds_bucket{route="r",backend="legacy",role="primary",le="0.25"} 2');
    expect(text).toContain('cutover_request_duration_seconds_bucket{route="r",backend="legacy",role="primary",le="30"} 2');
    expect(text).toContain('cutover_request_duration_seconds_bucket{route="r",backend="legacy",role="primary",le="+Inf"} 3');
    expect(text).toContain('cutover_request_duration_seconds_count{route="r",backend="legacy",role="primary"} 3');
    expect(text).toMatch(/cutover_request_duration_seconds_sum\{route="r",backend="legacy",role="primary"\} 100\.204/);
    expect(text).toContain('# TYPE cutover_request_duration_seconds histogram');
    expect(text).toContain('cutover_requests_total{route="r",backend="legacy",role="primary",outcome="5xx"} 1');
  });
});
