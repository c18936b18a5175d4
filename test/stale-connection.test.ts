/**
 * A kept-alive connection the backend closed while idle fails the next request written to it,
 * before any answer. nginx sends such a request again on another connection; so does cutover, for
 * idempotent methods with a buffered body, and only when the failed connection had carried an
 * earlier request (forward/retry.ts). Real backends on loopback close or reset the connection the
 * way a backend's idle timeout does, at the moment the next request arrives.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { baseConfig, startProxy, type InProcessProxy } from './helpers/proxy.js';
import { scrape, sample, total } from './helpers/metrics.js';
import { waitFor } from './helpers/backend.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Listens on 127.0.0.1:0 until the test ends (open connections cut then); the port. */
async function serve(server: http.Server | net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        if (server instanceof http.Server) server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return (server.address() as AddressInfo).port;
}

type Close = 'fin' | 'rst';

interface StaleBackend {
  url: string;
  /** Every request the backend read, in order: method, url, body, and whether it was answered. */
  seen: { method: string; url: string; body: string; answered: boolean }[];
}

/**
 * A backend whose connections each serve `served` requests; the next request on the connection
 * finds it closed (`fin`: closed, `rst`: reset), unanswered, as when the backend's idle timeout
 * fired just as the request was sent. `served: 0` fails every connection's first request.
 */
async function staleBackend(close: Close | 'head', served = 1, tls?: { key: Buffer; cert: Buffer }): Promise<StaleBackend> {
  const seen: StaleBackend['seen'] = [];
  const carried = new WeakMap<Socket, number>();
  const handle: http.RequestListener = (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const socket = req.socket;
      const n = carried.get(socket) ?? 0;
      carried.set(socket, n + 1);
      const answered = n < served;
      seen.push({ method: req.method!, url: req.url!, body: Buffer.concat(chunks).toString(), answered });
      if (!answered) {
        if (close === 'rst') socket.resetAndDestroy();
        else if (close === 'fin') socket.destroy();
        else {
          // The request was run and its answer begun: the status line, then the connection breaks.
          socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n');
          setTimeout(() => socket.destroy(), 20);
        }
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ url: req.url, body: Buffer.concat(chunks).toString() }));
    });
  };
  const server = tls === undefined ? http.createServer({ keepAliveTimeout: 60_000 }, handle) : https.createServer({ ...tls, keepAliveTimeout: 60_000 }, handle);
  return { url: `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${await serve(server)}`, seen };
}

async function healthyBackend(): Promise<string> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ url: req.url, body: '' }));
    });
  });
  return `http://127.0.0.1:${await serve(server)}`;
}

async function proxy(legacyUrl: string, newUrl: string, extra: Record<string, unknown> = {}, legacy: Record<string, unknown> = {}): Promise<InProcessProxy> {
  const config = baseConfig(legacyUrl, newUrl, extra);
  // One connection toward each backend: every request after the first goes out on a reused one.
  const backends = config.backends as Record<string, Record<string, unknown>>;
  Object.assign(backends.legacy, legacy);
  backends.legacy.connections = 1;
  backends.new.connections = 1;
  const p = await startProxy(config);
  cleanups.push(() => p.close(100));
  return p;
}

/** The proxy in front of `legacyUrl` (and a healthy new), with route `r` on `path` live on legacy. */
async function legacyProxy(legacyUrl: string, path: string, route: Record<string, unknown> = {}): Promise<InProcessProxy> {
  return proxy(legacyUrl, await healthyBackend(), { routes: [{ name: 'r', match: { path }, weight: 0, ...route }] });
}

async function send(p: InProcessProxy, method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  const res = await request(`${p.dataUrl}${path}`, { method: method as 'GET', body, headers: body === undefined ? {} : { 'content-type': 'application/json' } });
  return { status: res.statusCode, body: await res.body.text() };
}

const RETRIED = (backend: string, role: string) => `cutover_upstream_retries_total{backend="${backend}",role="${role}",reason="stale_connection"}`;

describe('a kept-alive connection the backend closed', () => {
  for (const close of ['fin', 'rst'] as const) {
    it(`sends a GET again on another connection when the reused one is ${close === 'fin' ? 'closed' : 'reset'}, and counts it`, async () => {
      const legacy = await staleBackend(close);
      const p = await legacyProxy(legacy.url, '/items/:id', { shadow: { percent: 0 } });
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) statuses.push((await send(p, 'GET', `/items/${i}`)).status);
      expect(statuses).toEqual([200, 200, 200, 200]);
      // Each request after the first met a closed connection once, then got a fresh one.
      expect(legacy.seen.map((s) => `${s.url} ${s.answered ? 'answered' : 'closed'}`)).toEqual([
        '/items/0 answered',
        '/items/1 closed',
        '/items/1 answered',
        '/items/2 closed',
        '/items/2 answered',
        '/items/3 closed',
        '/items/3 answered',
      ]);
      const text = await scrape(p);
      expect(sample(text, RETRIED('legacy', 'primary'))).toBe(3);
      // One request, one count, with the outcome of the attempt that answered.
      expect(sample(text, 'cutover_requests_total{route="r",backend="legacy",role="primary",outcome="2xx"}')).toBe(4);
      expect(sample(text, 'cutover_requests_total{route="r",backend="legacy",role="primary",outcome="error"}')).toBe(0);
    });
  }

  it('sends a PUT again with its whole body', async () => {
    const legacy = await staleBackend('fin');
    const p = await legacyProxy(legacy.url, '/items/:id');
    expect((await send(p, 'PUT', '/items/1', '{"a":1}')).status).toBe(200);
    const second = await send(p, 'PUT', '/items/2', '{"b":2}');
    expect(second.status).toBe(200);
    expect(JSON.parse(second.body)).toEqual({ url: '/items/2', body: '{"b":2}' });
    expect(legacy.seen.filter((s) => s.url === '/items/2').map((s) => [s.body, s.answered])).toEqual([
      ['{"b":2}', false],
      ['{"b":2}', true],
    ]);
  });

  it('never sends a POST twice: the client gets the 502 and the backend one attempt', async () => {
    const legacy = await staleBackend('fin');
    const p = await legacyProxy(legacy.url, '/items');
    expect((await send(p, 'POST', '/items', '{"n":1}')).status).toBe(200);
    const res = await send(p, 'POST', '/items', '{"n":2}');
    expect(res.status).toBe(502);
    expect(legacy.seen.map((s) => s.body)).toEqual(['{"n":1}', '{"n":2}']);
    expect(sample(await scrape(p), RETRIED('legacy', 'primary'))).toBe(0);
  });

  it('does not send again what failed on a fresh connection: that is the backend failing', async () => {
    const legacy = await staleBackend('rst', 0);
    const p = await legacyProxy(legacy.url, '/items/:id', { shadow: { percent: 0 } });
    for (let i = 0; i < 3; i++) expect((await send(p, 'GET', `/items/${i}`)).status).toBe(502);
    // One attempt per request, each on a connection of its own.
    expect(legacy.seen.map((s) => s.url)).toEqual(['/items/0', '/items/1', '/items/2']);
    const text = await scrape(p);
    expect(sample(text, RETRIED('legacy', 'primary'))).toBe(0);
    expect(sample(text, 'cutover_requests_total{route="r",backend="legacy",role="primary",outcome="error"}')).toBe(3);
  });

  it('sends a mirror again too, so a stale mirror connection is not a failed comparison', async () => {
    const next = await staleBackend('rst');
    const p = await proxy(await healthyBackend(), next.url, {
      shadow: { connections: 1 },
      defaults: { shadow: { percent: 100, baselinePercent: 0 } },
      routes: [{ name: 'r', match: { methods: ['GET'], path: '/items/:id' }, weight: 0 }],
    });
    for (let i = 0; i < 4; i++) {
      expect((await send(p, 'GET', `/items/${i}`)).status).toBe(200);
      // One mirror at a time, so each one after the first goes out on the mirror pool's reused connection.
      await waitFor(async () => total(await scrape(p), 'cutover_comparisons_total{route="r"') === i + 1, 5_000, `comparison ${i + 1}`);
    }
    const text = await scrape(p);
    expect(sample(text, RETRIED('new', 'shadow'))).toBe(3);
    expect(sample(text, 'cutover_comparisons_total{route="r",result="error"}')).toBe(0);
    expect(sample(text, 'cutover_requests_total{route="r",backend="new",role="shadow",outcome="error"}')).toBe(0);
    expect(next.seen.filter((s) => !s.answered)).toHaveLength(3);
  });

  it('knows a connection reused by a POST: a GET after it on a closed connection is sent again', async () => {
    const legacy = await staleBackend('fin');
    const p = await legacyProxy(legacy.url, '/items', { shadow: { percent: 0 } });
    expect((await send(p, 'POST', '/items', '{"n":1}')).status).toBe(200);
    expect((await send(p, 'GET', '/items')).status).toBe(200);
    expect(legacy.seen.map((s) => `${s.method} ${s.answered ? 'answered' : 'closed'}`)).toEqual(['POST answered', 'GET closed', 'GET answered']);
    expect(sample(await scrape(p), RETRIED('legacy', 'primary'))).toBe(1);
  });

  it('never sends again a request whose answer had begun: the backend ran it', async () => {
    const legacy = await staleBackend('head');
    const p = await legacyProxy(legacy.url, '/items/:id');
    expect((await send(p, 'DELETE', '/items/1')).status).toBe(200);
    expect((await send(p, 'DELETE', '/items/2')).status).toBe(502);
    expect(legacy.seen.filter((s) => s.url === '/items/2')).toHaveLength(1);
    expect(sample(await scrape(p), RETRIED('legacy', 'primary'))).toBe(0);
  });

  for (const method of ['GET', 'POST'] as const) {
    it(`sends again a ${method} that was never written: its idle connection was reset as it was dispatched`, async () => {
      let last: Socket | null = null;
      const seen: string[] = [];
      const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
        last = req.socket;
        seen.push(req.url!);
        req.resume();
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '2' });
        res.end('{}');
      });
      const url = `http://127.0.0.1:${await serve(server)}`;
      const p = await legacyProxy(url, '/items/:id', { shadow: { percent: 0 } });
      // One kept-alive client connection, so the request and the reset land in one turn of the loop.
      const client = net.connect(Number(new URL(p.dataUrl).port), '127.0.0.1');
      cleanups.push(async () => void client.destroy());
      await new Promise((r) => client.once('connect', r));
      let buffered = '';
      client.on('data', (c: Buffer) => (buffered += c.toString()));
      const answer = async (): Promise<number> => {
        await waitFor(() => /\r\n\r\n\{\}/.test(buffered) || /\r\n\r\n[^]*\}$/.test(buffered), 5_000, 'an answer');
        const status = Number(/^HTTP\/1\.1 (\d+)/.exec(buffered)![1]);
        buffered = '';
        return status;
      };
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        client.write(`GET /items/warm${i} HTTP/1.1\r\nhost: x\r\n\r\n`);
        statuses.push(await answer());
        await new Promise((r) => setTimeout(r, 20));
        client.write(`${method} /items/race${i} HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}`);
        (last as Socket | null)!.resetAndDestroy();
        // Busy for a moment: the proxy then sees the request and the reset in the same poll.
        const until = Date.now() + 30;
        while (Date.now() < until);
        statuses.push(await answer());
      }
      expect(statuses).toEqual([200, 200, 200, 200, 200, 200]);
      expect(seen).toEqual(['/items/warm0', '/items/race0', '/items/warm1', '/items/race1', '/items/warm2', '/items/race2']);
    });
  }

  it('judges each attempt by its own connection: a fresh TLS connection reset in its handshake is not sent again', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cutover-stale-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'b.key', '-out', 'b.crt', '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { cwd: dir, stdio: 'pipe' });
    const backend = await staleBackend('fin', 1, { key: readFileSync(join(dir, 'b.key')), cert: readFileSync(join(dir, 'b.crt')) });
    // In front of it: the first connection goes through, every later one is reset at once.
    let connections = 0;
    const front = net.createServer((socket) => {
      connections++;
      if (connections > 1) return void socket.resetAndDestroy();
      const up = net.connect(Number(new URL(backend.url).port), '127.0.0.1');
      socket.pipe(up).pipe(socket);
      for (const [a, b] of [[socket, up], [up, socket]]) {
        a.on('error', () => b.destroy());
        a.on('close', () => b.destroy());
      }
    });
    const p = await proxy(
      `https://127.0.0.1:${await serve(front)}`,
      await healthyBackend(),
      { routes: [{ name: 'r', match: { path: '/items/:id' }, weight: 0, shadow: { percent: 0 } }] },
      { tls: { caFile: join(dir, 'b.crt') } },
    );
    expect((await send(p, 'GET', '/items/warm')).status).toBe(200);
    expect((await send(p, 'GET', '/items/x')).status).toBe(502);
    // One stale retry (the reused connection), then a fresh connection that failed: that is the end.
    expect(connections).toBe(2);
    expect(backend.seen.map((r) => `${r.url} ${r.answered ? 'answered' : 'closed'}`)).toEqual(['/items/warm answered', '/items/x closed']);
    expect(sample(await scrape(p), RETRIED('legacy', 'primary'))).toBe(1);
  });
});
