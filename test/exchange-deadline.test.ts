/**
 * The mirror's hard budget (`shadow.timeout`) counts from dispatch: a mirror still queued for a pooled
 * connection ends at its deadline, without ever being sent, and so frees its mirror slot.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Pool } from 'undici';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';
import { CapturingExchange, ClientExchange } from '../src/forward/exchange.js';
import { Upstream } from '../src/forward/upstream.js';
import { validateConfig } from '../src/config/load.js';
import type { UpstreamAnswer } from '../src/forward/capture.js';
import { Telemetry } from '../src/telemetry/metrics.js';
import { startBackend, waitFor, type TestBackend } from './helpers/backend.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

describe('CapturingExchange deadline', () => {
  it('settles a mirror still waiting for a pooled connection as a timeout, and never sends it', async () => {
    const held: http.ServerResponse[] = [];
    const backend: TestBackend = await startBackend((_req, res) => {
      held.push(res);
    });
    cleanup.push(() => backend.close());
    const pool = new Pool(backend.url, { connections: 1 });
    cleanup.push(async () => {
      held.forEach((r) => r.destroy());
      await pool.destroy();
    });
    // The pool's only connection is taken by a request with no deadline of its own.
    const holder = pool.request({ path: '/hold', method: 'GET' }).catch(() => undefined);
    await waitFor(() => backend.received.length === 1, 5_000, 'the holder to reach the backend');

    const metrics = new Telemetry({ defaultMetrics: false }).route('r');
    let answer: UpstreamAnswer | undefined;
    pool.dispatch({ path: '/mirror', method: 'GET' }, new CapturingExchange('new', 'shadow', metrics, 1024, 200, (a) => (answer = a)));
    const settled = await waitFor(() => answer, 5_000, 'the queued mirror to settle');
    expect(settled.outcome).toBe('timeout');
    expect(settled.status).toBe(0);
    // Still only the holder: the mirror ended in the queue (timed from the socket, it would still be waiting).
    expect(backend.received.map((r) => r.url)).toEqual(['/hold']);
    held.forEach((r) => r.end());
    await holder;
  });

  it('answers a live request still waiting for a pooled connection with 504 at its budget, and never sends it', async () => {
    const held: http.ServerResponse[] = [];
    const backend: TestBackend = await startBackend((_req, res) => {
      held.push(res);
    });
    cleanup.push(() => backend.close());
    const config = validateConfig({ backends: { legacy: { url: backend.url, connections: 1, timeout: '200ms' }, new: { url: backend.url } } });
    const upstream = new Upstream('legacy', config.backends.legacy, { legacyCredentials: [] });
    cleanup.push(async () => {
      held.forEach((r) => r.destroy());
      await upstream.destroy();
    });
    // The pool's only connection is taken by a request with no deadline of its own.
    const holder = upstream.pool.request({ path: '/hold', method: 'GET' }).catch(() => undefined);
    await waitFor(() => backend.received.length === 1, 5_000, 'the holder to reach the backend');

    const metrics = new Telemetry({ defaultMetrics: false }).route('r');
    const front = http.createServer((_req, res) => {
      upstream.pool.dispatch({ path: '/queued', method: 'GET' }, new ClientExchange(res, upstream, metrics, 0, null));
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise<void>((resolve) => front.close(() => resolve())));
    const res = await request(`http://127.0.0.1:${(front.address() as AddressInfo).port}/`);
    expect(res.statusCode).toBe(504);
    expect(await res.body.text()).toContain('"code":"UPSTREAM_TIMEOUT"');
    // Still only the holder: the live request ended in the queue (timed from the socket, it would still be waiting).
    expect(backend.received.map((r) => r.url)).toEqual(['/hold']);
    held.forEach((r) => r.end());
    await holder;
  });
});
