/** The controller judging the real analysis's evidence (no test double between them). */
import { describe, expect, it } from 'vitest';
import { Analysis } from '../src/analysis/analysis.js';
import { validateConfig } from '../src/config/load.js';
import { AuditLog } from '../src/cutover/audit.js';
import { Controller, controllerConfig } from '../src/cutover/controller.js';
import { createCutover } from '../src/cutover/index.js';
import { buildReport, fieldsFromDiffs } from '../src/cutover/report.js';
import { MemoryStore } from '../src/cutover/store.js';
import type { UpstreamAnswer } from '../src/forward/capture.js';
import { RouteTable } from '../src/routing/table.js';
import { Telemetry } from '../src/telemetry/metrics.js';

function answer(body: string, seconds = 0.01): UpstreamAnswer {
  return { outcome: '2xx', status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(body), truncated: false, seconds };
}

describe('controller over the real analysis', () => {
  it('advances on matching answers, rolls back on a planted difference, and the report names the field', async () => {
    const config = validateConfig({
      backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
      // These pairs carry no baseline replay: with baselines on, the first ones would wait for one.
      defaults: { shadow: { baselinePercent: 0 } },
      cutover: { steps: [0, 10, 100], holdIntervals: 1, failureThreshold: 2, gates: { minComparisons: 100, maxMismatchRate: 0.05 } },
      routes: [{ name: 'r', match: { path: '/r' } }],
    });
    const telemetry = new Telemetry({ defaultMetrics: false });
    const routes = new RouteTable(config.routes, config.defaults, telemetry);
    let now = Date.UTC(2026, 0, 1);
    const analysis = new Analysis(routes, { now: () => now });
    const store = new MemoryStore();
    const audit = new AuditLog();
    const { settings, routes: controlled } = controllerConfig(config);
    const controller = new Controller(settings, controlled, { store, evidence: analysis, audit, now: () => now, metrics: telemetry.cutover });
    await controller.init();
    const traffic = (n: number, candidate: (i: number) => string) => {
      for (let i = 0; i < n; i++) {
        const primary = answer(`{"id":${i},"price":10}`, 0.01 + (i % 7) / 1000);
        // As in the proxy: the live answer is counted (and told to the evidence) when it ends.
        routes.get('r')!.metrics.request('legacy', 'primary', primary.outcome, primary.seconds);
        analysis.process({ route: routes.get('r')!, method: 'GET', path: `/r/${i}`, primaryIsNew: false, primary, shadow: answer(candidate(i), 0.01 + (i % 5) / 1000), baseline: null });
      }
    };

    traffic(200, (i) => `{"id":${i},"price":10}`);
    now += 30_000;
    await controller.tick();
    expect(store.snapshot().routes.r).toMatchObject({ step: 1, weight: 10 });

    // The next step's evidence starts empty, then a planted difference on 20% of answers.
    for (let round = 0; round < 2; round++) {
      traffic(200, (i) => `{"id":${i},"price":${i % 5 === 0 ? 11 : 10}}`);
      now += 30_000;
      await controller.tick();
    }
    expect(store.snapshot().routes.r).toMatchObject({ step: 0, weight: 0, state: 'rolled_back' });
    expect(await telemetry.exposition()).toContain('cutover_rollbacks_total{route="r",reason="maxMismatchRate"} 1');

    const input = await controller.reportInput({ configHash: 'h', fields: (route) => {
      const d = analysis.diffs(route);
      return d && fieldsFromDiffs(d);
    } });
    const report = buildReport(input);
    expect(report.verdict).toBe('NOT READY');
    expect(report.routes[0].topFields[0]).toMatchObject({ field: '$.price', example: { legacy: 10, new: 11 } });
    expect(report.routes[0].rollbacks[0].who).toBe('controller');
  });
});

describe('createCutover (what the app wires)', () => {
  it('seeds the proxy with every weight, serves the levers, and applies a promote', async () => {
    const { default: Fastify } = await import('fastify');
    const config = validateConfig({
      backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
      // These pairs carry no baseline replay: with baselines on, the first ones would wait for one.
      defaults: { shadow: { baselinePercent: 0 } },
      routes: [
        { name: 'a', match: { path: '/a' }, weight: 5 },
        { name: 'b', match: { path: '/b' } },
      ],
    });
    const telemetry = new Telemetry({ defaultMetrics: false });
    const analysis = new Analysis(new RouteTable(config.routes, config.defaults, telemetry));
    const applied: [string, number][] = [];
    const cutover = await createCutover(config, { store: new MemoryStore(), analysis, telemetry, onWeight: (route, w) => applied.push([route, w]) });
    expect(applied).toEqual([
      ['a', 5],
      ['b', 0],
    ]);
    const app = Fastify();
    cutover.register(app, () => 'hash');
    await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
      const state = (await (await fetch(`${base}/api/state`)).json()) as { routes: { route: string; weight: number; step: number }[] };
      expect(state.routes.map((r) => [r.route, r.weight, r.step])).toEqual([
        ['a', 5, 2],
        ['b', 0, 0],
      ]);
      const res = await fetch(`${base}/api/routes/b/promote`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"reason":"go"}' });
      expect(res.status).toBe(200);
      expect(applied.at(-1)).toEqual(['b', 1]);
      expect(await telemetry.exposition()).toContain('cutover_stage{route="b"} 1');
    } finally {
      await app.close();
      await cutover.close();
    }
  });
});
