/**
 * Slow and large request bodies (issue 9, row 1): a body that trickles or stalls gets 408 at its
 * budget, and request bodies buffered at once across connections stay under
 * listen.maxBufferedBodyBytes (503 past it), so many big half-sent bodies cannot exhaust memory.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startBackend, waitFor, type TestBackend } from '../helpers/backend.js';
import { baseConfig, startProxy, type InProcessProxy } from '../helpers/proxy.js';
import { sample, scrape } from '../helpers/metrics.js';

let backend: TestBackend | null = null;
let proxy: InProcessProxy | null = null;
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await proxy?.close(100);
  await backend?.close();
  proxy = null;
  backend = null;
});

interface RawClient {
  socket: net.Socket;
  text: () => string;
  closed: Promise<void>;
}

function rawClient(url: string, head: string): Promise<RawClient> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => {
      socket.write(head);
      resolve({ socket, text: () => text, closed });
    });
    sockets.push(socket);
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    socket.on('error', () => {});
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.once('error', reject);
  });
}

function postHead(length: number, path = '/v1/upload'): string {
  return `POST ${path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\n\r\n`;
}

function counter(text: string, route: string, reason: string): number {
  return sample(text, `cutover_rejected_requests_total{route="${route}",reason="${reason}"}`);
}

const routes = [{ name: 'upload', match: { methods: ['POST'], path: '/v1/upload' }, shadow: { percent: 0 } }];

describe('slow request bodies', () => {
  it('answers 408 problem+json to a body trickling 1 byte per 200 ms past listen.requestTimeout, and to a stalled body past listen.bodyIdleTimeout', async () => {
    backend = await startBackend();
    proxy = await startProxy(baseConfig(backend.url, backend.url, { listen: { host: '127.0.0.1', port: 0, requestTimeout: '1s', bodyIdleTimeout: '500ms' }, routes }));

    const trickle = await rawClient(proxy.dataUrl, postHead(100));
    const started = Date.now();
    const timer = setInterval(() => trickle.socket.writable && trickle.socket.write('x'), 200);
    try {
      await waitFor(() => trickle.text().includes('\r\n\r\n{'), 10_000, 'the trickling client to get an answer');
    } finally {
      clearInterval(timer);
    }
    const trickleMs = Date.now() - started;
    expect(trickle.text()).toMatch(/^HTTP\/1\.1 408 /);
    expect(trickle.text()).toMatch(/content-type: application\/problem\+json/i);
    expect(trickle.text()).toContain('"code":"REQUEST_TIMEOUT"');
    // The whole-request budget answered, not the idle one (the trickle never pauses 500 ms).
    expect(trickle.text()).toContain('was not received within 1000 ms');
    expect(trickleMs).toBeGreaterThanOrEqual(900);
    await trickle.closed; // the connection is closed: the rest of the body is never read

    // An encoded spelling of the same path is counted under its route, as routing would see it.
    const stalled = await rawClient(proxy.dataUrl, postHead(1000, '/v%31//upload') + 'x'.repeat(500));
    await waitFor(() => stalled.text().includes('\r\n\r\n{'), 10_000, 'the stalled client to get an answer');
    expect(stalled.text()).toMatch(/^HTTP\/1\.1 408 /);
    // The idle budget answered, before the 1 s whole-request budget would have.
    expect(stalled.text()).toContain('body paused for more than 500 ms');
    await stalled.closed;

    expect(backend.received).toHaveLength(0);
    expect(counter(await scrape(proxy), 'upload', 'body_timeout')).toBe(2);
    console.log(`trickling client answered 408 after ${trickleMs} ms (requestTimeout 1s)`);
  });

  it('answers 408 to headers trickling 1 byte per 200 ms past listen.requestTimeout (not at Node’s 60 s), counted as body_timeout', async () => {
    backend = await startBackend();
    proxy = await startProxy(baseConfig(backend.url, backend.url, { listen: { host: '127.0.0.1', port: 0, requestTimeout: '1s' }, routes }));
    const head = `GET /v1/upload HTTP/1.1\r\nHost: t\r\nX-Slow: ${'y'.repeat(200)}\r\n\r\n`;
    const slow = await rawClient(proxy.dataUrl, head.slice(0, 10));
    const started = Date.now();
    let sent = 10;
    const timer = setInterval(() => slow.socket.writable && sent < head.length && slow.socket.write(head[sent++]), 200);
    try {
      await slow.closed;
    } finally {
      clearInterval(timer);
    }
    const ms = Date.now() - started;
    expect(slow.text()).toMatch(/^HTTP\/1\.1 408 /);
    expect(slow.text()).toContain('"code":"REQUEST_TIMEOUT"');
    // The budget, plus at most one connection check (a quarter of it, at least 250 ms).
    expect(ms).toBeLessThan(5_000);
    expect(backend.received).toHaveLength(0);
    expect(counter(await scrape(proxy), 'other', 'body_timeout')).toBe(1);
  });

  it('a slow head pipelined behind a request whose answer is due is counted as body_timeout too, and cut (no 408 in that answer\'s place)', async () => {
    backend = await startBackend((req, res) => {
      req.resume();
      // Due past the header budget: the slow head times out while this answer is still to come.
      setTimeout(() => res.end('done'), 2_500);
    });
    proxy = await startProxy(baseConfig(backend.url, backend.url, { listen: { host: '127.0.0.1', port: 0, requestTimeout: '1s' }, routes }));
    const slow = await rawClient(proxy.dataUrl, `${postHead(2)}okGET /v1/upload HTTP/1.1\r\nHo`);
    await slow.closed;
    expect(slow.text()).not.toMatch(/408/);
    expect(counter(await scrape(proxy), 'other', 'body_timeout')).toBe(1);
  });

  it('bounds the body bytes buffered across 20 connections that each send most of a 5 MB body: some get 503, memory stays bounded and is released after', async () => {
    backend = await startBackend();
    const MiB = 1024 * 1024;
    proxy = await startProxy(baseConfig(backend.url, backend.url, { listen: { host: '127.0.0.1', port: 0, bodyLimit: '10mib', maxBufferedBodyBytes: '20mib', requestTimeout: '60s', bodyIdleTimeout: '60s' }, routes }));
    const before = process.memoryUsage();
    const body = Buffer.alloc(5 * MiB, 0x61);
    const clients: RawClient[] = [];
    for (let i = 0; i < 20; i++) {
      const c = await rawClient(proxy.dataUrl, postHead(body.length));
      c.socket.write(body.subarray(0, body.length - 1));
      clients.push(c);
    }
    let peakArrayBuffers = 0;
    let peakRss = 0;
    const sample = (): void => {
      const m = process.memoryUsage();
      peakArrayBuffers = Math.max(peakArrayBuffers, m.arrayBuffers - before.arrayBuffers);
      peakRss = Math.max(peakRss, m.rss - before.rss);
    };
    // Each client is either answered 503 or has its bytes held; wait until every byte sent is one or the other.
    const rejected = (): RawClient[] => clients.filter((c) => c.text().startsWith('HTTP/1.1 503'));
    let text = '';
    await waitFor(async () => {
      sample();
      text = await scrape(proxy!);
      const n = rejected().length;
      return n >= 14 && counter(text, 'upload', 'body_buffer_full') === n;
    }, 30_000, 'the body buffer to fill and the rest to be refused');
    sample();
    const refused = rejected();
    expect(refused.length).toBeGreaterThanOrEqual(14);
    expect(refused.length).toBeLessThan(20);
    expect(refused[0].text()).toContain('"code":"BODY_BUFFER_FULL"');
    expect(refused[0].text()).toMatch(/content-type: application\/problem\+json/i);
    // 20 × 5 MiB would be 100 MiB held; the cap keeps it near 20 MiB, plus the chunks of refused
    // bodies that the garbage collector has not taken back yet (so the bound here is loose).
    expect(peakArrayBuffers).toBeLessThan(80 * MiB);
    expect(counter(text, 'upload', 'body_buffer_full')).toBe(refused.length);

    // Aborted bodies give their bytes back: a full body is accepted again afterwards.
    for (const c of clients) c.socket.destroy();
    await waitFor(() => proxy!.proxy.bodyBudget.bytes === 0, 5_000, 'the budget to be released');
    const ok = await fetch(`${proxy.dataUrl}/v1/upload`, { method: 'POST', body: body, headers: { 'content-type': 'application/octet-stream' } });
    expect(ok.status).toBe(200);
    expect(backend.received.at(-1)?.body.length).toBe(body.length);
    console.log(`20 × 5 MiB half-sent bodies, cap 20 MiB: ${refused.length} refused with 503; peak arrayBuffers +${(peakArrayBuffers / MiB).toFixed(1)} MiB, peak RSS +${(peakRss / MiB).toFixed(1)} MiB`);
  }, 60_000);
});

describe('pipelined requests behind a big answer read slowly', () => {
  const BIG = 24 * 1024 * 1024;

  async function setup(listen: Record<string, unknown> = {}, timeout = '1s') {
    const body = Buffer.alloc(BIG, 0x78);
    backend = await startBackend((req, res) => {
      if (req.url === '/v1/slow') {
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('slow');
        }, 2_500);
      } else if (req.url === '/v1/broken') {
        // Announces 1 MB, sends 10 KB, then nothing.
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(1024 * 1024) });
        res.write(body.subarray(0, 10_000));
      } else if (req.url === '/v1/big') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(BIG) });
        res.end(body);
      } else if (req.url === '/v1/four') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(4 * 1024 * 1024) });
        res.end(body.subarray(0, 4 * 1024 * 1024));
      } else {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('second');
      }
    });
    // /v1/slow goes to new (weight 100), whose budget is 5 s; the rest to legacy, under `timeout`.
    proxy = await startProxy(
      baseConfig(backend.url, backend.url, {
        listen: { host: '127.0.0.1', port: 0, ...listen },
        backends: { legacy: { url: backend.url, timeout }, new: { url: backend.url, timeout: '5s' } },
        routes: [
          { name: 'slow', match: { path: '/v1/slow' }, weight: 100, shadow: { percent: 0 } },
          { name: 'all', match: { path: '/v1/:x' }, shadow: { percent: 0 } },
        ],
      }),
    );
    return proxy;
  }

  /** Sends `head` at once (and `rest` 300 ms later), reads at about `rate` bytes/s; resolves with all bytes at close or after `maxMs`. */
  function pipeline(p: InProcessProxy, head: string, rest: string, rate: number, maxMs: number): Promise<Buffer> {
    const { hostname, port } = new URL(p.dataUrl);
    return new Promise((resolve) => {
      const s = net.connect(Number(port), hostname);
      sockets.push(s);
      const t0 = Date.now();
      const all: Buffer[] = [];
      let got = 0;
      s.on('data', (d: Buffer) => {
        all.push(d);
        got += d.length;
        const ahead = (got / rate) * 1000 - (Date.now() - t0);
        if (ahead > 0) {
          s.pause();
          setTimeout(() => s.resume(), ahead);
        }
      });
      s.on('error', () => undefined);
      s.write(head);
      if (rest) setTimeout(() => s.writable && s.write(rest), 300);
      const done = () => {
        clearTimeout(stop);
        resolve(Buffer.concat(all));
      };
      s.on('close', done);
      const stop = setTimeout(() => s.destroy(), maxMs);
    });
  }

  it('both answers arrive whole: the first one’s drain, emitted by the second one’s write, does not stall it at the backend’s deadline', async () => {
    const p = await setup();
    const bytes = await pipeline(p, 'GET /v1/big HTTP/1.1\r\nHost: t\r\n\r\nGET /v1/second HTTP/1.1\r\nHo', 'st: t\r\n\r\n', 8_000_000, 15_000);
    const second = bytes.indexOf('HTTP/1.1 200', 100);
    expect(second).toBeGreaterThan(BIG);
    expect(bytes.subarray(second).toString('latin1')).toContain('second');
    const text = await scrape(p);
    expect(sample(text, 'cutover_requests_total{route="all",backend="legacy",role="primary",outcome="2xx"}')).toBe(2);
    expect(sample(text, 'cutover_requests_total{route="all",backend="legacy",role="primary",outcome="timeout"}')).toBe(0);
    expect(sample(text, 'cutover_requests_total{route="all",backend="legacy",role="primary",outcome="error"}')).toBe(0);
  });

  it('an answer queued behind another, read steadily, is not cut at listen.sendTimeout: the connection still takes bytes', async () => {
    // 24 MiB then 4 MiB at ~5 MB/s: the second waits ~5 s for its turn, five send timeouts, while
    // the client never stops reading (nothing drains for it in that time: only progress keeps it).
    const p = await setup({ sendTimeout: '1s' });
    const bytes = await pipeline(p, 'GET /v1/big HTTP/1.1\r\nHost: t\r\n\r\nGET /v1/four HTTP/1.1\r\nHost: t\r\n\r\n', '', 5_000_000, 20_000);
    expect(bytes.length).toBeGreaterThan(BIG + 4 * 1024 * 1024);
    expect(sample(await scrape(p), 'cutover_requests_total{route="all",backend="legacy",role="primary",outcome="2xx"}')).toBe(2);
  });

  it('an answer queued behind one whose backend takes longer than listen.sendTimeout is not cut: the client has nothing to read, it is not stalling', async () => {
    const p = await setup({ sendTimeout: '1s' });
    // The client reads at once; for 2.5 s nothing goes out on the connection.
    const bytes = await pipeline(p, 'GET /v1/slow HTTP/1.1\r\nHost: t\r\n\r\nGET /v1/four HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n', '', 1e9, 10_000);
    expect(bytes.length).toBeGreaterThan(4 * 1024 * 1024);
    expect(bytes.subarray(0, 200).toString('latin1')).toContain('slow');
    const text = await scrape(p);
    expect(sample(text, 'cutover_requests_total{route="all",backend="legacy",role="primary",outcome="2xx"}')).toBe(1);
    expect(sample(text, 'cutover_requests_total{route="slow",backend="new",role="primary",outcome="2xx"}')).toBe(1);
  });

  it('an answer queued behind another that breaks mid-body cuts the connection once the answer ahead is sent (the client is never left waiting for the rest)', async () => {
    const p = await setup();
    const { hostname, port } = new URL(p.dataUrl);
    const s = net.connect(Number(port), hostname);
    sockets.push(s);
    let text = '';
    s.on('data', (d: Buffer) => (text += d.toString('latin1')));
    s.on('error', () => undefined);
    const closed = new Promise<boolean>((resolve) => {
      s.on('close', () => resolve(true));
      setTimeout(() => resolve(false), 8_000);
    });
    // /v1/broken (legacy, 1 s budget) stalls mid-body while it waits behind /v1/slow (2.5 s).
    s.write('GET /v1/slow HTTP/1.1\r\nHost: t\r\n\r\nGET /v1/broken HTTP/1.1\r\nHost: t\r\n\r\n');
    expect(await closed, text.slice(0, 300)).toBe(true);
    // The answer ahead whole, and nothing of the broken one: a head would promise bytes that never come.
    expect([...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1])).toEqual(['200']);
    expect(text).toMatch(/\r\n4\r\nslow\r\n0\r\n\r\n$/);
    expect(sample(await scrape(p), 'cutover_requests_total{route="all",backend="legacy",role="primary",outcome="timeout"}')).toBe(1);
  });
});
