/**
 * The shaping layer (src/forward/shaping.ts) on its own: what one backend receives for each kind of
 * call, and the outbound-credential slot that outbound auth plugs into.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Dispatcher } from 'undici';
import { Upstream } from '../src/forward/upstream.js';
import { backendSchema } from '../src/config/schema.js';
import { redactTarget, rewriteQuery, type OutboundIntent, type ShapedDispatchOptions } from '../src/forward/shaping.js';
import { clientAddress, TrustedProxies } from '../src/forward/headers.js';
import { startBackend, type TestBackend } from './helpers/backend.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function send(upstream: Upstream, path: string, intent: OutboundIntent): Promise<number> {
  const options: ShapedDispatchOptions = { path, method: 'GET', cutover: intent };
  // undici's request() hands its options to dispatch() unchanged, so the intent reaches the shaping interceptor.
  const res = await upstream.dispatcher.request(options as Dispatcher.RequestOptions);
  await res.body.dump();
  return res.statusCode;
}

const CLIENT = ['Host', 'shop.example', 'X-Api-Key', 'S3CR3T', 'Authorization', 'Basic dTpw', 'Idempotency-Key', 'k1', 'X-Cutover-Shadow', '1'];
const ctx = { peer: '127.0.0.1', peerTrusted: false, host: 'shop.example', proto: 'http' as const, preserveHost: false };

/** A backend config as the schema fills it in, so new backend keys need no change here. */
function backendAt(url: string) {
  return backendSchema.parse({ url, timeout: '5s', connectTimeout: '1s', connections: 2, keepAliveTimeout: '1s' });
}

async function backend(): Promise<TestBackend> {
  const b = await startBackend();
  cleanups.push(() => b.close());
  return b;
}

describe('shaping layer', () => {
  it('strips header and query credentials toward new only, marks mirrors and baselines, prepends the base path', async () => {
    const b = await backend();
    const credentials = { legacyCredentials: [{ header: 'x-api-key' }, { basic: true as const }, { query: 'api_key' }] };
    const toNew = new Upstream('new', backendAt(`${b.url}/base`), credentials);
    const toLegacy = new Upstream('legacy', backendAt(b.url), credentials);
    cleanups.push(() => toNew.close(), () => toLegacy.close());
    // (An upgrade needs a 101 answer; it goes through the same interceptor, see test/security.)
    for (const kind of ['live', 'mirror', 'baseline'] as const) {
      await send(toNew, '/w?api_key=S3CR3T&x=1', { kind, rawHeaders: CLIENT, ctx, forwardCredentials: false });
    }
    await send(toLegacy, '/w?api_key=S3CR3T&x=1', { kind: 'live', rawHeaders: CLIENT, ctx, forwardCredentials: false });
    await send(toNew, '/w?api_key=S3CR3T', { kind: 'live', rawHeaders: CLIENT, ctx, forwardCredentials: true });
    const [live, mirror, baseline, legacy, optedIn] = b.received;
    for (const r of [live, mirror, baseline]) {
      expect(r.url).toBe('/base/w?x=1');
      expect(JSON.stringify(r.rawHeaders)).not.toContain('S3CR3T');
      expect(r.headers.authorization).toBeUndefined();
    }
    expect(live.headers['x-cutover-shadow']).toBeUndefined();
    expect(live.headers['idempotency-key']).toBe('k1');
    expect(mirror.headers['x-cutover-shadow']).toBe('1');
    expect(mirror.headers['idempotency-key']).toBe('cutover-shadow-k1');
    expect(baseline.headers['x-cutover-shadow']).toBe('1');
    expect(legacy.url).toBe('/w?api_key=S3CR3T&x=1');
    expect(legacy.headers['x-api-key']).toBe('S3CR3T');
    expect(optedIn.url).toBe('/base/w?api_key=S3CR3T');
  });

  it('runs per-backend outbound interceptors after shaping, on the shaped header list', async () => {
    const b = await backend();
    const seenByOutbound: string[][] = [];
    const addServiceToken: Dispatcher.DispatcherComposeInterceptor = (dispatch) => (opts, handler) => {
      const headers = opts.headers as string[];
      seenByOutbound.push(headers);
      return dispatch({ ...opts, headers: [...headers, 'authorization', 'Bearer service-token'] }, handler);
    };
    const toNew = new Upstream('new', backendAt(b.url), { legacyCredentials: [{ bearer: true }], outbound: [addServiceToken] });
    cleanups.push(() => toNew.close());
    await send(toNew, '/w', { kind: 'mirror', rawHeaders: ['Authorization', 'Bearer legacy-key'], ctx, forwardCredentials: false });
    expect(JSON.stringify(seenByOutbound[0])).not.toContain('legacy-key');
    expect(seenByOutbound[0]).toContain('x-cutover-shadow');
    expect(b.received[0].headers.authorization).toBe('Bearer service-token');
  });

  it('rewrites and redacts query parameters byte for byte', () => {
    expect(rewriteQuery('?a=1&api_key=s&b=%20', ['api_key'])).toBe('?a=1&b=%20');
    expect(rewriteQuery('?api_key=s', ['api_key'])).toBe('');
    expect(rewriteQuery('?api%5Fkey=s&x', ['api_key'])).toBe('?x');
    expect(redactTarget('/w?api_key=s&b=2', ['api_key'])).toBe('/w?api_key=[redacted]&b=2');
    expect(redactTarget('/w', ['api_key'])).toBe('/w');
  });
});

describe('client address', () => {
  const trusted = new TrustedProxies(['10.0.0.0/8', '127.0.0.1']);
  it('is the peer unless the peer is trusted; then the rightmost untrusted X-Forwarded-For entry', () => {
    expect(clientAddress({ peer: '203.0.113.1', peerTrusted: false }, '6.6.6.6', trusted)).toBe('203.0.113.1');
    expect(clientAddress({ peer: '127.0.0.1', peerTrusted: true }, '6.6.6.6, 203.0.113.9, 10.1.1.1', trusted)).toBe('203.0.113.9');
    expect(clientAddress({ peer: '127.0.0.1', peerTrusted: true }, ['6.6.6.6', '198.51.100.2'], trusted)).toBe('198.51.100.2');
    expect(clientAddress({ peer: '127.0.0.1', peerTrusted: true }, '10.0.0.2, 10.0.0.3', trusted)).toBe('10.0.0.2');
    expect(clientAddress({ peer: '127.0.0.1', peerTrusted: true }, undefined, trusted)).toBe('127.0.0.1');
  });
});
