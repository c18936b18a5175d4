/**
 * Admin token bypass (issue 8 row 1): every registered admin route, reached through encoded,
 * absolute-form, double-slash, dot-segment and case variants of its path, answers 401 without a
 * token. The allowlist is exact, and roles are enforced on the matched route.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { OPEN_ADMIN_PATHS, callerOf } from '../../src/admin/auth.js';
import { adminRoutesOf, sendProblem } from '../../src/admin/server.js';
import { startBackend, type TestBackend } from '../helpers/backend.js';
import { baseConfig, startProxy, type InProcessProxy } from '../helpers/proxy.js';
import { rawExchange, oneResponse } from './raw.js';

let legacy: TestBackend;
let next: TestBackend;
let proxy: InProcessProxy;
const dir = mkdtempSync(join(tmpdir(), 'cutover-admin-'));
writeFileSync(join(dir, 'viewer.token'), 'viewer-secret\n');
process.env.CUTOVER_TEST_OPERATOR = 'operator-secret';

beforeAll(async () => {
  legacy = await startBackend();
  next = await startBackend();
  proxy = await startProxy(
    baseConfig(legacy.url, next.url, {
      admin: {
        host: '127.0.0.1',
        port: 0,
        tokens: [
          { name: 'watcher', role: 'viewer', tokenFile: join(dir, 'viewer.token') },
          { name: 'oncall', role: 'operator', tokenEnv: 'CUTOVER_TEST_OPERATOR' },
        ],
      },
      routes: [{ name: 'widgets', match: { path: '/v1/widgets/:id' } }],
    }),
    {
      adminRoutes: [
        (app) => {
          // A lever, registered the way other modules add theirs.
          app.post('/api/test-lever', { config: { role: 'operator' } }, async (req, reply) => sendProblem(reply.code(200), { type: 'x', title: 'ok', status: 200, detail: JSON.stringify(callerOf(req)), code: 'OK' }));
        },
      ],
    },
  );
});

afterAll(async () => {
  await proxy.close(100);
  await Promise.all([legacy.close(), next.close()]);
});

/** Concrete paths for a route template, with parameters filled in. */
function concrete(template: string): string {
  return template.replace(/:[A-Za-z_]+/g, 'widgets').replace(/\*$/, 'x');
}

/** Spellings of `path` that a prefix check on the raw URL would miss, but a router may still match. */
function variants(path: string): string[] {
  const tail = path.slice(1);
  return [
    path,
    `/%${path.charCodeAt(1).toString(16)}${path.slice(2)}`, // /%61pi/...
    `/%${path.charCodeAt(1).toString(16).toUpperCase()}${path.slice(2)}`,
    `//${tail}`,
    `/./${tail}`,
    `/x/../${tail}`,
    `/%2e/${tail}`,
    path.toUpperCase(),
    `${path}/`,
    `${path}?x=1`,
    `${path};x=1`,
  ];
}

describe('admin API is deny by default', () => {
  it('walks every registered non-open admin route and its bypass spellings: 401 without a token', async () => {
    const routes = adminRoutesOf(proxy.admin);
    const guarded = routes.filter((r) => !OPEN_ADMIN_PATHS.has(r.url) && r.method !== 'HEAD');
    expect(guarded.map((r) => r.url)).toContain('/api/routes/:route/diffs');
    for (const route of guarded) {
      for (const path of variants(concrete(route.url))) {
        const res = await rawExchange(proxy.adminUrl, `${route.method} ${path} HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
        expect(res.status, `${route.method} ${path}`).toBe(401);
        const absolute = await rawExchange(proxy.adminUrl, `${route.method} http://h${path} HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
        expect(absolute.status, `${route.method} http://h${path}`).toBe(401);
      }
    }
  });

  it('answers unknown admin URLs with 401, not 404, so nothing leaks to a caller without a token', async () => {
    for (const path of ['/api/nope', '/nope', '/%61pi/nope', '/metrics/x']) {
      const res = await request(`${proxy.adminUrl}${path}`);
      expect(res.statusCode, path).toBe(401);
      expect(res.headers['content-type']).toContain('application/problem+json');
      await res.body.dump();
    }
  });

  it('keeps exactly the allowlist open', async () => {
    expect([...OPEN_ADMIN_PATHS].sort()).toEqual(['/healthz', '/metrics', '/readyz']);
    for (const path of OPEN_ADMIN_PATHS) {
      const res = await request(`${proxy.adminUrl}${path}`);
      expect(res.statusCode, path).toBe(200);
      await res.body.dump();
    }
  });

  it('a lever body is optional even with a JSON content type; another content type is 415 named as such; a poisoned body is refused', async () => {
    const raw = async (type: string, body: string) => {
      const res = await request(`${proxy.adminUrl}/api/routes/widgets/pause`, { method: 'POST', headers: { authorization: 'Bearer operator-secret', 'content-type': type }, body });
      return { status: res.statusCode, json: (await res.body.json()) as Record<string, any> };
    };
    const empty = await raw('application/json', '');
    expect(empty.status).toBe(200);
    expect(empty.json.state).toMatchObject({ paused: true });
    expect((await raw('application/json', '{"reason": "again"}')).status).toBe(200);
    const form = await raw('application/x-www-form-urlencoded', 'reason=x');
    expect(form.json).toMatchObject({ status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', title: 'Unsupported media type' });
    expect((await raw('application/json', '{"__proto__": {"x": 1}}')).status).toBe(400);
    expect((await raw('application/json', '{"reason": ')).json).toMatchObject({ status: 400, code: 'BAD_REQUEST' });
  });

  it('rejects a wrong token and accepts each named token; a viewer on an operator route gets 403', async () => {
    const call = async (method: 'GET' | 'POST', path: string, token?: string) => {
      const res = await request(`${proxy.adminUrl}${path}`, { method, headers: token ? { authorization: `Bearer ${token}` } : {} });
      const body = await res.body.text();
      return { status: res.statusCode, body };
    };
    expect((await call('GET', '/api/routes/widgets/diffs', 'viewer-secretX')).status).toBe(401);
    expect((await call('GET', '/api/routes/widgets/diffs', 'viewer-secret')).status).toBe(200);
    expect((await call('GET', '/api/routes/widgets/diffs', 'operator-secret')).status).toBe(200);
    const forbidden = await call('POST', '/api/test-lever', 'viewer-secret');
    expect(forbidden.status).toBe(403);
    expect(JSON.parse(forbidden.body).code).toBe('FORBIDDEN');
    const allowed = await call('POST', '/api/test-lever', 'operator-secret');
    expect(allowed.status).toBe(200);
    expect(JSON.parse(JSON.parse(allowed.body).detail)).toEqual({ name: 'oncall', role: 'operator' });
    expect((await call('POST', '/%61pi/test-lever', 'viewer-secret')).status).toBe(403);
  });

  it('counts refusals by reason, for someone guessing tokens to be seen; warns at start of tokens short enough to guess (by name, never the secret)', async () => {
    const refused = async () => {
      const text = await (await request(`${proxy.adminUrl}/metrics`)).body.text();
      const read = (reason: string) => Number(new RegExp(`^cutover_admin_refused_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
      return { unauthorized: read('unauthorized'), forbidden: read('forbidden') };
    };
    const before = await refused();
    for (const token of ['a', 'b', 'c']) await (await request(`${proxy.adminUrl}/api/routes/widgets/diffs`, { headers: { authorization: `Bearer ${token}` } })).body.dump();
    await (await request(`${proxy.adminUrl}/api/test-lever`, { method: 'POST', headers: { authorization: 'Bearer viewer-secret' } })).body.dump();
    await (await request(`${proxy.adminUrl}/api/routes/widgets/diffs`, { headers: { authorization: 'Bearer viewer-secret' } })).body.dump();
    expect(await refused()).toEqual({ unauthorized: before.unauthorized + 3, forbidden: before.forbidden + 1 });
    const warnings = proxy.logs.filter((l) => l.includes('shorter than 16 characters'));
    expect(warnings.map((l) => /admin token \\"(\w+)\\"/.exec(l)?.[1]).sort()).toEqual(['oncall', 'watcher']);
    expect(warnings.join('')).not.toMatch(/viewer-secret|operator-secret/);
  });

  it('answers a framing error on the admin port with problem+json, as the data port does', async () => {
    const res = await rawExchange(proxy.adminUrl, 'POST /api/test-lever HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n');
    expect(res.status).toBe(400);
    expect(res.text).toContain('content-type: application/problem+json');
    expect(res.text).toContain('"code":"BAD_FRAMING"');
    expect(res.closed).toBe(true);
  });
});

void oneResponse;
