import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createOutboundAuth, OAuth2ClientCredentials, retryOnceAfter, TokenUnavailableError, tokenUnavailableProblem, type OutboundAuth } from '../src/credentials/outbound/index.js';
import { backendSchema, type OutboundAuthConfig } from '../src/config/schema.js';
import { Telemetry } from '../src/telemetry/metrics.js';
import { deadPort, startBackend, waitFor, type TestBackend } from './helpers/backend.js';

type OAuth2Config = Extract<OutboundAuthConfig, { type: 'oauth2-client-credentials' }>;

const SECRET = 'client-secret-ü+/=';
const dir = mkdtempSync(join(tmpdir(), 'cutover-oauth2-'));
const secretFile = join(dir, 'client.secret');
writeFileSync(secretFile, `${SECRET}\n`);

function oauthConfig(tokenUrl: string, extra: Record<string, unknown> = {}): OAuth2Config {
  const auth = backendSchema.parse({ url: 'http://127.0.0.1:1', auth: { type: 'oauth2-client-credentials', tokenUrl, clientId: 'cutover-client', clientSecretFile: secretFile, scope: 'widgets.read', ...extra } }).auth;
  if (auth.type !== 'oauth2-client-credentials') throw new Error('schema did not parse oauth2');
  return auth;
}

interface TokenEndpoint {
  backend: TestBackend;
  url: string;
  issued: number;
  /** While set, answers wait until `release()`. */
  hold: boolean;
  release(): void;
  mode: 'ok' | 'fail';
  expiresIn: number;
  /** What each issued token starts with (its number follows). */
  prefix: string;
}

async function startTokenEndpoint(): Promise<TokenEndpoint> {
  const waiting: (() => void)[] = [];
  const ep = {
    issued: 0,
    hold: false,
    mode: 'ok' as 'ok' | 'fail',
    expiresIn: 60,
    prefix: 'tok-',
    release() {
      ep.hold = false;
      for (const w of waiting.splice(0)) w();
    },
  } as TokenEndpoint;
  const answer = (res: http.ServerResponse) => {
    res.setHeader('content-type', 'application/json');
    if (ep.mode === 'fail') {
      res.statusCode = 503;
      res.end(JSON.stringify({ error: 'temporarily_unavailable', error_description: 'down' }));
      return;
    }
    ep.issued++;
    res.end(JSON.stringify({ access_token: `${ep.prefix}${ep.issued}`, token_type: 'Bearer', expires_in: ep.expiresIn }));
  };
  ep.backend = await startBackend((_req, res) => (ep.hold ? waiting.push(() => answer(res)) : answer(res)));
  ep.url = `${ep.backend.url}/oauth/token`;
  return ep;
}

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0)) await c();
});

async function setup(extra: Record<string, unknown> = {}, options: ConstructorParameters<typeof OAuth2ClientCredentials>[2] = {}) {
  const ep = await startTokenEndpoint();
  const clock = { t: 1_000_000 };
  const telemetry = new Telemetry({ defaultMetrics: false });
  const client = new OAuth2ClientCredentials('new', oauthConfig(ep.url, extra), { now: () => clock.t, random: () => 0.5, recordFetch: telemetry.credentials.tokenFetches('new'), ...options });
  cleanup.push(() => client.close(), () => ep.backend.close());
  return { ep, clock, client, telemetry };
}

describe('OAuth2 client credentials against a real token endpoint', () => {
  it('caches the token until expires_in minus the skew, then fetches a new one', async () => {
    const { ep, clock, client, telemetry } = await setup({ skew: '30s' });
    expect(client.cachedHeader()).toBeNull();
    expect(await client.headerFor()).toEqual(['authorization', 'Bearer tok-1']);
    expect(client.cachedHeader()).toEqual(['authorization', 'Bearer tok-1']);
    clock.t += 29_000; // expires_in 60 s - skew 30 s = 30 s of use
    expect(client.cachedHeader()).toEqual(['authorization', 'Bearer tok-1']);
    expect(await client.headerFor()).toEqual(['authorization', 'Bearer tok-1']);
    expect(ep.backend.received).toHaveLength(1);
    clock.t += 2_000;
    expect(client.cachedHeader()).toBeNull();
    expect(await client.headerFor()).toEqual(['authorization', 'Bearer tok-2']);
    expect(ep.backend.received).toHaveLength(2);
    const form = new URLSearchParams(ep.backend.received[0].body.toString());
    expect(form.get('grant_type')).toBe('client_credentials');
    expect(form.get('scope')).toBe('widgets.read');
    expect(await telemetry.exposition()).toContain('cutover_token_fetches_total{backend="new",result="ok"} 2');
  });

  it('100 concurrent callers cause exactly one token fetch', async () => {
    const { ep, client } = await setup();
    ep.hold = true;
    const calls = Array.from({ length: 100 }, () => client.headerFor());
    await waitFor(() => ep.backend.received.length === 1 || undefined, 5_000, 'the token request');
    ep.release();
    const headers = await Promise.all(calls);
    expect(new Set(headers.map((h) => h[1]))).toEqual(new Set(['Bearer tok-1']));
    expect(ep.backend.received).toHaveLength(1);
    expect(ep.issued).toBe(1);
  });

  it('purge after an upstream 401 makes the next call fetch a new token; a stale purge keeps the fresh one', async () => {
    const { ep, client } = await setup();
    const first = await client.headerFor();
    client.purge(undefined, first);
    expect(client.cachedHeader()).toBeNull();
    const second = await client.headerFor();
    expect(second[1]).toBe('Bearer tok-2');
    // A second request that also got a 401 with the old token must not throw the new one away.
    client.purge(undefined, first);
    expect(client.cachedHeader()).toEqual(second);
    expect(ep.backend.received).toHaveLength(2);
  });

  it('expires_in 0 or negative, or a backend refusing every token, costs a token fetch per 5 s, not one per request', async () => {
    for (const expiresIn of [0, -60]) {
      const { ep, clock, client } = await setup();
      ep.expiresIn = expiresIn;
      for (let i = 0; i < 20; i++) await client.headerFor();
      expect(ep.issued).toBe(1);
      clock.t += 5_001;
      await client.headerFor();
      expect(ep.issued).toBe(2);
    }
    // Every token refused (a wrong scope): a few quick drops (a token revoked twice in a row is
    // fetched again at once), then at most one per 5 s.
    const { ep, clock, client } = await setup();
    for (let i = 0; i < 20; i++) client.purge(undefined, await client.headerFor());
    expect(ep.issued).toBe(5);
    clock.t += 5_001;
    client.purge(undefined, await client.headerFor());
    await client.headerFor();
    expect(ep.issued).toBe(6);
  });

  it('keeps a real short lifetime (2 s: used 1 s, new would refuse it past 2 s), unlike expires_in 0', async () => {
    const { ep, clock, client } = await setup();
    ep.expiresIn = 2;
    await client.headerFor();
    clock.t += 1_100;
    await client.headerFor();
    expect(ep.issued).toBe(2);
  });

  it('blanks the token held for each scope, however many there are (not only the last 8 fetched)', async () => {
    const { client } = await setup();
    for (let i = 0; i < 10; i++) await client.headerFor({ scope: `s${i}` });
    expect(client.recentTokens({ scope: 's0' })).toContain('tok-1');
    expect(client.recentTokens({ scope: 's9' })).toContain('tok-10');
  });

  it('refuses a token a header cannot carry (a control or non-Latin-1 character): TOKEN_UNAVAILABLE, nothing cached', async () => {
    for (const prefix of ['tok\u0001', 'tok€']) {
      const { ep, client } = await setup();
      ep.prefix = prefix;
      await expect(client.headerFor()).rejects.toBeInstanceOf(TokenUnavailableError);
      expect(client.cachedHeader()).toBeNull();
    }
  });

  it('refuses a token fetch budget of 0 in the config (every fetch would abort at once)', () => {
    expect(() => oauthConfig('http://127.0.0.1:1/t', { timeout: 0 })).toThrow(/greater than 0/);
  });

  it('runs its backoff on a clock that never steps back: the wall clock stepping back an hour does not block the backend for the hour', async () => {
    const ep = await startTokenEndpoint();
    const wall = Date.now;
    let step = 0;
    Date.now = () => wall() + step;
    try {
      const client = new OAuth2ClientCredentials('new', oauthConfig(ep.url), { random: () => 0.5, backoff: { initialMs: 100, maxMs: 200 } });
      cleanup.push(() => client.close(), () => ep.backend.close());
      ep.mode = 'fail';
      await expect(client.headerFor()).rejects.toBeInstanceOf(TokenUnavailableError);
      ep.mode = 'ok';
      step = -3_600_000;
      await new Promise((resolve) => setTimeout(resolve, 250));
      expect(await client.headerFor()).toEqual(['authorization', 'Bearer tok-1']);
    } finally {
      Date.now = wall;
    }
  });

  it('remembers the tokens it fetched last, for diff examples to blank', async () => {
    const { client } = await setup();
    for (let i = 0; i < 10; i++) client.purge(undefined, await client.headerFor());
    expect(client.recentTokens()).toEqual(['tok-1', 'tok-2', 'tok-3', 'tok-4', 'tok-5']);
  });

  it('retries once after a 401, only for idempotent methods and only with OAuth2', () => {
    const oauth: Pick<OutboundAuth, 'kind'> = { kind: 'oauth2-client-credentials' };
    expect(retryOnceAfter(oauth, 'GET', 401, false)).toBe(true);
    expect(retryOnceAfter(oauth, 'put', 401, false)).toBe(true);
    expect(retryOnceAfter(oauth, 'GET', 401, true)).toBe(false);
    expect(retryOnceAfter(oauth, 'POST', 401, false)).toBe(false);
    expect(retryOnceAfter(oauth, 'PATCH', 401, false)).toBe(false);
    expect(retryOnceAfter(oauth, 'GET', 403, false)).toBe(false);
    expect(retryOnceAfter({ kind: 'static' }, 'GET', 401, false)).toBe(false);
  });

  it('endpoint failing: TOKEN_UNAVAILABLE, then no call to the endpoint within the backoff, then recovery', async () => {
    const { ep, clock, client, telemetry } = await setup({}, { backoff: { initialMs: 1_000, maxMs: 8_000 } });
    ep.mode = 'fail';
    const err = await client.headerFor().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TokenUnavailableError);
    expect((err as TokenUnavailableError).code).toBe('TOKEN_UNAVAILABLE');
    expect((err as Error).message).toContain('503 (temporarily_unavailable)');
    expect(ep.backend.received).toHaveLength(1);
    // Within the backoff (random 0.5 → 750 ms of [500, 1000]): refused without calling the endpoint.
    clock.t += 500;
    await expect(client.headerFor()).rejects.toMatchObject({ code: 'TOKEN_UNAVAILABLE' });
    expect(ep.backend.received).toHaveLength(1);
    const p = tokenUnavailableProblem(err as TokenUnavailableError, clock.t);
    expect(p).toMatchObject({ status: 502, code: 'TOKEN_UNAVAILABLE', backend: 'new', retryAfter: 1 });
    // After it: one more try, failing again, doubles the backoff (1500 ms of [1000, 2000]).
    clock.t += 300;
    await expect(client.headerFor()).rejects.toMatchObject({ code: 'TOKEN_UNAVAILABLE' });
    expect(ep.backend.received).toHaveLength(2);
    clock.t += 1_400;
    await expect(client.headerFor()).rejects.toMatchObject({ code: 'TOKEN_UNAVAILABLE' });
    expect(ep.backend.received).toHaveLength(2);
    clock.t += 200;
    ep.mode = 'ok';
    expect(await client.headerFor()).toEqual(['authorization', 'Bearer tok-1']);
    expect(ep.backend.received).toHaveLength(3);
    const text = await telemetry.exposition();
    expect(text).toContain('cutover_token_fetches_total{backend="new",result="error"} 2');
    expect(text).toContain('cutover_token_fetches_total{backend="new",result="ok"} 1');
  });

  it('endpoint not listening at all is TOKEN_UNAVAILABLE too', async () => {
    const port = await deadPort();
    const client = new OAuth2ClientCredentials('new', oauthConfig(`http://127.0.0.1:${port}/token`));
    cleanup.push(() => client.close());
    await expect(client.headerFor()).rejects.toMatchObject({ code: 'TOKEN_UNAVAILABLE', backend: 'new' });
  });

  it('client auth basic: credentials in the Authorization header, form-encoded (RFC 6749 §2.3.1), none in the body', async () => {
    const { ep, client } = await setup({ clientAuth: 'basic' });
    await client.headerFor();
    const req = ep.backend.received[0];
    const auth = req.headers.authorization ?? '';
    expect(auth).toMatch(/^Basic /);
    const [id, secret] = Buffer.from(auth.slice(6), 'base64').toString('utf8').split(':');
    expect(decodeURIComponent(id)).toBe('cutover-client');
    expect(decodeURIComponent(secret)).toBe(SECRET);
    const form = new URLSearchParams(req.body.toString());
    expect(form.has('client_id')).toBe(false);
    expect(form.has('client_secret')).toBe(false);
  });

  it('client auth body: client_id and client_secret in the form, no Authorization header', async () => {
    const { ep, client } = await setup({ clientAuth: 'body', audience: 'https://api.example' });
    await client.headerFor();
    const req = ep.backend.received[0];
    expect(req.headers.authorization).toBeUndefined();
    expect(req.headers['content-type']).toBe('application/x-www-form-urlencoded');
    const form = new URLSearchParams(req.body.toString());
    expect(form.get('client_id')).toBe('cutover-client');
    expect(form.get('client_secret')).toBe(SECRET);
    expect(form.get('audience')).toBe('https://api.example');
  });

  it('caches one token per (scope, audience): a mapping with its own scope gets its own token', async () => {
    const { ep } = await setup();
    const auth = createOutboundAuth('new', { auth: oauthConfig(ep.url) });
    cleanup.push(() => auth.close());
    const plain = await auth.headerFor();
    const scoped = await auth.headerFor({ scope: 'widgets.write' });
    expect(plain?.[1]).not.toBe(scoped?.[1]);
    expect(await auth.headerFor({ scope: 'widgets.write' })).toEqual(scoped);
    expect(auth.cachedHeader()).toEqual(plain);
    expect(ep.backend.received.map((r) => new URLSearchParams(r.body.toString()).get('scope'))).toEqual(['widgets.read', 'widgets.write']);
    // A mapping's static header wins over the token, without a fetch.
    expect(auth.cachedHeader({ header: ['x-partner-key', 'k'] })).toEqual(['x-partner-key', 'k']);
    expect(ep.backend.received).toHaveLength(2);
  });
});

describe('static and none outbound auth', () => {
  it('static reads its value from a file or env; none adds nothing', async () => {
    const file = join(dir, 'static.value');
    writeFileSync(file, 'static-value-1\n');
    const fromFile = createOutboundAuth('new', backendSchema.parse({ url: 'http://127.0.0.1:1', auth: { type: 'static', header: 'X-Api-Key', valueFile: file } }));
    expect(fromFile.cachedHeader()).toEqual(['x-api-key', 'static-value-1']);
    process.env.CUTOVER_TEST_STATIC = 'static-value-2';
    const fromEnv = createOutboundAuth('new', backendSchema.parse({ url: 'http://127.0.0.1:1', auth: { type: 'static', valueEnv: 'CUTOVER_TEST_STATIC' } }));
    expect(await fromEnv.headerFor()).toEqual(['authorization', 'static-value-2']);
    const none = createOutboundAuth('new', backendSchema.parse({ url: 'http://127.0.0.1:1' }));
    expect(none.kind).toBe('none');
    expect(await none.headerFor()).toBeNull();
  });
});
