import { describe, expect, it } from 'vitest';
import { Analysis } from '../src/analysis/analysis.js';
import { DEFAULT_GATES, latencyGate } from '../src/cutover/gates.js';
import { validateConfig } from '../src/config/load.js';
import type { UpstreamAnswer } from '../src/forward/capture.js';
import { RouteTable } from '../src/routing/table.js';
import { Telemetry } from '../src/telemetry/metrics.js';

function answer(body: string): UpstreamAnswer {
  return { outcome: '2xx', status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(body), truncated: false, seconds: 0.01 };
}

describe('analysis queue', () => {
  it('counts pairs dropped for a full comparison queue against their own route only', async () => {
    const config = validateConfig({
      backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
      // These pairs carry no baseline replay: with baselines on, the first ones would wait for one.
      defaults: { shadow: { baselinePercent: 0 } },
      routes: [
        { name: 'busy', match: { path: '/busy' } },
        { name: 'calm', match: { path: '/calm' } },
      ],
    });
    const telemetry = new Telemetry({ defaultMetrics: false });
    const routes = new RouteTable(config.routes, config.defaults, telemetry);
    const analysis = new Analysis(routes, { queueLimit: 2 });
    const pair = (name: string) => ({ route: routes.get(name)!, method: 'GET', path: `/${name}`, primaryIsNew: false, primary: answer('{"a":1}'), shadow: answer('{"a":1}'), baseline: null });
    for (let i = 0; i < 5; i++) analysis.submit(pair('busy'));
    expect(analysis.diffs('busy')!.droppedForOverload).toBe(3);
    expect(analysis.diffs('calm')!.droppedForOverload).toBe(0);
    const scrape = await telemetry.exposition();
    expect(scrape).toMatch(/cutover_shadow_skipped_total\{route="busy",reason="overload"\} 3/);
    // Counted under the bound it hit (the comparison queue), and against no other route.
    expect(scrape).toMatch(/cutover_shadow_overload_total\{route="busy",cause="comparison_queue"\} 3/);
    expect(scrape).toMatch(/cutover_shadow_overload_total\{route="busy",cause="in_flight"\} 0/);
    expect(scrape).toMatch(/cutover_shadow_overload_total\{route="calm",cause="comparison_queue"\} 0/);
  });
});

/** One route `r` on `/r`, without baseline replays (a pair then needs no wait for one). */
function oneRoute(): RouteTable {
  const config = validateConfig({
    backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
    defaults: { shadow: { baselinePercent: 0 } },
    routes: [{ name: 'r', match: { path: '/r' } }],
  });
  return new RouteTable(config.routes, config.defaults, new Telemetry({ defaultMetrics: false }));
}

describe('what the main thread keeps between comparisons', () => {
  it('keeps the big values of answers compared on the main thread (no workers), and recognises them', () => {
    const routes = oneRoute();
    // No recent pairs: they would answer these pairs of one request before any value is read.
    const analysis = new Analysis(routes, { workers: 0, recentBytes: 0 });
    const lines = JSON.stringify(Array.from({ length: 3000 }, (_, i) => ({ line: i, note: 'sturdy steel housing' })));
    for (let k = 0; k < 4; k++) {
      const pair = { route: routes.get('r')!, method: 'GET', path: '/r', primaryIsNew: false, primary: answer(`{"id":"a${k}","lines":${lines}}`), shadow: answer(`{"id":"b${k}","lines":${lines}}`), baseline: null };
      expect(analysis.process(pair)).toBe('mismatch');
    }
    const [main] = analysis.spans();
    expect(main).toMatchObject({ entries: 1 });
    expect(main!.hits).toBeGreaterThanOrEqual(2);
  });

  it('keeps recent pairs on the main thread (compare/recent.ts): a request polled again is answered from them', () => {
    const routes = oneRoute();
    const analysis = new Analysis(routes, { workers: 0 });
    const lines = JSON.stringify(Array.from({ length: 30 }, (_, i) => ({ line: i, note: `note ${i}` })));
    for (let k = 0; k < 6; k++) {
      const pair = { route: routes.get('r')!, method: 'GET', path: '/r', primaryIsNew: false, primary: answer(`{"rid":"a${k}","lines":${lines},"v":1}`), shadow: answer(`{"rid":"b${k}","lines":${lines},"v":2}`), baseline: null };
      expect(analysis.process(pair)).toBe('mismatch');
    }
    // The first pair is a sighting, the second is kept, the other four are answered from it.
    expect(analysis.recentPairs()).toMatchObject([{ hits: 4, entries: 1 }]);
    expect(new Analysis(routes, { workers: 0, recentBytes: 0 }).recentPairs()).toEqual([null]);
  });
});

describe('evidence for the controller', () => {
  function setup() {
    const config = validateConfig({
      backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
      // These pairs carry no baseline replay: with baselines on, the first ones would wait for one.
      defaults: { shadow: { baselinePercent: 0 } },
      routes: [{ name: 'r', match: { path: '/r' } }, { name: 'keep', match: { path: '/keep' } }],
    });
    const telemetry = new Telemetry({ defaultMetrics: false });
    const routes = new RouteTable(config.routes, config.defaults, telemetry);
    let now = 1_000_000;
    const analysis = new Analysis(routes, { now: () => now });
    // As in the proxy: the live answer is counted when it ends (and reaches the evidence from there), then its pair is compared.
    const pair = (route: string, legacy: UpstreamAnswer, candidate: UpstreamAnswer) => {
      routes.get(route)!.metrics.request('legacy', 'primary', legacy.outcome, legacy.seconds);
      return analysis.process({ route: routes.get(route)!, method: 'GET', path: '/r', primaryIsNew: false, primary: legacy, shadow: candidate, baseline: null });
    };
    return { analysis, pair, config, telemetry, routes, advance: (ms: number) => (now += ms), now: () => now };
  }

  it('counts comparisons, real mismatches, errors and latency samples since a moment, and starts afresh at a later one', () => {
    const { analysis, pair, advance, now } = setup();
    const since = now();
    expect(analysis.evidence('r', since).comparisons).toBe(0);
    pair('r', answer('{"a":1}'), answer('{"a":1}'));
    pair('r', answer('{"a":1}'), answer('{"a":2}'));
    pair('r', answer('{"a":1}'), { ...answer(''), outcome: '5xx', status: 503 });
    const e = analysis.evidence('r', since);
    // A 503 against a 200 is both a status mismatch and an error of new.
    expect(e.comparisons).toBe(3);
    expect(e.mismatches).toBe(2);
    expect(e.new).toMatchObject({ requests: 3, errors: 1 });
    expect(e.legacy).toMatchObject({ requests: 3, errors: 0 });
    // Live answers among live answers (legacy served all three); each pair's two latencies together.
    expect(e.legacy.latencies).toHaveLength(3);
    expect(e.new.latencies).toHaveLength(0);
    expect(e.paired.legacy).toHaveLength(3);
    expect(e.paired.new).toHaveLength(3);
    advance(1_000);
    const step = now();
    expect(analysis.evidence('r', step)).toMatchObject({ since: step, comparisons: 0, mismatches: 0 });
    pair('r', answer('{"a":1}'), answer('{"a":1}'));
    expect(analysis.evidence('r', step).comparisons).toBe(1);
  });

  it('live answers count whether mirrored or not, and a client that gave up before an answer counts against that backend', () => {
    const { analysis, pair, routes, now } = setup();
    const since = now();
    analysis.evidence('r', since);
    pair('r', answer('{"a":1}'), answer('{"a":1}'));
    // Served by new, not mirrored (a POST, sampled out): a 500, a timeout, a client that left waiting.
    const metrics = routes.get('r')!.metrics;
    metrics.request('new', 'primary', '5xx', 0.02);
    metrics.request('new', 'primary', 'timeout', 5);
    metrics.unanswered('new');
    metrics.request('new', 'primary', '2xx', 0.01);
    const e = analysis.evidence('r', since);
    expect(e.comparisons).toBe(1);
    expect(e.new).toMatchObject({ requests: 5, errors: 3 });
    expect(e.legacy).toMatchObject({ requests: 1, errors: 0 });
    // The 5xx's time counts, the timeout's and the unanswered one's do not; the mirror's goes with its pair.
    expect(e.new.latencies).toEqual([0.02, 0.01]);
    expect(e.paired.new).toEqual([0.01]);
  });

  /**
   * A route with fast GETs (mirrored) and slow POSTs (never mirrored), on the evidence log as the
   * proxy feeds it: each live answer when it ends, then each GET's pair. `live` says which backend
   * serves the live traffic; `getMs` each backend's GET time.
   */
  function mixedRoute(live: 'legacy' | 'new', getMs: { legacy: number; new: number }, posts: number) {
    const { analysis, routes, now } = setup();
    const since = now();
    analysis.evidence('r', since);
    const route = routes.get('r')!;
    const timed = (ms: number) => ({ ...answer('{"a":1}'), seconds: ms / 1000 });
    for (let i = 0; i < 300; i++) {
      const jitter = ((i * 7919) % 100) / 100; // a deterministic 0-1 ms spread
      const legacy = timed(getMs.legacy + jitter);
      const candidate = timed(getMs.new + jitter);
      const primary = live === 'legacy' ? legacy : candidate;
      route.metrics.request(live, 'primary', primary.outcome, primary.seconds);
      analysis.process({ route, method: 'GET', path: '/r', primaryIsNew: live === 'new', primary, shadow: live === 'legacy' ? candidate : legacy, baseline: null });
    }
    for (let i = 0; i < posts; i++) route.metrics.request(live, 'primary', '2xx', (40 + ((i * 31) % 20)) / 1000);
    return latencyGate(analysis.evidence('r', since), DEFAULT_GATES);
  }

  it("the latency gate sets each mirror against its own live answer, not against other requests' (a slower new is not hidden by legacy's slow POSTs)", () => {
    // Before any shift: legacy serves everything, new only answers mirrored GETs, twice as slowly.
    // Set against all of legacy's live answers (a third of them 40 ms POSTs), new's 10 ms GETs
    // looked faster; pair by pair they are 5 ms slower.
    const gate = mixedRoute('legacy', { legacy: 5, new: 10 }, 200);
    expect(gate.verdict).toBe('fail');
    expect(gate.detail).toMatch(/New is slower: .* on compared pairs/);
  });

  it('a route shifted to new whose POSTs are slow on both backends is not failed for them (no false rollback)', () => {
    // New serves the live traffic, POSTs included (60 %); legacy only answers mirrored GETs, as fast as new.
    const gate = mixedRoute('new', { legacy: 5, new: 5 }, 450);
    expect(gate.verdict).toBe('pass');
    expect(gate.detail).toMatch(/on compared pairs/);
  });

  it('a pair asked for before the last weight change but compared after it is not evidence of the new step', () => {
    const { analysis, routes, advance, now } = setup();
    const asked = now();
    advance(2_000);
    const step = now();
    analysis.evidence('r', step);
    const pairAt = (startedAt: number, candidate: string) =>
      analysis.process({ route: routes.get('r')!, method: 'GET', path: '/r', primaryIsNew: false, primary: answer('{"a":1}'), shadow: answer(candidate), baseline: null, startedAt });
    // A mirror in flight across the change (a slow shadow backend, a long queue): the step before's.
    pairAt(asked, '{"a":2}');
    pairAt(step + 1, '{"a":1}');
    const e = analysis.evidence('r', step);
    expect(e).toMatchObject({ comparisons: 1, mismatches: 0 });
    expect(e.new.requests).toBe(1);
  });

  it('answers for a step asked about late: what came after the step counts, what came before does not', () => {
    const { analysis, pair, advance, now } = setup();
    analysis.evidence('r', now());
    pair('r', answer('{"a":1}'), answer('{"a":2}'));
    advance(5_000);
    const step = now();
    advance(1_000);
    pair('r', answer('{"a":1}'), answer('{"a":1}'));
    pair('r', answer('{"a":1}'), answer('{"a":1}'));
    advance(30_000);
    // The controller's first check of the step comes 31 s after it began.
    const e = analysis.evidence('r', step);
    expect(e).toMatchObject({ since: step, comparisons: 2, mismatches: 0, legacy: { requests: 2 }, new: { requests: 2 } });
    expect(e.paired.new).toEqual([0.01, 0.01]);
    expect(e.legacy.latencies).toEqual([0.01, 0.01]);
    // Asking from before the step does not bring back what the step forgot.
    expect(analysis.evidence('r', step - 10_000)).toMatchObject({ since: step, comparisons: 2 });
  });

  it('keeps windows and evidence by route name across a reloaded route table', async () => {
    const { analysis, pair, config, telemetry } = setup();
    pair('keep', answer('{"a":1}'), answer('{"a":2}'));
    const reloaded = new RouteTable(config.routes.filter((r) => r.name === 'keep'), config.defaults, telemetry);
    analysis.configure(reloaded);
    expect(analysis.diffs('keep')!.comparisons.total).toBe(1);
    expect(analysis.evidence('keep', 0).mismatches).toBe(1);
    expect(analysis.diffs('r')).toBeUndefined();
  });

  it('lets go of a removed route: its metrics (kept for their counters) no longer feed its evidence', () => {
    const { analysis, config, telemetry } = setup();
    const sinkOf = (route: string) => (telemetry.route(route) as unknown as { evidenceSink: unknown }).evidenceSink;
    expect(sinkOf('r')).not.toBeNull();
    const reloaded = new RouteTable(config.routes.filter((r) => r.name === 'keep'), config.defaults, telemetry);
    analysis.configure(reloaded);
    // Reads the private field on purpose: what it holds is the bound under test.
    expect(sinkOf('r')).toBeNull();
    telemetry.route('keep').shadowSkipped('upgrade');
    expect(analysis.evidence('keep', 0).notMirrored).toEqual({ upgrade: 1 });
  });
});

describe('a route removed by a reload', () => {
  it('is kept for its window only, for the mirrors on their way, then let go without waiting for another reload', async () => {
    const config = validateConfig({
      backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
      routes: [{ name: 'r', match: { path: '/r' } }, { name: 'keep', match: { path: '/keep' } }],
    });
    const telemetry = new Telemetry({ defaultMetrics: false });
    const analysis = new Analysis(new RouteTable(config.routes, config.defaults, telemetry), { windowMs: 200, workers: 0 });
    analysis.configure(new RouteTable(config.routes.filter((r) => r.name === 'keep'), config.defaults, telemetry));
    // Reads the private map on purpose: what it holds (a route's examples and window) is the bound under test.
    const retired = (analysis as unknown as { retired: Map<string, unknown> }).retired;
    expect([...retired.keys()]).toEqual(['r']);
    await new Promise((r) => setTimeout(r, 400));
    expect(retired.size).toBe(0);
  });
});

describe('noise warm-up', () => {
  it('judges pairs that arrive before the first baseline only after it, so a per-call field is noise from the start', async () => {
    const config = validateConfig({
      backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
      routes: [{ name: 'r', match: { path: '/r' }, shadow: { baselinePercent: 10 } }],
    });
    const telemetry = new Telemetry({ defaultMetrics: false });
    const routes = new RouteTable(config.routes, config.defaults, telemetry);
    const analysis = new Analysis(routes);
    const body = (id: number) => answer(`{"requestId":${id},"a":1}`);
    const pair = (n: number, baseline: boolean) => ({ route: routes.get('r')!, method: 'GET', path: '/r', primaryIsNew: false, primary: body(n), shadow: body(n + 1), baseline: baseline ? body(n + 2) : null });
    // Two mirrors beat the first one, which carries the baseline: they wait for it.
    expect(analysis.process(pair(10, false))).toBeNull();
    expect(analysis.process(pair(20, false))).toBeNull();
    expect(analysis.diffs('r')!.comparisons.total).toBe(0);
    // A write is never replayed, so it has no baseline to wait for.
    expect(analysis.process({ ...pair(30, false), method: 'POST', shadow: answer('{"requestId":30,"a":2}') })).toBe('mismatch');
    expect(analysis.diffs('r')!.comparisons.total).toBe(1);
    expect(analysis.process(pair(0, true))).toBe('noise');
    expect(analysis.diffs('r')!.comparisons).toMatchObject({ total: 4, noise: 3, mismatch: 1 });
    const text = await telemetry.exposition();
    expect(text).not.toMatch(/cutover_mismatch_fields_total\{route="r",field="\$\.requestId"/);
    expect(text).toMatch(/cutover_comparisons_total\{route="r",result="noise"\} 3/);
  });

  it('never holds an unsafe pair (a mirrored POST carries no baseline), so a POST-only route is judged at once', () => {
    const config = validateConfig({
      backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
      routes: [{ name: 'w', match: { path: '/w' }, shadow: { unsafe: true, baselinePercent: 10 } }],
    });
    const routes = new RouteTable(config.routes, config.defaults, new Telemetry({ defaultMetrics: false }));
    const analysis = new Analysis(routes);
    const pair = { route: routes.get('w')!, method: 'POST', path: '/w', primaryIsNew: false, primary: answer('{"a":1}'), shadow: answer('{"a":1}'), baseline: null };
    expect(analysis.process(pair)).toBe('match');
    expect(analysis.diffs('w')!.comparisons.total).toBe(1);
  });

  it('judges what waited at the deadline when no baseline comes (traffic stopped)', async () => {
    const config = validateConfig({
      backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
      routes: [{ name: 'r', match: { path: '/r' }, shadow: { baselinePercent: 10 } }],
    });
    const routes = new RouteTable(config.routes, config.defaults, new Telemetry({ defaultMetrics: false }));
    const analysis = new Analysis(routes, { warmupMs: 100 });
    const pair = { route: routes.get('r')!, method: 'GET', path: '/r', primaryIsNew: false, primary: answer('{"a":1}'), shadow: answer('{"a":2}'), baseline: null };
    expect(analysis.process(pair)).toBeNull();
    const start = Date.now();
    while (analysis.diffs('r')!.comparisons.total === 0 && Date.now() - start < 5_000) await new Promise((r) => setTimeout(r, 20));
    expect(analysis.diffs('r')!.comparisons).toMatchObject({ total: 1, mismatch: 1 });
  });
});
