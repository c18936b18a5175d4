/**
 * The mirror's hard budget (`shadow.timeout`) counts from dispatch: a mirror still queued for a pooled
 * connection ends at its deadline, without ever being sent, and so frees its mirror slot. A live
 * answer's budget leaves out the time the relay waits on a slow client.
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

describe('ClientExchange and a slow client', () => {
  /** A backend sending `bytes` at once, and a front server relaying it through ClientExchange (legacy, `timeout`). */
  async function relay(bytes: number, timeout: string, sendTimeout?: number) {
    const body = Buffer.alloc(bytes, 0x61);
    const backend: TestBackend = await startBackend((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(bytes) });
      res.end(body);
    });
    cleanup.push(() => backend.close());
    const config = validateConfig({ backends: { legacy: { url: backend.url, timeout }, new: { url: backend.url } } });
    const upstream = new Upstream('legacy', config.backends.legacy, { legacyCredentials: [] });
    cleanup.push(() => upstream.destroy());
    const telemetry = new Telemetry({ defaultMetrics: false });
    const metrics = telemetry.route('r');
    const front = http.createServer((_req, res) => {
      upstream.pool.dispatch({ path: '/big', method: 'GET' }, new ClientExchange(res, upstream, metrics, 0, null, sendTimeout));
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise<void>((resolve) => front.close(() => resolve())));
    return { port: (front.address() as AddressInfo).port, telemetry };
  }

  it('a client reading slower than the backend sends gets the whole answer past the backend timeout: time paused for it is not the backend’s', async () => {
    // 24 MB is more than the kernel buffers of both ends hold, so the relay waits on the client.
    const bytes = 24 * 1024 * 1024;
    const { port, telemetry } = await relay(bytes, '1s');
    const started = Date.now();
    const received = await new Promise<{ status: number; bytes: number; complete: boolean }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: '/big' }, (res) => {
          let n = 0;
          res.on('data', (chunk: Buffer) => {
            n += chunk.length;
            // About 8 MB/s: the download takes ~3 s, three times the backend's budget.
            res.pause();
            setTimeout(() => res.resume(), 8);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes: n, complete: res.complete }));
          res.on('error', () => resolve({ status: res.statusCode ?? 0, bytes: n, complete: false }));
        })
        .on('error', reject);
    });
    expect(Date.now() - started).toBeGreaterThan(1_000);
    expect(received).toEqual({ status: 200, bytes, complete: true });
    const text = await telemetry.exposition();
    expect(text).toMatch(/^cutover_requests_total\{route="r",backend="legacy",role="primary",outcome="2xx"\} 1$/m);
    expect(text).not.toMatch(/outcome="timeout"\} [1-9]/);
  });

  it('a client that takes nothing for listen.sendTimeout is cut, and it is not counted as the backend’s timeout', async () => {
    const { port, telemetry } = await relay(24 * 1024 * 1024, '500ms', 500);
    const net = await import('node:net');
    const socket = net.connect(port, '127.0.0.1');
    socket.write('GET /big HTTP/1.1\r\nhost: x\r\n\r\n');
    // Read the first bytes, then nothing more.
    await new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.pause();
    // Three send timeouts without reading a byte, then read what is left: the answer was cut short.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    let got = 0;
    socket.on('data', (chunk: Buffer) => (got += chunk.length));
    socket.on('error', () => undefined);
    socket.resume();
    await new Promise<void>((resolve) => socket.once('close', () => resolve()));
    expect(got).toBeLessThan(24 * 1024 * 1024);
    const text = await telemetry.exposition();
    expect(text).not.toMatch(/outcome="timeout"\} [1-9]/);
    expect(text).not.toMatch(/role="primary",outcome="2xx"\} [1-9]/);
  });
});
