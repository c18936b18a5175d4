/**
 * A backend that echoes its caller's credential (found by review of 1103c35): in a body value, a
 * header, an object key, as the user of Basic, from a quoted or encoded cookie, URL-encoded in a
 * self link, upper-cased, cut by the example preview, JSON-escaped in a text line or a container
 * preview. Each case sends one request with its own key; every admin output is scanned for it.
 */
import { request } from 'undici';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
const tokDir = mkdtempSync(join(tmpdir(), 'rev-'));
writeFileSync(join(tokDir, 'op.token'), 'review-operator-token-0123456789');
const auth = { authorization: 'Bearer review-operator-token-0123456789' };
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBackend, waitFor, type TestBackend } from '../helpers/backend.js';
import { baseConfig, startProxy, type InProcessProxy } from '../helpers/proxy.js';

type Case = { name: string; send: { path?: string; headers: Record<string, string> }; echo: (req: import('node:http').IncomingMessage) => { body?: unknown; text?: string; headers?: Record<string, string> }; look: string };

const rnd = () => Math.random().toString(36).slice(2, 10) + Math.random().toString(36).slice(2, 10);

const K = {
  objkey: `sk_live_OBJ${rnd()}`,
  basicUser: `sk_live_USR${rnd()}`,
  cookieQuoted: `SESSQ${rnd()}`,
  cookieEnc: `SESS/E+${rnd()}==`,
  urlenc: `sk_live_U/${rnd()}+x=`,
  upper: `sk_live_up${rnd()}`,
  cut: `sk_live_CUT${rnd()}${rnd()}`,
  textQuote: `sk"TXT\\${rnd()}`,
  longJsonQuote: `sk"LJQ\\${rnd()}`,
  header: `sk_live_HDR${rnd()}`,
  plain: `sk_live_PLN${rnd()}`,
  objkey2: `sk_live_OBK${rnd()}`,
  freshdesk: `FD${rnd()}`,
  twoPlaces: `sk_live_TWO${rnd()}`,
};

const cases: Case[] = [
  // control: the fixed case
  { name: 'plain', send: { headers: { 'x-api-key': K.plain } }, echo: () => ({ body: { f_plain: `caller ${K.plain}` } }), look: K.plain },
  // header echo (should be fixed)
  { name: 'header', send: { headers: { 'x-api-key': K.header } }, echo: () => ({ body: {}, headers: { 'x-echo': K.header } }), look: K.header },
  // a map keyed by the caller's key
  { name: 'objkey', send: { headers: { 'x-api-key': K.objkey } }, echo: () => ({ body: { limits: { [K.objkey]: 10 } } }), look: K.objkey },
  // a map keyed by the caller's key, present (empty) on new: the key is in the path
  { name: 'objkey2', send: { headers: { 'x-api-key': K.objkey2 } }, echo: () => ({ body: { limits: { [K.objkey2]: 10 } } }), look: K.objkey2 },
  // Freshdesk-style Basic: "apikey:X"
  { name: 'freshdesk', send: { headers: { authorization: `Basic ${Buffer.from(`${K.freshdesk}:X`).toString('base64')}` } }, echo: (req) => ({ body: { f_fd: Buffer.from(req.headers.authorization!.slice(6), 'base64').toString().split(':')[0] } }), look: K.freshdesk },
  // Stripe/Freshdesk-style Basic: the key is the user, the password empty or short
  { name: 'basicUser', send: { headers: { authorization: `Basic ${Buffer.from(`${K.basicUser}:`).toString('base64')}` } }, echo: (req) => ({ body: { f_basic: Buffer.from(req.headers.authorization!.slice(6), 'base64').toString().split(':')[0] } }), look: K.basicUser },
  // cookie quoted: backends read it unquoted
  { name: 'cookieQuoted', send: { headers: { cookie: `session="${K.cookieQuoted}"` } }, echo: () => ({ body: { f_cq: K.cookieQuoted } }), look: K.cookieQuoted },
  // cookie percent-encoded: backends decode it
  { name: 'cookieEnc', send: { headers: { cookie: `session=${encodeURIComponent(K.cookieEnc)}` } }, echo: (req) => ({ body: { f_ce: decodeURIComponent(/session=([^;]+)/.exec(req.headers.cookie!)![1]) } }), look: K.cookieEnc },
  // echo of the request URL (a self link): the key as it was percent-encoded
  { name: 'urlenc', send: { path: `/m?api_key=${encodeURIComponent(K.urlenc)}`, headers: {} }, echo: (req) => ({ body: { f_self: `http://legacy${req.url}`.replace('api_key=', 'k=') } }), look: encodeURIComponent(K.urlenc) },
  // case-changed echo
  { name: 'upper', send: { headers: { 'x-api-key': K.upper } }, echo: () => ({ body: { f_up: K.upper.toUpperCase() } }), look: K.upper.toUpperCase() },
  // the echo cut by the 200-character preview
  { name: 'cut', send: { headers: { 'x-api-key': K.cut } }, echo: () => ({ body: { f_cut: `${'x'.repeat(190)}${K.cut}` } }), look: K.cut.slice(0, 10) },
  // text body: the summary line is JSON.stringify'd, so " and \ are escaped
  { name: 'textQuote', send: { headers: { 'x-api-key': K.textQuote } }, echo: () => ({ text: `hello ${K.textQuote}` }), look: JSON.stringify(JSON.stringify(K.textQuote).slice(1, -1)).slice(1, -1) },
  // a long container preview (>200) is a JSON text: " and \ escaped
  { name: 'longJsonQuote', send: { headers: { 'x-api-key': K.longJsonQuote } }, echo: () => ({ body: { f_ljq: { pad: 'p'.repeat(20), who: K.longJsonQuote, more: 'm'.repeat(300) } } }), look: JSON.stringify(JSON.stringify(K.longJsonQuote).slice(1, -1)).slice(1, -1) },
  // two credentials: the first location found is a decoy, legacy reads the bearer one
  { name: 'twoPlaces', send: { headers: { 'x-api-key': 'decoy-key-1', authorization: `Bearer ${K.twoPlaces}` } }, echo: (req) => ({ body: { f_two: req.headers.authorization!.slice(7) } }), look: K.twoPlaces },
];

let legacy: TestBackend;
let next: TestBackend;
let proxy: InProcessProxy;
const outputs: Record<string, string> = {};

beforeAll(async () => {
  legacy = await startBackend((req, res) => {
    const c = cases.find((x) => x.name === req.headers['x-case'])!;
    const e = c.echo(req);
    for (const [k, v] of Object.entries(e.headers ?? {})) res.setHeader(k, v);
    if (e.text !== undefined) {
      res.setHeader('content-type', 'text/plain');
      res.end(e.text);
    } else {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ id: 1, ...(e.body as object) }));
    }
  });
  next = await startBackend((req, res) => {
    if (req.headers['x-case'] === 'textQuote') {
      res.setHeader('content-type', 'text/plain');
      res.end('hello');
    } else {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(req.headers['x-case'] === 'objkey2' ? { id: 1, limits: {} } : { id: 1 }));
    }
  });
  proxy = await startProxy(
    { ...baseConfig(legacy.url, next.url), admin: { host: '127.0.0.1', port: 0, tokens: [{ name: 'ops', role: 'operator', tokenFile: join(tokDir, 'op.token') }] },
      credentials: { legacy: [{ header: 'x-api-key' }, { bearer: true }, { cookie: 'session' }, { query: 'api_key' }, { basic: true }] },
      defaults: { compare: { headers: ['*'] } },
      log: { level: 'trace', access: true },
      routes: [{ name: 'm', match: { path: '/m' }, weight: 0, shadow: { percent: 100, baselinePercent: 0 } }],
    },
  );
  for (const c of cases) {
    const res = await request(`${proxy.dataUrl}${c.send.path ?? '/m'}`, { headers: { ...c.send.headers, 'x-case': c.name } });
    await res.body.dump();
  }
  await waitFor(async () => {
    const r = (await (await request(`${proxy.adminUrl}/api/routes/m/diffs`, { headers: auth })).body.json()) as { comparisons?: { total: number } };
    return (r.comparisons?.total ?? 0) >= cases.length;
  }, 10_000, 'all compared');
  for (const p of ['/api/routes/m/diffs', '/api/report', '/api/report?format=md', '/metrics', '/api/credentials']) outputs[p] = await (await request(`${proxy.adminUrl}${p}`, { headers: auth })).body.text();
  outputs.logs = proxy.logs.join('');
}, 30_000);

afterAll(async () => {
  await proxy?.close?.();
  await legacy?.close();
  await next?.close();
});

describe("a backend echoing its caller's credential: never in admin output, in any spelling", () => {
  it('the examples are there to scan (each case differs, and shows [redacted] where its key was)', () => {
    const diffs = outputs['/api/routes/m/diffs'];
    for (const field of ['f_plain', 'f_fd', 'f_basic', 'f_cq', 'f_ce', 'f_self', 'f_up', 'f_cut', 'f_two', 'limits']) expect(diffs, field).toContain(field);
    expect(diffs).toContain('[redacted]');
    expect(outputs['/metrics']).toContain('cutover_mismatch_fields_total{route="m",field="$.limits.[redacted]"');
  });

  it.each(cases.map((c) => [c.name, c] as const))('%s', (_n, c) => {
    const where = Object.entries(outputs).filter(([, t]) => t.includes(c.look)).map(([w]) => w);
    expect(where, `${c.name} leaked`).toEqual([]);
  });
});
