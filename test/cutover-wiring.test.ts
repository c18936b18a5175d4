/**
 * The controller wired into the running proxy (issue 11): the levers reach live traffic on real
 * sockets, and the emergency bypass sends everything to legacy with mirroring off.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { parse as parseYaml } from 'yaml';
import { startBackend, waitFor, type TestBackend } from './helpers/backend.js';
import { baseConfig, startProxy, type InProcessProxy } from './helpers/proxy.js';
import { validateConfig } from '../src/config/load.js';
import { sample, scrape } from './helpers/metrics.js';

const TOKEN = 'wiring-operator-token';
let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

function tokenFile(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'cutover-wiring-')), 'token');
  writeFileSync(file, `${TOKEN}\n`);
  return file;
}

async function setup(weight: number): Promise<{ p: InProcessProxy; legacy: TestBackend; next: TestBackend }> {
  const legacy = await startBackend();
  const next = await startBackend();
  const p = await startProxy(
    baseConfig(legacy.url, next.url, {
      admin: { host: '127.0.0.1', port: 0, tokenFile: tokenFile() },
      routes: [{ name: 'api', match: { path: '/api/*' }, weight, shadow: { percent: 100, baselinePercent: 0 } }],
    }),
  );
  cleanup.push(() => p.close(500), () => legacy.close(), () => next.close());
  return { p, legacy, next };
}

async function admin(p: InProcessProxy, method: 'GET' | 'POST', path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await request(`${p.adminUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
}

async function get(p: InProcessProxy, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await request(`${p.dataUrl}/api/x${i}`);
    await res.body.dump();
    expect(res.statusCode).toBe(200);
  }
}

async function skippedForBypass(p: InProcessProxy): Promise<number> {
  return sample(await scrape(p), 'cutover_shadow_skipped_total{route="api",reason="bypass"}');
}

describe('the controller in the running proxy', () => {
  it('bypass on: a route at weight 100 is served by legacy, nothing is mirrored to new, skips are counted as bypass; off: back to new', async () => {
    const { p, legacy, next } = await setup(100);
    await get(p, 4);
    expect(next.received).toHaveLength(4);
    // Mirrors to legacy complete after the client answer: wait until all four arrived.
    await waitFor(() => legacy.received.length === 4, 5_000, 'the four mirrors on legacy');

    expect((await admin(p, 'POST', '/api/bypass', { on: true, reason: 'incident' })).status).toBe(200);
    const newBefore = next.received.length;
    const legacyBefore = legacy.received.length;
    await get(p, 10);
    expect(legacy.received.length - legacyBefore).toBe(10);
    // No live request and no mirror reached new while the bypass was on.
    expect(next.received.length).toBe(newBefore);
    expect(await skippedForBypass(p)).toBe(10);
    const state = (await admin(p, 'GET', '/api/state')).json as { bypass: { bypass: boolean }; routes: { weight: number; effectiveWeight: number }[] };
    expect(state.bypass.bypass).toBe(true);
    expect(state.routes[0]).toMatchObject({ weight: 100, effectiveWeight: 0 });
    expect(await scrape(p)).toMatch(/^cutover_traffic_weight\{route="api"\} 0$/m);

    expect((await admin(p, 'POST', '/api/bypass', { on: false })).status).toBe(200);
    await get(p, 3);
    expect(next.received.length - newBefore).toBe(3);
    expect(await skippedForBypass(p)).toBe(10);
    const audit = (await admin(p, 'GET', '/api/audit')).json as { entries: { action: string }[] };
    expect(audit.entries.map((e) => e.action)).toEqual(['bypass-on', 'bypass-off']);
  });

  it('levers reach live traffic: weight 100 by hand sends requests to new, rollback sends them back to legacy', async () => {
    const { p, legacy, next } = await setup(0);
    await get(p, 2);
    expect(next.received.filter((r) => r.headers['x-cutover-shadow'] === undefined)).toHaveLength(0);
    expect((await admin(p, 'POST', '/api/routes/api/weight', { weight: 100 })).json.state).toMatchObject({ weight: 100, paused: true });
    const before = next.received.filter((r) => r.headers['x-cutover-shadow'] === undefined).length;
    await get(p, 3);
    expect(next.received.filter((r) => r.headers['x-cutover-shadow'] === undefined).length - before).toBe(3);
    expect((await admin(p, 'POST', '/api/routes/api/rollback', { reason: 'test' })).json.state).toMatchObject({ weight: 0, state: 'rolled_back' });
    const legacyLive = () => legacy.received.filter((r) => r.headers['x-cutover-shadow'] === undefined).length;
    const l0 = legacyLive();
    await get(p, 2);
    expect(legacyLive() - l0).toBe(2);
    expect((await admin(p, 'GET', '/api/report')).json).toMatchObject({ ready: false });
  });
});

describe('reloads', () => {
  it('the controller follows a reloaded config: new steps and routes, stored weights kept by name', async () => {
    const legacy = await startBackend();
    const next = await startBackend();
    const token = tokenFile();
    const raw = (steps: number[], names: string[]) =>
      baseConfig(legacy.url, next.url, {
        admin: { host: '127.0.0.1', port: 0, tokenFile: token },
        cutover: { steps, state: { store: 'memory' } },
        // As the helper sets it (a restart-only key: the reloaded file must say the same).
        shadow: { shedAt: { eventLoopDelay: 0, utilisation: 1 } },
        routes: names.map((name) => ({ name, match: { path: `/${name}/*` } })),
      });
    let current = raw([0, 10, 100], ['api']);
    const p = await startProxy(current, { reloadConfig: async () => validateConfig(current, 'test config') });
    cleanup.push(() => p.close(500), () => legacy.close(), () => next.close());
    expect((await admin(p, 'POST', '/api/routes/api/promote')).json.state).toMatchObject({ weight: 10, step: 1 });
    current = raw([0, 10, 50, 100], ['api', 'more']);
    const outcome = await p.reload('test');
    expect(outcome, JSON.stringify(outcome)).toMatchObject({ ok: true });
    await waitFor(async () => ((await admin(p, 'GET', '/api/state')).json as { routes: unknown[] }).routes.length === 2, 5_000, 'the reloaded routes in /api/state');
    const state = (await admin(p, 'GET', '/api/state')).json as { steps: number[]; routes: { route: string; weight: number }[] };
    expect(state.steps).toEqual([0, 10, 50, 100]);
    expect(state.routes.map((r) => [r.route, r.weight])).toEqual([['api', 10], ['more', 0]]);
    expect((await admin(p, 'POST', '/api/routes/more/promote')).json.state).toMatchObject({ weight: 10 });
    // The reloaded table took the stored weight of api: live requests reach new at 10%.
    for (let i = 0; i < 10; i++) await (await request(`${p.dataUrl}/api/${i}`)).body.dump();
    expect(next.received.filter((r) => r.headers['x-cutover-shadow'] === undefined && r.url.startsWith('/api/'))).toHaveLength(1);
  });
});

describe('the runbooks in dashboards/alerts.yaml', () => {
  // That each named command and admin path exists is test/runbooks.test.ts; here: the levers are named.
  it('name the real levers: rollback, pause, resume, bypass, POST /api/bypass', () => {
    const rules = (parseYaml(readFileSync(join(import.meta.dirname, '../dashboards/alerts.yaml'), 'utf8')) as { groups: { rules: { annotations?: { runbook?: string } }[] }[] }).groups.flatMap((g) => g.rules);
    const text = rules.map((r) => r.annotations?.runbook ?? '').join('\n');
    const commands = new Set([...text.matchAll(/`cutover ([a-z]+)/g)].map((m) => m[1]));
    for (const lever of ['rollback', 'pause', 'resume', 'bypass']) expect(commands, lever).toContain(lever);
    expect(text).toContain('`cutover rollback --route {{ $labels.route }}`');
    expect(text).toContain('POST /api/bypass');
  });
});

describe('readiness report: the revocation to-do list', () => {
  it('names a legacy credential still used on a route after its cutover completed, by fingerprint only', async () => {
    const legacy = await startBackend();
    const next = await startBackend();
    const p = await startProxy(
      baseConfig(legacy.url, next.url, {
        admin: { host: '127.0.0.1', port: 0, tokenFile: tokenFile() },
        cutover: { interval: '100ms', holdIntervals: 1, gates: { minComparisons: 20, maxMismatchRate: 0.2 } },
        routes: [{ name: 'api', match: { path: '/api/*' }, shadow: { percent: 100, baselinePercent: 0 } }],
      }),
    );
    cleanup.push(() => p.close(500), () => legacy.close(), () => next.close());
    const use = async (key?: string) => {
      const res = await request(`${p.dataUrl}/api/orders`, { headers: key === undefined ? {} : { 'x-api-key': key } });
      await res.body.dump();
      expect(res.statusCode).toBe(200);
    };
    await use('key-before-completion');
    expect((await admin(p, 'POST', '/api/routes/api/promote', { full: true, reason: 'done' })).status).toBe(200);
    // At 100% the controller completes the route once its gates pass on fresh evidence.
    await waitFor(async () => {
      await use();
      const state = (await admin(p, 'GET', '/api/state')).json as { routes: { route: string; state: string }[] };
      return state.routes.find((r) => r.route === 'api')?.state === 'complete';
    }, 20_000, 'the route to complete');
    await use('still-used-after-completion');
    const report = (await admin(p, 'GET', '/api/report')).json as { stragglers: { fingerprint: string; routes: string[]; requests: number }[] };
    expect(report.stragglers).toHaveLength(1);
    expect(report.stragglers[0]).toMatchObject({ routes: ['api'], requests: 1 });
    expect(report.stragglers[0].fingerprint).toMatch(/^fp_[0-9a-f]{16}$/);
    const markdown = await (await request(`${p.adminUrl}/api/report?format=markdown`, { headers: { authorization: `Bearer ${TOKEN}` } })).body.text();
    expect(markdown).toContain('revocation to-do');
    expect(markdown).toContain(report.stragglers[0].fingerprint);
    expect(JSON.stringify(report) + markdown).not.toContain('still-used-after-completion');
  });
});
