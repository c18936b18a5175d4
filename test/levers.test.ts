import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startLeverServer, type LeverServer } from './helpers/levers.js';

let s: LeverServer;
beforeEach(async () => {
  s = await startLeverServer();
});
afterEach(async () => {
  await s.close();
});

async function call(method: 'GET' | 'POST', path: string, body?: unknown, token = 'operator-secret') {
  const res = await request(`${s.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.body.text();
  const type = String(res.headers['content-type'] ?? '');
  // any: the tests read whichever JSON shape each route answers.
  return { status: res.statusCode, type, json: type.includes('json') ? (JSON.parse(text) as Record<string, any>) : undefined, text };
}

describe('admin lever routes', () => {
  it('GET /api/state: every route with its state, step, weight, gates beside thresholds, and since when evidence counts', async () => {
    s.traffic.add('get-widget', 100);
    s.clock.t += 30_000;
    await s.controller.tick();
    const { status, json } = await call('GET', '/api/state', undefined, 'viewer-secret');
    expect(status).toBe(200);
    expect(json!.mode).toBe('auto');
    expect(json!.bypass.bypass).toBe(false);
    const [widget, list] = json!.routes;
    expect(widget).toMatchObject({ route: 'get-widget', state: 'shifting', step: 1, weight: 1, sinceIso: new Date(s.clock.t).toISOString() });
    expect(list).toMatchObject({ route: 'list-widgets', state: 'shadow', step: 0, weight: 0 });
    expect(list.gates.map((g: { gate: string; verdict: string; threshold: number }) => [g.gate, g.verdict, g.threshold])).toEqual([
      ['minComparisons', 'no_data', 50],
      ['maxMismatchRate', 'no_data', 0.05],
      ['maxErrorRateIncrease', 'no_data', 0.02],
      ['maxLatencyRatio', 'no_data', 1.5],
    ]);
  });

  it('levers move the route and the audit log names the caller and the reason', async () => {
    expect((await call('POST', '/api/routes/get-widget/promote', { reason: 'canary fine' })).json!.state).toMatchObject({ step: 1, weight: 1 });
    expect((await call('POST', '/api/routes/get-widget/promote', { full: true })).json!.state).toMatchObject({ step: 5, weight: 100 });
    expect((await call('POST', '/api/routes/get-widget/pause')).json!.state).toMatchObject({ paused: true, state: 'paused' });
    expect((await call('POST', '/api/routes/get-widget/resume', {})).json!.state).toMatchObject({ paused: false, state: 'shifting' });
    expect((await call('POST', '/api/routes/get-widget/weight', { weight: 5, reason: 'slow down' })).json!.state).toMatchObject({ weight: 5, step: 2, paused: true });
    expect((await call('POST', '/api/routes/get-widget/rollback', { reason: 'customer report' })).json!.state).toMatchObject({ weight: 0, state: 'rolled_back' });
    expect((await call('POST', '/api/bypass', { on: true, reason: 'incident' })).json!.bypass).toMatchObject({ bypass: true, changedBy: 'alice' });
    const { json } = await call('GET', '/api/audit?limit=3', undefined, 'viewer-secret');
    expect(json!.entries.map((e: { who: string; action: string; why: string; route: string }) => [e.who, e.route, e.action, e.why])).toEqual([
      ['alice', 'get-widget', 'weight', 'slow down'],
      ['alice', 'get-widget', 'rollback', 'customer report'],
      ['alice', '*', 'bypass-on', 'incident'],
    ]);
    expect((await call('GET', '/api/audit')).json!.entries).toHaveLength(7);
  });

  it('answers problems: unknown route 404, bad weight 400, pause step 409, bad body 400', async () => {
    const unknown = await call('POST', '/api/routes/nope/promote', {});
    expect(unknown).toMatchObject({ status: 404, type: expect.stringContaining('application/problem+json') });
    expect(unknown.json).toMatchObject({ code: 'UNKNOWN_ROUTE', detail: 'No route is named "nope"; see the routes in the config.' });
    expect((await call('POST', '/api/routes/get-widget/weight', { weight: 150 })).json).toMatchObject({ status: 400, code: 'BAD_WEIGHT' });
    expect((await call('POST', '/api/routes/get-widget/weight', { weight: 'lots' })).json).toMatchObject({ status: 400, code: 'BAD_REQUEST' });
    expect((await call('POST', '/api/routes/get-widget/promote', { reason: 7 })).json).toMatchObject({ status: 400, code: 'BAD_REQUEST' });
    expect((await call('POST', '/api/bypass', {})).json).toMatchObject({ status: 400, detail: 'Send { "on": true } or { "on": false }.' });
    expect((await call('GET', '/api/audit?limit=0')).status).toBe(400);
    await call('POST', '/api/routes/get-widget/promote', { full: true });
    await call('POST', '/api/routes/get-widget/promote', {});
    expect((await call('POST', '/api/routes/get-widget/promote', {})).json).toMatchObject({ status: 409, code: 'ALREADY_COMPLETE' });
  });

  it('lever routes declare the operator role, reads the viewer role', async () => {
    expect((await call('POST', '/api/routes/get-widget/promote', {}, 'viewer-secret')).status).toBe(403);
    expect((await call('POST', '/api/bypass', { on: true }, 'viewer-secret')).status).toBe(403);
    expect((await call('GET', '/api/state', undefined, 'nobody')).status).toBe(401);
    expect(s.store.snapshot().routes['get-widget'].weight).toBe(0);
    expect(s.store.snapshot().global.bypass).toBe(false);
  });

  it('GET /api/report: JSON and markdown', async () => {
    const json = await call('GET', '/api/report', undefined, 'viewer-secret');
    expect(json.json).toMatchObject({ verdict: 'NOT READY', configHash: 'cafe1234' });
    expect(json.json!.reasons).toContain('get-widget has not been checked yet.');
    const md = await call('GET', '/api/report?format=markdown', undefined, 'viewer-secret');
    expect(md.type).toContain('text/markdown');
    expect(md.text).toMatch(/^# Cutover readiness: NOT READY/);
    expect((await call('GET', '/api/report?format=pdf')).status).toBe(400);
  });
});
