/**
 * The credential side of the running proxy, end to end on real sockets: a local OAuth2 token
 * endpoint, a new backend that requires the proxy's bearer token (and logs what it received), a
 * legacy backend that requires the client's x-api-key.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { createFingerprinter } from '../src/credentials/fingerprint.js';
import { validateConfig } from '../src/config/load.js';
import { startBackend, waitFor, type TestBackend } from './helpers/backend.js';
import { baseConfig, spawnProxy, startProxy, type ChildProxy, type InProcessProxy } from './helpers/proxy.js';
import { upgradeRequest } from './helpers/ws.js';
import { sample, scrape } from './helpers/metrics.js';

const dir = mkdtempSync(join(tmpdir(), 'cutover-wired-'));
const secretFile = join(dir, 'client.secret');
writeFileSync(secretFile, 'wired-client-secret\n');
const keyFile = join(dir, 'fp.key');
writeFileSync(keyFile, 'wired-fingerprint-key');
const fp = createFingerprinter('wired-fingerprint-key');

/** Integrations' legacy keys: legacy accepts the first two. */
const KEY_A = 'legacy-key-partner-a-0001';
const KEY_B = 'legacy-key-partner-b-0002';
const KEY_WRONG = 'legacy-key-not-issued-9999';

export interface World {
  tokens: TestBackend & { issued: number; mode: 'ok' | 'fail' | 'hang'; valid: Set<string> };
  legacy: TestBackend;
  next: TestBackend;
  /** Headers of each upgrade request new received. */
  upgrades: http.IncomingHttpHeaders[];
  close(): Promise<void>;
}

/** The token endpoint, new (bearer required, logging) and legacy (x-api-key required). */
export async function startWorld(): Promise<World> {
  const valid = new Set<string>();
  const state = { issued: 0, mode: 'ok' as 'ok' | 'fail' | 'hang', valid };
  const hanging: http.ServerResponse[] = [];
  const tokenServer = await startBackend((_req, res) => {
    res.setHeader('content-type', 'application/json');
    if (state.mode === 'hang') {
      hanging.push(res);
      return;
    }
    if (state.mode === 'fail') {
      res.statusCode = 503;
      res.end(JSON.stringify({ error: 'temporarily_unavailable' }));
      return;
    }
    state.issued++;
    const token = `tok-${state.issued}`;
    valid.add(token);
    res.end(JSON.stringify({ access_token: token, token_type: 'Bearer', expires_in: 3600 }));
  });
  // The state object itself is the endpoint's view (Object.assign would copy getters as values).
  const tokens = Object.assign(state, tokenServer);
  const next = await startBackend((req, res) => {
    const auth = req.headers.authorization ?? '';
    res.setHeader('content-type', 'application/json');
    if (!auth.startsWith('Bearer ') || !valid.has(auth.slice(7))) {
      res.statusCode = 401;
      res.end(JSON.stringify({ error: 'invalid_token' }));
      return;
    }
    res.end(JSON.stringify({ id: 1, from: 'new' }));
  });
  const upgrades: http.IncomingHttpHeaders[] = [];
  next.server.on('upgrade', (req: http.IncomingMessage, socket: import('node:net').Socket) => {
    upgrades.push(req.headers);
    socket.end('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
  });
  const legacy = await startBackend((req, res) => {
    res.setHeader('content-type', 'application/json');
    const key = req.headers['x-api-key'];
    if (key !== KEY_A && key !== KEY_B) {
      res.statusCode = 401;
      res.end(JSON.stringify({ error: 'bad key' }));
      return;
    }
    res.end(JSON.stringify({ id: 1, from: 'new' }));
  });
  // Legacy takes WebSocket-style upgrades with the same keys.
  legacy.server.on('upgrade', (req: http.IncomingMessage, socket: import('node:net').Socket) => {
    const key = req.headers['x-api-key'];
    socket.end(key === KEY_A || key === KEY_B ? 'HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n' : 'HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n');
  });
  return {
    tokens,
    legacy,
    next,
    upgrades,
    close: async () => {
      for (const res of hanging.splice(0)) res.destroy();
      await Promise.all([tokens.close(), legacy.close(), next.close()]);
    },
  };
}

export function wiredConfig(w: World, route: Record<string, unknown>, credentials: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return baseConfig(w.legacy.url, w.next.url, {
    backends: {
      legacy: { url: w.legacy.url },
      new: { url: w.next.url, auth: { type: 'oauth2-client-credentials', tokenUrl: `${w.tokens.url}/oauth/token`, clientId: 'cutover', clientSecretFile: secretFile, scope: 'widgets' } },
    },
    credentials: { legacy: [{ header: 'x-api-key' }], fingerprintKeyFile: keyFile, ...credentials },
    routes: [{ name: 'w', match: { path: '/v1/w/:id' }, shadow: { percent: 100, baselinePercent: 0, unsafe: true }, ...route }],
    cutover: { state: { store: 'memory' } },
    // As startProxy sets it, so a reload of this same config changes no restart-only key.
    shadow: { shedAt: { eventLoopDelay: 0, utilisation: 1 } },
    ...extra,
  });
}

async function call(proxy: { dataUrl: string }, key: string | null, method: 'GET' | 'POST' = 'GET', path = '/v1/w/1'): Promise<{ status: number; type: string; body: string }> {
  const res = await request(`${proxy.dataUrl}${path}`, { method, headers: { ...(key === null ? {} : { 'x-api-key': key }), 'user-agent': 'partner-bot/1.0' }, body: method === 'POST' ? '{"a":1}' : undefined });
  return { status: res.statusCode, type: String(res.headers['content-type'] ?? ''), body: await res.body.text() };
}

let world: World | null = null;
let proxy: InProcessProxy | null = null;
let child: ChildProxy | null = null;
afterEach(async () => {
  await proxy?.close(100);
  await child?.stop();
  await world?.close();
  proxy = null;
  child = null;
  world = null;
});

describe('the new backend gets the proxy own credential, never the legacy key', () => {
  it('live at weight 100 and mirrors at weight 0 reach new with the bearer; baseline and upgrade too; legacy keeps its key', async () => {
    const w = (world = await startWorld());
    // Weight 0: legacy serves, new gets mirrors.
    proxy = await startProxy(wiredConfig(w, { weight: 0 }));
    expect((await call(proxy, KEY_A)).status).toBe(200);
    await waitFor(() => w.next.received.length >= 1, 5_000, 'the mirror at new');
    const mirrored = w.next.received[0];
    expect(mirrored.headers['x-cutover-shadow']).toBe('1');
    expect(mirrored.headers.authorization).toBe('Bearer tok-1');
    expect(w.legacy.received[0].headers['x-api-key']).toBe(KEY_A);
    await proxy.close(100);

    // Weight 100 with a baseline replay to new too.
    proxy = await startProxy(wiredConfig(w, { weight: 100, shadow: { percent: 100, baselinePercent: 100 } }));
    const live = await call(proxy, KEY_B);
    expect(live.status).toBe(200);
    expect(JSON.parse(live.body).from).toBe('new');
    await waitFor(() => w.next.received.length >= 3 && w.legacy.received.length >= 2, 5_000, 'live, baseline and mirror');
    // An upgrade to new carries it as well.
    await new Promise<void>((resolve, reject) => {
      const req = http.request(`${proxy!.dataUrl}/v1/w/2`, { headers: { connection: 'upgrade', upgrade: 'websocket', 'x-api-key': KEY_B } });
      req.on('upgrade', (_res, socket) => {
        socket.destroy();
        resolve();
      });
      req.on('response', (res) => reject(new Error(`no upgrade: ${res.statusCode}`)));
      req.on('error', reject);
      req.end();
    });
    expect(w.upgrades).toHaveLength(1);
    expect(w.upgrades[0].authorization).toMatch(/^Bearer tok-/);
    expect(w.upgrades[0]['x-api-key']).toBeUndefined();
    // new's own log: every request carried a bearer, none a legacy key.
    for (const r of w.next.received) {
      expect(r.headers.authorization).toMatch(/^Bearer tok-\d+$/);
      expect(r.headers['x-api-key']).toBeUndefined();
      expect(r.rawHeaders.join('\n')).not.toMatch(/legacy-key-/);
    }
    expect(w.next.received.some((r) => r.headers['x-cutover-shadow'] === '1')).toBe(true);
    expect(w.next.received.some((r) => r.headers['x-cutover-shadow'] === undefined)).toBe(true);
    // Legacy (mirror after the shift) keeps the client's key.
    expect(w.legacy.received.every((r) => r.headers['x-api-key'] === KEY_A || r.headers['x-api-key'] === KEY_B)).toBe(true);
  });

  it('100 concurrent requests cause one token fetch', async () => {
    const w = (world = await startWorld());
    proxy = await startProxy(wiredConfig(w, { weight: 100, shadow: { percent: 0 } }));
    const answers = await Promise.all(Array.from({ length: 100 }, () => call(proxy!, KEY_A)));
    expect(answers.every((a) => a.status === 200)).toBe(true);
    expect(w.tokens.issued).toBe(1);
    expect(w.tokens.received).toHaveLength(1);
    expect(sample(await scrape(proxy), 'cutover_token_fetches_total{backend="new",result="ok"}')).toBe(1);
  });

  it('a GET retried after a 401 while the token endpoint hangs is answered at backends.new.timeout, not at the token fetch\'s own budget', async () => {
    const w = (world = await startWorld());
    const config = wiredConfig(w, { weight: 100, shadow: { percent: 0 } });
    const backends = config.backends as { new: { timeout?: string; auth: Record<string, unknown> } };
    backends.new.timeout = '1s';
    backends.new.auth.timeout = '30s';
    proxy = await startProxy(config);
    expect((await call(proxy, KEY_A)).status).toBe(200);
    // new stops taking its token, and the token endpoint stops answering.
    w.tokens.valid.delete('tok-1');
    w.tokens.mode = 'hang';
    const answered = await Promise.race([call(proxy, KEY_A).then((a) => a.status), new Promise<string>((resolve) => setTimeout(() => resolve('still waiting after 10 s'), 10_000))]);
    expect(answered).toBe(504);
  });

  it('an upstream 401 purges the token: a GET is retried once with a fresh one, a POST is not', async () => {
    const w = (world = await startWorld());
    proxy = await startProxy(wiredConfig(w, { weight: 100, shadow: { percent: 0 } }));
    expect((await call(proxy, KEY_A)).status).toBe(200);
    expect(w.tokens.issued).toBe(1);
    // new stops accepting the token it issued (revoked upstream before its expiry).
    w.tokens.valid.delete('tok-1');
    const get = await call(proxy, KEY_A);
    expect(get.status).toBe(200);
    expect(w.tokens.issued).toBe(2);
    expect(w.next.received.slice(1).map((r) => r.headers.authorization)).toEqual(['Bearer tok-1', 'Bearer tok-2']);
    expect(sample(await scrape(proxy), 'cutover_upstream_retries_total{backend="new",role="primary",reason="unauthorized"}')).toBe(1);

    w.tokens.valid.delete('tok-2');
    const before = w.next.received.length;
    const post = await call(proxy, KEY_A, 'POST');
    expect(post.status).toBe(401);
    expect(w.next.received.length - before).toBe(1);
    // The token was purged all the same: the next call fetches a new one.
    expect((await call(proxy, KEY_A)).status).toBe(200);
    expect(w.tokens.issued).toBe(3);
    // The POST was not sent again: one retry in all.
    expect(sample(await scrape(proxy), 'cutover_upstream_retries_total{backend="new",role="primary",reason="unauthorized"}')).toBe(1);
  });

  it('token endpoint down: 502 problem+json TOKEN_UNAVAILABLE for live, a counted error for a mirror', async () => {
    const w = (world = await startWorld());
    w.tokens.mode = 'fail';
    proxy = await startProxy(wiredConfig(w, { weight: 100, shadow: { percent: 0 } }));
    const live = await call(proxy, KEY_A);
    expect(live.status).toBe(502);
    expect(live.type).toContain('application/problem+json');
    expect(JSON.parse(live.body)).toMatchObject({ status: 502, code: 'TOKEN_UNAVAILABLE', backend: 'new' });
    expect(w.next.received).toHaveLength(0);
    await proxy.close(100);

    proxy = await startProxy(wiredConfig(w, { weight: 0 }));
    expect((await call(proxy, KEY_A)).status).toBe(200);
    await waitFor(async () => sample(await scrape(proxy!), 'cutover_requests_total{route="w",backend="new",role="shadow",outcome="error"}') === 1, 5_000, 'the mirror error');
    expect(w.next.received).toHaveLength(0);
  });
});

describe('a static credential toward new', () => {
  it('new receives the configured header, or a mapped credential\'s own header, and never the legacy key', async () => {
    const w = (world = await startWorld());
    const plain = await startBackend();
    writeFileSync(join(dir, 'service.key'), 'svc-key-of-cutover\n');
    writeFileSync(join(dir, 'partner-b.key'), 'svc-key-of-partner-b');
    const raw = wiredConfig(w, { weight: 100, shadow: { percent: 0 } }, { mappings: [{ fingerprint: fp(KEY_B), header: { name: 'x-service-key', valueFile: join(dir, 'partner-b.key') } }] });
    (raw.backends as Record<string, unknown>).new = { url: plain.url, auth: { type: 'static', header: 'x-service-key', valueFile: join(dir, 'service.key') } };
    proxy = await startProxy(raw);
    try {
      expect((await call(proxy, KEY_A)).status).toBe(200);
      expect((await call(proxy, KEY_B)).status).toBe(200);
      expect(plain.received.map((r) => r.headers['x-service-key'])).toEqual(['svc-key-of-cutover', 'svc-key-of-partner-b']);
      expect(plain.received.every((r) => r.headers['x-api-key'] === undefined)).toBe(true);
      expect(w.tokens.received).toHaveLength(0);
    } finally {
      await plain.close();
    }
  });
});

describe('legacy credentials in the running proxy', () => {
  it('a revoked fingerprint gets 401 problem+json and reaches no backend; a reload revokes another live', async () => {
    const w = (world = await startWorld());
    const raw = wiredConfig(w, { weight: 0 }, { revoked: [fp(KEY_A)] });
    let current = raw;
    proxy = await startProxy(raw, { reloadConfig: async () => validateConfig(current, 'reloaded') });
    const denied = await call(proxy, KEY_A);
    expect(denied.status).toBe(401);
    expect(denied.type).toContain('application/problem+json');
    expect(JSON.parse(denied.body)).toMatchObject({ status: 401, code: 'REVOKED' });
    expect(denied.body).not.toContain(KEY_A);
    expect(w.legacy.received).toHaveLength(0);
    expect(w.next.received).toHaveLength(0);
    expect((await call(proxy, KEY_B)).status).toBe(200);
    expect(sample(await scrape(proxy), 'cutover_rejected_requests_total{route="w",reason="revoked"}')).toBe(1);

    current = wiredConfig(w, { weight: 0 }, { revoked: [fp(KEY_A), fp(KEY_B)] });
    const outcome = await proxy.reload('test');
    expect(outcome, JSON.stringify(outcome)).toMatchObject({ ok: true });
    const legacyBefore = w.legacy.received.length;
    expect((await call(proxy, KEY_B)).status).toBe(401);
    expect(w.legacy.received.length).toBe(legacyBefore);
    expect(sample(await scrape(proxy), 'cutover_rejected_requests_total{route="w",reason="revoked"}')).toBe(2);
  });

  it('requireMapping: an unmapped key is served by legacy only, a mapped one by new under its own scope', async () => {
    const w = (world = await startWorld());
    proxy = await startProxy(wiredConfig(w, { weight: 100 }, { requireMapping: true, mappings: [{ fingerprint: fp(KEY_B), scope: 'partner-b' }] }));
    const unmapped = await call(proxy, KEY_A);
    expect(unmapped.status).toBe(200);
    expect(w.legacy.received.map((r) => r.headers['x-api-key'])).toEqual([KEY_A]);
    const mapped = await call(proxy, KEY_B);
    expect(mapped.status).toBe(200);
    await waitFor(() => w.legacy.received.length >= 2, 5_000, 'the mirror of the mapped call at legacy');
    // new saw only the mapped call, with the token asked for its scope; no mirror of the unmapped one.
    expect(w.next.received).toHaveLength(1);
    expect(w.tokens.received).toHaveLength(1);
    expect(w.tokens.received[0].body.toString()).toContain('scope=partner-b');
    expect(sample(await scrape(proxy), 'cutover_shadow_skipped_total{route="w",reason="unmapped"}')).toBe(1);
  });

  it('a key legacy rejects is never served by new under its own identity', async () => {
    const w = (world = await startWorld());
    // Mirrors at weight 0 let legacy judge the key first.
    let current = wiredConfig(w, { weight: 0 });
    proxy = await startProxy(current, { reloadConfig: async () => validateConfig(current, 'reloaded') });
    expect((await call(proxy, KEY_WRONG)).status).toBe(401);
    await waitFor(() => w.next.received.length === 1, 5_000, 'the mirror');
    // Shifted to 100 %: the wrong key still goes to legacy, which still refuses it; no mirror to new.
    current = wiredConfig(w, { weight: 100 });
    expect((await proxy.reload('test')).ok).toBe(true);
    const after = await call(proxy, KEY_WRONG);
    expect(after.status).toBe(401);
    expect(w.next.received).toHaveLength(1);
    expect((await call(proxy, KEY_A)).status).toBe(200);
    // KEY_A is new to this proxy: legacy judges it first, and its mirror to new follows the live answer.
    await waitFor(() => w.next.received.length === 2, 5_000, "KEY_A's mirror");
    expect(w.next.received).toHaveLength(2);
  });

  it('the inventory: GET /api/credentials as JSON and CSV shows counts, timestamps and backends', async () => {
    const w = (world = await startWorld());
    const tokenFile = join(dir, 'viewer.token');
    writeFileSync(tokenFile, 'viewer-token-0123456789abcdef-0123456789abcdef');
    proxy = await startProxy(wiredConfig(w, { weight: 0 }, {}, { admin: { host: '127.0.0.1', port: 0, tokenFile } }));
    const t0 = Date.now();
    for (let i = 0; i < 3; i++) expect((await call(proxy, KEY_A)).status).toBe(200);
    expect((await call(proxy, KEY_B)).status).toBe(200);
    // A WebSocket-style integration on a legacy key is in the inventory too: its key must not be
    // revoked while it still connects.
    expect((await upgradeRequest(`${proxy.dataUrl}/v1/w/3`, { 'x-api-key': KEY_B, 'user-agent': 'partner-bot/1.0' })).status).toBe(101);
    const auth = { authorization: 'Bearer viewer-token-0123456789abcdef-0123456789abcdef' };
    const json = await waitFor(async () => {
      const res = await request(`${proxy!.adminUrl}/api/credentials`, { headers: auth });
      const doc = (await res.body.json()) as { credentials: { fingerprint: string; requests: number; backends: Record<string, number>; firstSeen: string; lastSeen: string; legacyAccepted: boolean; lastUserAgent: string; lastClient: string; routes: Record<string, string> }[] };
      return doc.credentials.length === 2 ? doc : null;
    });
    const a = json.credentials.find((c) => c.fingerprint === fp(KEY_A))!;
    expect(a).toMatchObject({ requests: 3, backends: { legacy: 3, new: 0 }, legacyAccepted: true, lastUserAgent: 'partner-bot/1.0', lastClient: '127.0.0.1' });
    await waitFor(async () => {
      const doc = (await (await request(`${proxy!.adminUrl}/api/credentials`, { headers: auth })).body.json()) as { credentials: { fingerprint: string; requests: number }[] };
      return doc.credentials.find((c) => c.fingerprint === fp(KEY_B))?.requests === 2;
    }, 5_000, 'the upgrade in the inventory');
    expect(Object.keys(a.routes)).toEqual(['w']);
    expect(Date.parse(a.firstSeen)).toBeGreaterThanOrEqual(t0 - 1000);
    expect(Date.parse(a.lastSeen)).toBeGreaterThanOrEqual(Date.parse(a.firstSeen));
    const csv = await (await request(`${proxy.adminUrl}/api/credentials?format=csv`, { headers: auth })).body.text();
    expect(csv.split('\n')[0]).toContain('fingerprint');
    expect(csv).toContain(fp(KEY_A));
    expect(csv).toContain(fp(KEY_B));
    expect(csv).not.toContain(KEY_A);
    const text = await scrape(proxy);
    // Four requests and the upgrade.
    expect(sample(text, 'cutover_credential_requests_total{route="w",scheme="header",backend="legacy"}')).toBe(5);
    // No token: the admin API refuses.
    expect((await request(`${proxy.adminUrl}/api/credentials`)).statusCode).toBe(401);
  });

  it('a restart with the file store keeps the inventory (child process)', async () => {
    const w = (world = await startWorld());
    const stateDir = mkdtempSync(join(tmpdir(), 'cutover-wired-state-'));
    const tokenFile = join(stateDir, 'viewer.token');
    writeFileSync(tokenFile, 'viewer-token-0123456789abcdef-0123456789abcdef');
    const raw = wiredConfig(w, { weight: 0 }, {}, { admin: { host: '127.0.0.1', port: 0, tokenFile }, cutover: { state: { store: 'file', path: join(stateDir, 'state.json') } } });
    const auth = { authorization: 'Bearer viewer-token-0123456789abcdef-0123456789abcdef' };
    child = await spawnProxy(raw);
    for (let i = 0; i < 2; i++) expect((await call(child, KEY_A)).status).toBe(200);
    expect(await child.stop()).toBe(0);
    child = await spawnProxy(raw);
    const res = await request(`${child.adminUrl}/api/credentials`, { headers: auth });
    const doc = (await res.body.json()) as { credentials: { fingerprint: string; requests: number }[] };
    expect(doc.credentials).toEqual([expect.objectContaining({ fingerprint: fp(KEY_A), requests: 2 })]);
  });
});
