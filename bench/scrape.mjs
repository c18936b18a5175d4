#!/usr/bin/env node
// What one Prometheus scrape of the admin /metrics costs the proxy, with 50 routes under load.
//
//   npx tsc -p tsconfig.build.json && node bench/scrape.mjs [--quick]
//
// Each scenario builds its own Telemetry (prom-client default metrics on, as in the proxy),
// registers N routes with telemetry.route(name) and fills every label child the way a busy proxy
// does: requests for both backends, both roles and every outcome, durations spread over the
// buckets, every comparison result, every skip reason, and mismatching fields up to the per-route
// field cap. Then it times `await telemetry.exposition()` (the body the admin port sends for
// GET /metrics; HTTP and gzip not included) and, during each scrape, how long the event loop was
// blocked: a setImmediate ping records the longest gap between two turns of the loop, which is
// how long a client request arriving mid-scrape waits at worst.
//
// Scenarios:
// - "50 routes, 3 kinds/field": every route at the field cap (50 fields), each field differing in
//   3 kinds: a migration with many real differences, the realistic bad case.
// - "50 routes, worst case": 50 fields + `_other` × all 8 kinds on every route: the most series the
//   label bounds allow (cutover_mismatch_fields_total is the only family that grows like this).
// - "50 routes, no mismatches" and "1 route, no mismatches": what the fixed per-route series cost.
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { MAX_FIELDS_PER_ROUTE, OUTCOMES, Telemetry } from '../dist/telemetry/metrics.js';

const BACKENDS = ['legacy', 'new'];
const ROLES = ['primary', 'shadow'];
const RESULTS = ['match', 'mismatch', 'noise', 'error'];
const SKIP_REASONS = ['sampled_out', 'unsafe_method', 'body_too_large', 'overload', 'bypass', 'shadow_down'];
const KINDS = ['value', 'type', 'missing', 'extra', 'length', 'order', 'status', 'header'];
/** Latencies observed per histogram child, seconds: spread over most buckets, like real traffic. */
const LATENCIES = [0.0008, 0.002, 0.004, 0.008, 0.012, 0.02, 0.03, 0.045, 0.07, 0.09, 0.2, 0.4, 0.8, 2, 6];

export const SCENARIOS = [
  { name: '50 routes, 3 kinds/field', routes: 50, fields: MAX_FIELDS_PER_ROUTE, kinds: 3 },
  { name: '50 routes, worst case', routes: 50, fields: MAX_FIELDS_PER_ROUTE + 10, kinds: KINDS.length },
  { name: '50 routes, no mismatches', routes: 50, fields: 0, kinds: 0 },
  { name: '1 route, no mismatches', routes: 1, fields: 0, kinds: 0 },
];

/** A realistic field path for field i of a route: nested objects, arrays, a few shapes. */
function fieldPath(i) {
  const shapes = [(n) => `$.items[].attr${n}`, (n) => `$.meta.section${n % 7}.value${n}`, (n) => `$.customer.address.line${n}`, (n) => `$.lines[].options[].opt${n}`];
  return shapes[i % shapes.length](i);
}

/** A Telemetry filled like a busy proxy with `routes` routes. */
export function filledTelemetry({ routes, fields, kinds }) {
  const telemetry = new Telemetry();
  for (let r = 0; r < routes; r++) {
    const route = telemetry.route(`route-${String(r).padStart(2, '0')}-${r % 2 ? 'get' : 'list'}-widgets`);
    route.setWeight([0, 1, 5, 25, 50, 100][r % 6]);
    for (const backend of BACKENDS) {
      for (const role of ROLES) {
        for (const outcome of OUTCOMES) {
          const n = outcome === '2xx' ? LATENCIES.length * 4 : 3;
          for (let i = 0; i < n; i++) route.request(backend, role, outcome, LATENCIES[i % LATENCIES.length] * (backend === 'new' ? 1.2 : 1));
        }
      }
    }
    for (const result of RESULTS) for (let i = 0; i < (result === 'match' ? 50 : 5); i++) route.comparison(result);
    for (const reason of SKIP_REASONS) route.shadowSkipped(reason);
    // Past MAX_FIELDS_PER_ROUTE distinct fields the telemetry folds them into `_other`.
    for (let f = 0; f < fields; f++) {
      for (let k = 0; k < kinds; k++) route.mismatchField(fieldPath(f), KINDS[k]);
    }
  }
  return telemetry;
}

/** The longest gap between two turns of the event loop while `work` runs, in ms. */
async function longestBlock(work) {
  let last = performance.now();
  let worst = 0;
  let running = true;
  const ping = () => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
    if (running) setImmediate(ping);
  };
  setImmediate(ping);
  const started = performance.now();
  const result = await work();
  const ms = performance.now() - started;
  running = false;
  // Let the ping see the end of the scrape's last synchronous stretch.
  await new Promise((r) => setImmediate(r));
  worst = Math.max(worst, performance.now() - last);
  return { result, ms, blockMs: worst };
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
const round = (x, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

export async function runScrapeBench({ quick = false } = {}) {
  const iterations = quick ? 10 : 100;
  const warmup = quick ? 2 : 5;
  const rows = [];
  for (const scenario of SCENARIOS) {
    const telemetry = filledTelemetry(scenario);
    let text = '';
    for (let i = 0; i < warmup; i++) text = await telemetry.exposition();
    const times = [];
    const blocks = [];
    const histogram = monitorEventLoopDelay({ resolution: 1 });
    histogram.enable();
    for (let i = 0; i < iterations; i++) {
      const { result, ms, blockMs } = await longestBlock(() => telemetry.exposition());
      text = result;
      times.push(ms);
      blocks.push(blockMs);
      // A scrape every few ms is far more than Prometheus does; let the loop breathe in between.
      await new Promise((r) => setTimeout(r, 2));
    }
    histogram.disable();
    times.sort((a, b) => a - b);
    blocks.sort((a, b) => a - b);
    const lines = text.split('\n');
    const samples = lines.filter((l) => l && !l.startsWith('#'));
    const ours = samples.filter((l) => l.startsWith('cutover_'));
    rows.push({
      scenario: scenario.name,
      routes: scenario.routes,
      mismatchSeries: samples.filter((l) => l.startsWith('cutover_mismatch_fields_total{')).length,
      series: samples.length,
      cutoverSeries: ours.length,
      bytes: Buffer.byteLength(text),
      iterations,
      medianMs: round(quantile(times, 0.5)),
      p99Ms: round(quantile(times, 0.99)),
      maxMs: round(times[times.length - 1]),
      blockMedianMs: round(quantile(blocks, 0.5)),
      blockMaxMs: round(blocks[blocks.length - 1]),
      // monitorEventLoopDelay over the whole measurement (scrapes and the pauses between them).
      loopDelayP99Ms: round(histogram.percentile(99) / 1e6),
      loopDelayMaxMs: round(histogram.max / 1e6),
    });
    telemetry.registry.clear();
    globalThis.gc?.();
  }
  return rows;
}

export function markdownTable(rows) {
  const head = '| scenario | series (cutover_*) | mismatch series | bytes | scrape median ms | p99 ms | max ms | longest loop block median / max ms | loop delay p99 / max ms |';
  const sep = '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |';
  const body = rows.map(
    (r) =>
      `| ${r.scenario} | ${r.series} (${r.cutoverSeries}) | ${r.mismatchSeries} | ${r.bytes} | ${r.medianMs} | ${r.p99Ms} | ${r.maxMs} | ${r.blockMedianMs} / ${r.blockMaxMs} | ${r.loopDelayP99Ms} / ${r.loopDelayMaxMs} |`,
  );
  return [head, sep, ...body].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const quick = process.argv.includes('--quick');
  const rows = await runScrapeBench({ quick });
  console.log(`node ${process.version}, ${rows[0].iterations} scrapes per scenario${quick ? ' (quick)' : ''}\n`);
  console.log(markdownTable(rows));
}
