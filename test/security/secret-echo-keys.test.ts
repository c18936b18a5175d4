/**
 * A backend that echoes its caller's credential as an object key, and a key in the request path:
 * blanked as a whole key (escaped, cut and hashed when long, in any case), never an ordinary name.
 */
import { request } from 'undici';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, waitFor, type TestBackend } from '../helpers/backend.js';
import { baseConfig, startProxy, type InProcessProxy } from '../helpers/proxy.js';

const tokDir = mkdtempSync(join(tmpdir(), 'cutover-keys-'));
writeFileSync(join(tokDir, 'op.token'), 'keys-operator-token-0123456789');
const auth = { authorization: 'Bearer keys-operator-token-0123456789' };

// A 160-char key with '/', '+' (base64-ish, like an AWS session token): longer than MAX_KEY_CHARS (128).
const LONG = 'sk_live_' + 'Ab1/Cd2+Ef3='.repeat(13);
const QUOTE = "sk_live_it's_mine_0042";
const UPKEY = 'pk.live.casekey.5566';
const PATHKEY = 'sk_live_PATHKEY_77aa88bb';
const PASSWORD = 'P4ssw0rd-secret-77';
const basic = (u: string) => `Basic ${Buffer.from(u).toString('base64')}`;

type Case = { name: string; path?: string; headers: Record<string, string>; legacy: unknown; next: unknown; status?: number };
const cases: Case[] = [
  // service account "orders" over Basic; the same field difference from a Bearer caller
  { name: 'basicOrders', headers: { authorization: basic('orders:s3cret-pass-1') }, legacy: { orders: [{ total: 1 }], href: '/v1/orders/1' }, next: { orders: [{ total: 2 }], href: '/v2/orders/1' } },
  { name: 'bearerOrders', headers: { authorization: 'Bearer tok_abcdef_123456' }, legacy: { orders: [{ total: 1 }], href: '/v1/orders/1' }, next: { orders: [{ total: 2 }], href: '/v2/orders/1' } },
  // long key echoed as an object key
  { name: 'long', headers: { 'x-api-key': LONG }, legacy: { limits: { [LONG]: 10 } }, next: { limits: {} } },
  // key with an apostrophe echoed as an object key
  { name: 'quote', headers: { 'x-api-key': QUOTE }, legacy: { limits: { [QUOTE]: 10 } }, next: { limits: {} } },
  // key echoed as an object key in upper case (a backend normalising map keys)
  { name: 'upper', headers: { 'x-api-key': UPKEY }, legacy: { limits: { [UPKEY.toUpperCase()]: 10 } }, next: { limits: {} } },
  // key in the request path (token introspection style), new fails -> recent error
  { name: 'inpath', path: `/m/keys/${PATHKEY}`, headers: { 'x-api-key': PATHKEY }, legacy: { a: 1 }, next: { a: 2 } },
  // Basic's password in the path: the access log must not show it either
  { name: 'passwordInPath', path: `/m/keys/${PASSWORD}`, headers: { authorization: basic(`svc-account:${PASSWORD}`) }, legacy: { a: 1 }, next: { a: 2 } },
];

let legacy: TestBackend;
let next: TestBackend;
let proxy: InProcessProxy;
const out: Record<string, string> = {};

beforeAll(async () => {
  const h = (side: 'legacy' | 'next') => (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => {
    const c = cases.find((x) => x.name === req.headers['x-case'])!;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(c[side]));
  };
  legacy = await startBackend(h('legacy'));
  next = await startBackend(h('next'));
  proxy = await startProxy({
    ...baseConfig(legacy.url, next.url),
    admin: { host: '127.0.0.1', port: 0, tokens: [{ name: 'ops', role: 'operator', tokenFile: join(tokDir, 'op.token') }] },
    credentials: { legacy: [{ header: 'x-api-key' }, { bearer: true }, { basic: true }] },
    log: { level: 'info', access: true },
    routes: [{ name: 'm', match: { path: '/m/*' }, weight: 0, shadow: { percent: 100, baselinePercent: 0 } }],
  });
  for (const c of cases) {
    for (let i = 0; i < 3; i++) {
      const res = await request(`${proxy.dataUrl}${c.path ?? '/m/x'}`, { headers: { ...c.headers, 'x-case': c.name } });
      await res.body.dump();
    }
  }
  await waitFor(async () => {
    const r = (await (await request(`${proxy.adminUrl}/api/routes/m/diffs`, { headers: auth })).body.json()) as { comparisons?: { total: number } };
    return (r.comparisons?.total ?? 0) >= cases.length * 3;
  }, 10_000, 'all compared');
  for (const p of ['/api/routes/m/diffs', '/api/report', '/metrics']) out[p] = await (await request(`${proxy.adminUrl}${p}`, { headers: auth })).body.text();
  out.logs = proxy.logs.join('');
}, 30_000);

afterAll(async () => {
  await proxy?.close?.();
  await legacy?.close();
  await next?.close();
});

const where = (s: string) => Object.entries(out).filter(([, t]) => t.includes(s)).map(([w]) => w);
const lines = (p: string, s: string) => out[p].split('\n').filter((l) => l.includes(s));

describe("the request's own credential as a key or a path segment (found by review of 84ed4b9)", () => {
  it('a Basic user that is an ordinary word ("orders", with a real password) is not blanked: one field, counted once per caller kind', () => {
    const diffs = JSON.parse(out['/api/routes/m/diffs']) as { fields: { field: string; mismatches: number }[] };
    const fields = diffs.fields.map((f) => f.field);
    expect(fields).toContain('$.orders[].total');
    expect(fields).not.toContain('$.[redacted][].total');
    expect(diffs.fields.find((f) => f.field === '$.orders[].total')?.mismatches).toBe(6);
    expect(out['/api/routes/m/diffs']).toContain('/v1/orders/1');
  });

  it('a key longer than a rendered key (cut and hashed) echoed as an object key is blanked', () => {
    expect(where(LONG.slice(0, 40))).toEqual([]);
    expect(lines('/metrics', 'cutover_mismatch_fields_total{route="m",field="$.limits.[redacted]"').length).toBeGreaterThan(0);
  });

  it("a key with an apostrophe echoed as an object key is blanked", () => {
    expect(where('s_mine_0042')).toEqual([]);
  });

  it('a key echoed as an object key in another case is blanked from the field and the label', () => {
    expect(where(UPKEY.toUpperCase())).toEqual([]);
  });

  it('a key in the request path is blanked from examples, recent errors and the access log', () => {
    expect(where(PATHKEY)).toEqual([]);
    expect(where(PASSWORD)).toEqual([]);
    expect(out['/api/routes/m/diffs']).toContain('/m/keys/[redacted]');
    expect(out.logs).toContain('/m/keys/[redacted]');
  });
});
