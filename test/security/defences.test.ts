/**
 * Defences no test guarded before issue 8: each case here fails when its defence is removed.
 */
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { waitFor } from '../helpers/backend.js';
import { scoped } from '../helpers/scoped.js';
import { baseConfig, type InProcessProxy } from '../helpers/proxy.js';

const { backend, proxy, defer } = scoped();

async function call(url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; body: string }> {
  const res = await request(url, { method: (init.method ?? 'GET') as 'GET', headers: init.headers, body: init.body });
  return { status: res.statusCode, body: await res.body.text() };
}

describe('baseline replays', () => {
  it('never run an unsafe method twice on the live backend, even on an unsafe route with baselinePercent 100', async () => {
    const legacy = await backend();
    const next = await backend();
    const p = await proxy(baseConfig(legacy.url, next.url, { routes: [{ name: 'orders', match: { path: '/orders' }, shadow: { unsafe: true, baselinePercent: 100 } }] }));
    for (let i = 0; i < 3; i++) expect((await call(`${p.dataUrl}/orders`, { method: 'POST', body: `{"n":${i}}`, headers: { 'idempotency-key': `k${i}` } })).status).toBe(200);
    await waitFor(() => next.received.length >= 3, 5_000, 'the mirrors');
    // A GET proves baselines are on: it is replayed to legacy, so legacy sees it twice.
    await call(`${p.dataUrl}/orders`);
    await waitFor(() => legacy.received.filter((r) => r.method === 'GET').length >= 2, 5_000, 'the GET baseline');
    expect(legacy.received.filter((r) => r.method === 'POST')).toHaveLength(3);
  });

  it('toward new never carry the client legacy credential', async () => {
    const legacy = await backend();
    const next = await backend();
    const p = await proxy(baseConfig(legacy.url, next.url, { routes: [{ name: 'w', match: { path: '/w' }, weight: 100, shadow: { baselinePercent: 100 } }] }));
    await call(`${p.dataUrl}/w`, { headers: { 'x-api-key': 'S3CR3T', authorization: 'Bearer S3CR3T' } });
    // Live + baseline on new, the mirror on legacy.
    await waitFor(() => next.received.length >= 2 && legacy.received.length >= 1, 5_000, 'live, baseline and mirror');
    expect(next.received.map((r) => r.headers['x-cutover-shadow'])).toEqual(expect.arrayContaining([undefined, '1']));
    for (const r of next.received) expect(JSON.stringify(r.rawHeaders)).not.toContain('S3CR3T');
    expect(legacy.received[0].headers['x-api-key']).toBe('S3CR3T');
  });
});

describe('sticky ip', () => {
  it('ignores X-Forwarded-For from an untrusted peer: every spoofed address lands on the peer\'s one backend', async () => {
    const legacy = await backend((_req, res) => res.end('legacy'));
    const next = await backend((_req, res) => res.end('new'));
    const p = await proxy(baseConfig(legacy.url, next.url, { sticky: { key: 'ip' }, defaults: { shadow: { percent: 0 } }, routes: [{ name: 'r', match: { path: '/r' }, weight: 50 }] }));
    const seen = new Set<string>();
    for (let i = 1; i <= 40; i++) seen.add((await call(`${p.dataUrl}/r`, { headers: { 'x-forwarded-for': `198.51.100.${i}` } })).body);
    expect(seen.size).toBe(1);
  });
});

describe('the shadow never changes the client\'s answer', () => {
  for (const failure of ['5xx', 'reset'] as const) {
    it(`shadow ${failure} while the primary is the slower one`, async () => {
      const legacy = await backend((_req, res) => setTimeout(() => res.setHeader('content-type', 'application/json').end('{"ok":true}'), 200));
      const next = await backend((req, res) => {
        if (failure === 'reset') req.socket.destroy();
        else res.writeHead(503).end('down');
      });
      const p = await proxy(baseConfig(legacy.url, next.url, { defaults: { shadow: { baselinePercent: 0 } }, routes: [{ name: 'w', match: { path: '/w' } }] }));
      for (let i = 0; i < 3; i++) {
        const res = await call(`${p.dataUrl}/w`);
        expect(res).toEqual({ status: 200, body: '{"ok":true}' });
      }
      expect(next.received.length).toBeGreaterThan(0);
    });
  }
});

describe('mirror budget', () => {
  it('shadow.timeout frees the mirror slot when a shadow trickles bytes forever', async () => {
    const legacy = await backend();
    const trickles: NodeJS.Timeout[] = [];
    const next = await backend((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      trickles.push(setInterval(() => res.write('.'), 50));
    });
    defer(async () => trickles.forEach(clearInterval));
    const p = await proxy(baseConfig(legacy.url, next.url, { shadow: { maxInFlight: 1, timeout: '300ms' }, defaults: { shadow: { baselinePercent: 0 } }, routes: [{ name: 'w', match: { path: '/w' } }] }));
    await call(`${p.dataUrl}/w`);
    await waitFor(() => next.received.length === 1, 5_000, 'the first mirror');
    // The only slot is taken until the deadline cuts the trickling answer; then mirrors flow again.
    await waitFor(async () => {
      await call(`${p.dataUrl}/w`);
      return next.received.length >= 2;
    }, 5_000, 'a second mirror after the slot was freed');
  });

  it('the capture cap abandons the shadow answer: the shadow backend sees its connection close early', async () => {
    const legacy = await backend();
    let closedEarly = false;
    const next = await backend((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 'a');
      let sent = 0;
      const pump = (): void => {
        while (sent < 200 && !res.destroyed) {
          sent++;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        if (!res.destroyed) res.end();
      };
      res.on('close', () => {
        if (sent < 200) closedEarly = true;
      });
      pump();
    });
    const p = await proxy(baseConfig(legacy.url, next.url, { defaults: { shadow: { baselinePercent: 0 }, compare: { maxBodyBytes: '64kb' } }, routes: [{ name: 'w', match: { path: '/w' } }] }));
    await call(`${p.dataUrl}/w`);
    await waitFor(() => closedEarly, 5_000, 'the shadow connection to close before 12.5 MB were sent');
  });
});

void http;
