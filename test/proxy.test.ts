import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { WebSocketServer } from 'ws';
import { firstWsMessage, upgradeRequest } from './helpers/ws.js';
import { deadPort, startBackend, waitFor, type TestBackend } from './helpers/backend.js';
import { baseConfig, startProxy, type InProcessProxy } from './helpers/proxy.js';
import { sample, scrape, total } from './helpers/metrics.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function backend(handler?: Parameters<typeof startBackend>[0]): Promise<TestBackend> {
  const b = await startBackend(handler);
  cleanups.push(() => b.close());
  return b;
}

async function proxy(raw: Record<string, unknown>): Promise<InProcessProxy> {
  const p = await startProxy(raw);
  cleanups.push(() => p.close(100));
  return p;
}

/** A raw request with exactly the headers given, returning status, headers and body. */
function rawRequest(url: string, options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

describe('forwarding', () => {
  it('removes hop-by-hop headers both ways and the ones named in Connection', async () => {
    const legacy = await backend((_req, res) => {
      res.setHeader('content-type', 'text/plain');
      res.setHeader('connection', 'keep-alive, x-upstream-private');
      res.setHeader('x-upstream-private', 'secret');
      res.setHeader('keep-alive', 'timeout=5');
      res.setHeader('x-kept', 'yes');
      res.setHeader('proxy-authenticate', 'Basic realm="upstream-proxy"');
      res.end('ok');
    });
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    const res = await rawRequest(`${p.dataUrl}/a`, {
      headers: { connection: 'keep-alive, x-client-private', 'x-client-private': '1', 'keep-alive': '300', te: 'gzip, chunked', 'proxy-connection': 'keep-alive', upgrade: 'h2c', 'x-normal': 'kept', 'proxy-authorization': 'Basic cHJveHk6c2VjcmV0' },
    });
    expect(res.status).toBe(200);
    const got = legacy.received[0].headers;
    // Proxy-Authorization is the client's credential for this hop, never the backend's (as Go's ReverseProxy).
    for (const h of ['x-client-private', 'keep-alive', 'te', 'proxy-connection', 'upgrade', 'proxy-authorization']) expect(got[h], h).toBeUndefined();
    expect(got['x-normal']).toBe('kept');
    // The client's TE never goes on; the proxy says `TE: trailers` itself only for a client that takes them.
    const withTrailers = await rawRequest(`${p.dataUrl}/a`, { headers: { te: 'gzip, trailers' } });
    expect(withTrailers.status).toBe(200);
    expect(legacy.received[1].headers.te).toBe('trailers');
    expect(res.headers['proxy-authenticate']).toBeUndefined();
    expect(res.headers['x-upstream-private']).toBeUndefined();
    expect(res.headers['x-kept']).toBe('yes');
    expect(res.body).toBe('ok');
  });

  it('sets X-Forwarded-* and overwrites what an untrusted peer claims', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    await rawRequest(`${p.dataUrl}/x`, { headers: { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https', host: 'api.example.com' } });
    const got = legacy.received[0].headers;
    expect(got['x-forwarded-for']).toBe('127.0.0.1');
    expect(got['x-forwarded-proto']).toBe('http');
    expect(got['x-forwarded-host']).toBe('api.example.com');
    expect(got.host).toBe(`127.0.0.1:${legacy.port}`);
  });

  it('appends to X-Forwarded-For when the peer is a trusted proxy, and can preserve Host', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url, { listen: { host: '127.0.0.1', port: 0, trustedProxies: ['127.0.0.0/8'], preserveHost: true } }));
    await rawRequest(`${p.dataUrl}/x`, { headers: { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'https', host: 'api.example.com' } });
    const got = legacy.received[0].headers;
    expect(got['x-forwarded-for']).toBe('203.0.113.9, 127.0.0.1');
    expect(got['x-forwarded-proto']).toBe('https');
    expect(got.host).toBe('api.example.com');
  });

  it('passes every method and raw body of any content type', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    const payload = Buffer.from([0, 1, 2, 255, 254]);
    // GET with a body (an Elasticsearch-style search) and WebDAV methods carry theirs through too.
    const methods = ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'GET', 'PROPFIND', 'REPORT', 'SEARCH'];
    for (const method of methods) {
      const res = await request(`${p.dataUrl}/m?q=1`, { method: method as 'POST', body: payload, headers: { 'content-type': 'application/x-weird' } });
      await res.body.text();
      expect(res.statusCode, method).toBe(200);
    }
    expect(legacy.received.map((r) => r.method)).toEqual(methods);
    for (const r of legacy.received) {
      expect(r.body.equals(payload)).toBe(true);
      expect(r.url).toBe('/m?q=1');
    }
    // Media types a parser would refuse ("json", "text", empty) are forwarded as sent, not answered 415.
    for (const type of ['json', 'text', '', 'application/json; charset']) {
      const res = await request(`${p.dataUrl}/t`, { method: 'POST', body: '{"a":1}', headers: { 'content-type': type } });
      await res.body.text();
      expect(res.statusCode, type).toBe(200);
      expect(legacy.received.at(-1)!.headers['content-type']).toBe(type);
    }
  });

  it('streams a slow body to the client chunk by chunk before it ends', async () => {
    let finish!: () => void;
    const legacy = await backend((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first;');
      finish = () => res.end('last');
    });
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    const res = await request(`${p.dataUrl}/stream`);
    const reader = res.body[Symbol.asyncIterator]();
    const first = await reader.next();
    // The backend has not ended its response yet, and the client already holds the first chunk.
    expect(String(first.value)).toBe('first;');
    finish();
    let rest = '';
    for (let n = await reader.next(); !n.done; n = await reader.next()) rest += String(n.value);
    expect(rest).toBe('last');
  });

  it('aborts the upstream request when the client goes away', async () => {
    let upstreamClosed = false;
    const legacy = await backend((req, res) => {
      res.writeHead(200);
      res.write('partial');
      res.on('close', () => (upstreamClosed = true));
    });
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    await new Promise<void>((resolve) => {
      const req = http.get(`${p.dataUrl}/hang`, { agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
    });
    await waitFor(() => upstreamClosed, 5_000, 'the backend to see the abort');
  });

  it('a pipelining client that leaves: the answer queued behind the first is aborted at once, not held until the backend timeout', async () => {
    const big = 'x'.repeat(400_000);
    let queuedClosed = false;
    const legacy = await backend((req, res) => {
      if (req.url === '/first') setTimeout(() => res.end('first'), 400);
      else {
        res.on('close', () => (queuedClosed = true));
        res.end(big);
      }
    });
    const p = await proxy(baseConfig(legacy.url, legacy.url, { backends: { legacy: { url: legacy.url, timeout: '10s' }, new: { url: legacy.url } }, defaults: { shadow: { percent: 0 } } }));
    const net = await import('node:net');
    const sock = net.connect(Number(new URL(p.dataUrl).port), '127.0.0.1');
    sock.on('error', () => undefined);
    sock.write('GET /first HTTP/1.1\r\nhost: x\r\n\r\nGET /queued HTTP/1.1\r\nhost: x\r\n\r\n');
    await waitFor(() => legacy.received.length === 2, 5_000, 'both requests at the backend');
    await new Promise((r) => setTimeout(r, 100));
    sock.destroy();
    const upstream = (p.proxy as unknown as { deps: { upstreams: { legacy: { inFlight: number } } } }).deps.upstreams.legacy;
    await waitFor(() => upstream.inFlight === 0, 3_000, 'both exchanges to end (the backend timeout is 10 s)');
    const text = await scrape(p);
    expect(text).not.toMatch(/^cutover_requests_total\{[^}]*outcome="timeout"\} [1-9]/m);
    expect(queuedClosed).toBe(true);
  });

  it("a client that reads slowly is not timed as the backend's latency", async () => {
    const big = Buffer.alloc(4 * 1024 * 1024, 120);
    const legacy = await backend((_req, res) => res.end(big));
    const p = await proxy(baseConfig(legacy.url, legacy.url, { defaults: { shadow: { percent: 0 } } }));
    // The client takes the head, then reads nothing for 700 ms: the proxy pauses the upstream read.
    await new Promise<void>((resolve, reject) => {
      http
        .get(`${p.dataUrl}/big`, { agent: false }, (res) => {
          res.pause();
          setTimeout(() => {
            res.resume();
            res.on('end', resolve);
          }, 700);
        })
        .on('error', reject);
    });
    const text = await waitFor(async () => {
      const t = await scrape(p);
      return sample(t, 'cutover_request_duration_seconds_count{route="other",backend="legacy",role="primary"}') === 1 ? t : null;
    }, 5_000, 'the exchange to be timed');
    // The backend sent all of it at once: its time is far under the client's 700 ms pause.
    expect(sample(text, 'cutover_request_duration_seconds_sum{route="other",backend="legacy",role="primary"}')).toBeLessThan(0.35);
  });

  it('relays a 304 that carries its representation\'s Content-Length, keeps the connection, and compares a mirrored one as an answer', async () => {
    const notModified = (req: http.IncomingMessage, res: http.ServerResponse): void => {
      if (req.headers['if-none-match'] === '"v1"') res.writeHead(304, { etag: '"v1"', 'content-length': '1000' }).end();
      else res.writeHead(200, { etag: '"v1"', 'content-type': 'application/json' }).end('{"ok":true}');
    };
    const legacy = await backend(notModified);
    const next = await backend(notModified);
    const p = await proxy(baseConfig(legacy.url, next.url, { defaults: { shadow: { percent: 100 } }, routes: [{ name: 'doc', match: { path: '/doc' }, weight: 0 }] }));
    // Two conditional requests on one kept-alive client connection: the first 304 must not cut it.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(async () => agent.destroy());
    const conditional = (): Promise<{ status: number; etag: string | undefined; socket: object }> =>
      new Promise((resolve, reject) => {
        http
          .get(`${p.dataUrl}/doc`, { agent, headers: { 'if-none-match': '"v1"' } }, (res) => {
            res.resume();
            res.on('end', () => resolve({ status: res.statusCode!, etag: res.headers.etag, socket: res.socket }));
          })
          .on('error', reject);
      });
    const first = await conditional();
    const second = await conditional();
    expect(first).toMatchObject({ status: 304, etag: '"v1"' });
    expect(second.status).toBe(304);
    expect(second.socket).toBe(first.socket);
    const text = await waitFor(async () => {
      const t = await scrape(p);
      return (sample(t, 'cutover_comparisons_total{route="doc",result="match"}') ?? 0) >= 2 ? t : null;
    }, 5_000, 'both mirrored 304s compared');
    expect(sample(text, 'cutover_requests_total{route="doc",backend="legacy",role="primary",outcome="3xx"}')).toBe(2);
    expect(sample(text, 'cutover_requests_total{route="doc",backend="new",role="shadow",outcome="3xx"}')).toBe(2);
    expect(text).not.toMatch(/^cutover_requests_total\{[^}]*outcome="error"\} [1-9]/m);
  });

  it('answers 502 problem+json naming the backend when it is unreachable', async () => {
    const port = await deadPort();
    const p = await proxy(baseConfig(`http://127.0.0.1:${port}`, `http://127.0.0.1:${port}`));
    const res = await rawRequest(`${p.dataUrl}/x`);
    expect(res.status).toBe(502);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    const body = JSON.parse(res.body);
    expect(body).toMatchObject({ status: 502, code: 'UPSTREAM_UNAVAILABLE', backend: 'legacy' });
    expect(res.body).not.toContain('ECONNREFUSED');
    expect(res.body).not.toContain(String(port));
  });

  it('answers 504 problem+json when the backend is too slow', async () => {
    const legacy = await backend(() => undefined /* never answers */);
    const p = await proxy(baseConfig(legacy.url, legacy.url, { backends: { legacy: { url: legacy.url, timeout: '300ms' }, new: { url: legacy.url } } }));
    const res = await rawRequest(`${p.dataUrl}/slow`);
    expect(res.status).toBe(504);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(res.body)).toMatchObject({ status: 504, code: 'UPSTREAM_TIMEOUT', backend: 'legacy' });
  });

  it('answers 413 problem+json for a body over the limit and forwards nothing', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url, { listen: { host: '127.0.0.1', port: 0, bodyLimit: '1kb' } }));
    const res = await rawRequest(`${p.dataUrl}/upload`, { method: 'POST', body: Buffer.alloc(5000, 1), headers: { 'content-type': 'application/octet-stream' } });
    expect(res.status).toBe(413);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(res.body).code).toBe('BODY_TOO_LARGE');
    expect(legacy.received).toHaveLength(0);
    // Counted, as every refusal is: requests = comparisons + skipped holds only for what is forwarded.
    expect(sample(await scrape(p), 'cutover_rejected_requests_total{route="other",reason="body_too_large"}')).toBe(1);
  });

  it('passes WebSocket upgrades through to the primary backend', async () => {
    const legacy = await backend();
    const wss = new WebSocketServer({ server: legacy.server });
    const seenHeaders: http.IncomingHttpHeaders[] = [];
    wss.on('connection', (socket, req) => {
      seenHeaders.push(req.headers);
      socket.on('message', (data) => socket.send(`echo:${String(data)}`));
    });
    cleanups.push(async () => wss.close());
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    const reply = await firstWsMessage(p.dataUrl, '/socket?room=1', { send: 'hello' });
    expect(reply).toBe('echo:hello');
    expect(seenHeaders[0]['x-forwarded-for']).toBe('127.0.0.1');
  });
});

describe('upgrades are counted like requests', () => {
  const route = (name: string) => ({ defaults: { shadow: { percent: 0 } }, log: { level: 'info', access: true }, routes: [{ name, match: { path: '/socket' }, weight: 0 }] });
  const series = (route: string, outcome: string) => `cutover_requests_total{route="${route}",backend="legacy",role="primary",outcome="${outcome}"}`;
  const accessLine = (p: InProcessProxy) => waitFor(() => p.logs.map((l) => JSON.parse(l)).find((l) => l.msg === 'request'), 5_000, 'the access log line');

  it('a WebSocket handshake: 2xx, its time up to the 101, and an access log line', async () => {
    const legacy = await backend();
    const wss = new WebSocketServer({ server: legacy.server });
    wss.on('connection', (socket) => socket.on('message', (data) => socket.send(`echo:${String(data)}`)));
    cleanups.push(async () => wss.close());
    const p = await proxy(baseConfig(legacy.url, legacy.url, route('ws')));
    expect(await firstWsMessage(p.dataUrl, '/socket', { send: 'hi' })).toBe('echo:hi');
    const text = await scrape(p);
    expect(sample(text, series('ws', '2xx'))).toBe(1);
    expect(sample(text, 'cutover_request_duration_seconds_count{route="ws",backend="legacy",role="primary"}')).toBe(1);
    expect(sample(text, 'cutover_upstream_queue_seconds_count{backend="legacy",role="primary"}')).toBe(1);
    expect(await accessLine(p)).toMatchObject({ route: 'ws', method: 'GET', path: '/socket', backend: 'legacy', status: 101, outcome: '2xx', upgrade: true });
  });

  it('a handshake whose client leaves before the 101 is in neither count: not a request, not a skip', async () => {
    const legacy = await backend();
    const next = await backend();
    const handshakes: Duplex[] = [];
    // Legacy takes the handshake and never answers it.
    legacy.server.on('upgrade', (_req, socket: Duplex) => handshakes.push(socket.on('error', () => undefined)));
    cleanups.push(async () => handshakes.forEach((s) => s.destroy()));
    const p = await proxy(baseConfig(legacy.url, next.url, { routes: [{ name: 'ws', match: { path: '/socket' }, shadow: { percent: 100 } }] }));
    const req = http.request(`${p.dataUrl}/socket`, { headers: { connection: 'upgrade', upgrade: 'websocket' }, agent: false });
    req.on('error', () => undefined);
    req.end();
    await waitFor(() => handshakes.length === 1, 5_000, 'the handshake at legacy');
    req.destroy();
    await waitFor(() => handshakes[0].destroyed || (handshakes[0] as Socket).readableEnded, 5_000, 'the backend side closed');
    await new Promise((r) => setTimeout(r, 100));
    const text = await scrape(p);
    expect(sample(text, 'cutover_shadow_skipped_total{route="ws",reason="upgrade"}')).toBe(0);
    expect(total(text, 'cutover_requests_total{route="ws",backend="legacy",role="primary"')).toBe(0);
  });

  it('an upgrade is never mirrored and counted so (comparisons + skipped = requests); a route of upgrades says why its gates hold', async () => {
    const legacy = await backend();
    const next = await backend();
    for (const b of [legacy, next]) {
      const wss = new WebSocketServer({ server: b.server });
      wss.on('connection', (socket) => socket.on('message', (data) => socket.send(`echo:${String(data)}`)));
      cleanups.push(async () => wss.close());
    }
    const tokenDir = mkdtempSync(join(tmpdir(), 'cutover-upgrade-gates-'));
    writeFileSync(join(tokenDir, 'token'), 'upgrade-gates-token\n');
    const p = await proxy(
      baseConfig(legacy.url, next.url, {
        admin: { host: '127.0.0.1', port: 0, tokenFile: join(tokenDir, 'token') },
        cutover: { interval: '100ms' },
        routes: [{ name: 'ws', match: { path: '/socket' }, weight: 0, shadow: { percent: 100 } }],
      }),
    );
    // One plain request, mirrored and compared; two handshakes, never mirrored.
    const plain = await request(`${p.dataUrl}/socket`);
    await plain.body.dump();
    expect(await firstWsMessage(p.dataUrl, '/socket', { send: 'a' })).toBe('echo:a');
    expect(await firstWsMessage(p.dataUrl, '/socket', { send: 'b' })).toBe('echo:b');
    await waitFor(async () => sample(await scrape(p), 'cutover_comparisons_total{route="ws",result="match"}') === 1, 5_000, 'the plain request compared');
    const text = await scrape(p);
    expect(sample(text, 'cutover_shadow_skipped_total{route="ws",reason="upgrade"}')).toBe(2);
    expect(total(text, 'cutover_requests_total{route="ws",backend="legacy",role="primary"')).toBe(3);
    expect(total(text, 'cutover_comparisons_total{route="ws"') + total(text, 'cutover_shadow_skipped_total{route="ws"')).toBe(3);
    // No handshake reached new: only the plain request's mirror did.
    expect(next.received).toHaveLength(1);

    // The controller holds the route for want of comparisons, and says why and what to do.
    const gate = await waitFor(async () => {
      const res = await request(`${p.adminUrl}/api/state`, { headers: { authorization: 'Bearer upgrade-gates-token' } });
      const state = (await res.body.json()) as { routes: { route: string; gates: { gate: string; detail: string }[] }[] };
      return state.routes.find((r) => r.route === 'ws')?.gates.find((g) => g.gate === 'minComparisons' && g.detail.includes('upgrade 2'));
    }, 5_000, 'a check that saw the upgrades');
    expect(gate!.detail).toContain('Only 1 of the 200 comparisons needed');
    expect(gate!.detail).toContain('not mirrored (upgrade 2)');
    expect(gate!.detail).toContain('POST /api/routes/ws/promote');
  });

  it('a backend that refuses the upgrade: its status class; one that is down: error and 502', async () => {
    const legacy = await backend();
    legacy.server.on('upgrade', (_req: http.IncomingMessage, socket: import('node:net').Socket) => socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno'));
    const p = await proxy(baseConfig(legacy.url, legacy.url, route('ws')));
    expect(await upgradeRequest(`${p.dataUrl}/socket`)).toEqual({ status: 403, body: 'no' });
    await waitFor(async () => sample(await scrape(p), series('ws', '4xx')) === 1, 5_000, 'the 4xx counted');

    const dead = `http://127.0.0.1:${await deadPort()}`;
    const q = await proxy(baseConfig(dead, dead, route('down')));
    const down = await upgradeRequest(`${q.dataUrl}/socket`);
    expect(down.status).toBe(502);
    expect(JSON.parse(down.body)).toMatchObject({ code: 'UPSTREAM_UNAVAILABLE', backend: 'legacy' });
    await waitFor(async () => sample(await scrape(q), series('down', 'error')) === 1, 5_000, 'the error counted');
  });

  it('a client that leaves during the handshake aborts it, and is not counted against the backend', async () => {
    const legacy = await backend();
    const held: import('node:net').Socket[] = [];
    legacy.server.on('upgrade', (_req: http.IncomingMessage, socket: import('node:net').Socket) => held.push(socket));
    cleanups.push(async () => held.forEach((s) => s.destroy()));
    const p = await proxy(baseConfig(legacy.url, legacy.url, route('ws')));
    const req = http.request(`${p.dataUrl}/socket`, { headers: { connection: 'upgrade', upgrade: 'websocket' }, agent: false });
    req.on('error', () => undefined);
    req.end();
    await waitFor(() => held.length === 1, 5_000, 'the upgrade at the backend');
    req.destroy();
    // The proxy notices at once (the backend would hold the handshake for its whole timeout) and
    // lets go of the backend's connection.
    expect(await accessLine(p)).toMatchObject({ route: 'ws', outcome: 'aborted', upgrade: true });
    await waitFor(() => held[0].destroyed || held[0].readableEnded, 5_000, 'the backend side closed');
    const text = await scrape(p);
    for (const outcome of ['2xx', '4xx', '5xx', 'error', 'timeout']) expect(sample(text, series('ws', outcome)), outcome).toBe(0);
  });

  it('a client that leaves while its upgrade waits for a pooled connection is never sent on', async () => {
    const legacy = await backend();
    const held: import('node:net').Socket[] = [];
    legacy.server.on('upgrade', (_req: http.IncomingMessage, socket: import('node:net').Socket) => held.push(socket));
    cleanups.push(async () => held.forEach((s) => s.destroy()));
    const p = await proxy(baseConfig(legacy.url, legacy.url, { ...route('ws'), backends: { legacy: { url: legacy.url, connections: 1 }, new: { url: legacy.url } } }));
    const open = (): http.ClientRequest => {
      const req = http.request(`${p.dataUrl}/socket`, { headers: { connection: 'upgrade', upgrade: 'websocket' }, agent: false });
      req.on('error', () => undefined);
      req.on('upgrade', (_res, socket) => socket.destroy());
      req.end();
      return req;
    };
    open();
    await waitFor(() => held.length === 1, 5_000, 'the first upgrade at the backend');
    // The pool's one connection is taken: the second waits in the proxy (given time to get there on a
    // busy machine), then its client leaves.
    const second = open();
    await new Promise((r) => setTimeout(r, 300));
    second.destroy();
    await new Promise((r) => setTimeout(r, 100));
    // The first handshake ends and frees the pool's place: the second, its client gone, is dropped
    // there (counted as aborted), and nothing else reaches the backend.
    held[0].write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
    await waitFor(() => p.logs.some((l) => JSON.parse(l).status === 101), 5_000, 'the first spliced');
    await waitFor(() => p.logs.some((l) => JSON.parse(l).outcome === 'aborted'), 5_000, 'the second counted as aborted');
    await new Promise((r) => setTimeout(r, 200));
    expect(held).toHaveLength(1);
  });

  it('a handshake queued behind hanging ones ends at the backend timeout counted from dispatch, as a request does', async () => {
    const hang = http.createServer(() => undefined);
    // Never answers a handshake; lets its socket go when the proxy gives up on it.
    hang.on('upgrade', (_req, sock) => {
      sock.on('error', () => undefined);
      sock.on('end', () => sock.destroy());
    });
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    cleanups.push(async () => {
      hang.closeAllConnections();
      await new Promise((r) => hang.close(r));
    });
    const url = `http://127.0.0.1:${(hang.address() as AddressInfo).port}`;
    const p = await proxy(baseConfig(url, url, { backends: { legacy: { url, timeout: '600ms', connections: 1 }, new: { url } }, defaults: { shadow: { percent: 0 } } }));
    const started = Date.now();
    const upgrade = () =>
      new Promise<{ status: number; ms: number }>((resolve) => {
        const req = http.request(`${p.dataUrl}/ws`, { agent: false, headers: { connection: 'upgrade', upgrade: 'websocket' } });
        req.on('response', (res) => {
          res.resume();
          resolve({ status: res.statusCode!, ms: Date.now() - started });
        });
        req.on('upgrade', (_res, sock) => {
          sock.destroy();
          resolve({ status: 101, ms: Date.now() - started });
        });
        req.on('error', () => resolve({ status: 0, ms: Date.now() - started }));
        req.end();
      });
    // Three handshakes on a one-connection pool: the third waited 3 x 600 ms before.
    const answers = await Promise.all([upgrade(), upgrade(), upgrade()]);
    expect(answers.map((a) => a.status)).toEqual([504, 504, 504]);
    expect(Math.max(...answers.map((a) => a.ms))).toBeLessThan(1_500);
  });

  it('handshakes hold their place in the backend pool: past its queue, an upgrade gets 503 problem+json', async () => {
    const legacy = await backend();
    const held: import('node:net').Socket[] = [];
    legacy.server.on('upgrade', (_req: http.IncomingMessage, socket: import('node:net').Socket) => held.push(socket));
    cleanups.push(async () => held.forEach((s) => s.destroy()));
    const p = await proxy(baseConfig(legacy.url, legacy.url, { ...route('ws'), backends: { legacy: { url: legacy.url, connections: 1, maxPending: 1 }, new: { url: legacy.url } } }));
    const waiting: http.ClientRequest[] = [];
    const open = (): void => {
      const req = http.request(`${p.dataUrl}/socket`, { headers: { connection: 'upgrade', upgrade: 'websocket' }, agent: false });
      req.on('error', () => undefined);
      req.end();
      waiting.push(req);
    };
    cleanups.push(async () => waiting.forEach((r) => r.destroy()));
    // One handshake at the backend, then one queued behind it in the pool.
    open();
    await waitFor(() => held.length === 1, 5_000, 'the first upgrade at the backend');
    open();
    await new Promise((r) => setTimeout(r, 300));
    expect(held).toHaveLength(1);
    const third = await upgradeRequest(`${p.dataUrl}/socket`);
    expect(third.status).toBe(503);
    expect(JSON.parse(third.body)).toMatchObject({ code: 'UPSTREAM_SATURATED', backend: 'legacy' });
    expect(sample(await scrape(p), 'cutover_rejected_requests_total{route="ws",reason="saturated"}')).toBe(1);
    // A plain request meets the same full queue.
    expect((await rawRequest(`${p.dataUrl}/socket`)).status).toBe(503);
  });

  it('an upgrade pipelined behind a request still being answered waits for that answer', async () => {
    const releases: (() => void)[] = [];
    const legacy = await backend((req, res) => {
      if (req.url === '/slow') releases.push(() => res.end('slow-body'));
      else res.end('ok');
    });
    const wss = new WebSocketServer({ server: legacy.server });
    wss.on('connection', (socket) => socket.send('hello-over-ws'));
    cleanups.push(async () => wss.close());
    let handshakes = 0;
    legacy.server.on('upgrade', () => handshakes++);
    const p = await proxy(baseConfig(legacy.url, legacy.url, route('ws')));
    const net = await import('node:net');
    const sock = net.connect(Number(new URL(p.dataUrl).port), '127.0.0.1');
    cleanups.push(async () => sock.destroy());
    let got = '';
    sock.on('data', (c: Buffer) => (got += c.toString('latin1')));
    sock.write(
      'GET /slow HTTP/1.1\r\nhost: x\r\n\r\n' +
        'GET /socket HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    await waitFor(() => releases.length === 1, 5_000, 'the slow request at the backend');
    await new Promise((r) => setTimeout(r, 100));
    // Nothing may overtake the first answer, and the handshake has not reached the backend yet.
    expect(got).toBe('');
    expect(handshakes).toBe(0);
    releases[0]();
    await waitFor(() => got.includes('hello-over-ws'), 5_000, 'the tunnel');
    const answer = got.indexOf('HTTP/1.1 200');
    const switched = got.indexOf('HTTP/1.1 101');
    expect(answer).toBe(0);
    expect(switched).toBeGreaterThan(got.indexOf('slow-body'));
  });

  it('bytes a client sends with its upgrade, and after it before the 101, reach the backend through the tunnel', async () => {
    const legacy = await backend();
    const got: Buffer[] = [];
    legacy.server.on('upgrade', (_req: http.IncomingMessage, socket: import('node:net').Socket, head: Buffer) => {
      if (head.length) got.push(head);
      socket.on('data', (c: Buffer) => got.push(c));
      cleanups.push(async () => socket.destroy());
      // Late, so the client's early bytes reach the proxy before the 101 does.
      setTimeout(() => socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n'), 150);
    });
    const p = await proxy(baseConfig(legacy.url, legacy.url, route('ws')));
    const net = await import('node:net');
    const { port } = new URL(p.dataUrl);
    const sock = net.connect(Number(port), '127.0.0.1');
    cleanups.push(async () => sock.destroy());
    // In the request's own packet (Node hands them over as the upgrade's head), then on their own.
    sock.write('GET /socket HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\nhead-');
    await new Promise((r) => setTimeout(r, 30));
    sock.write('early');
    let reply = '';
    sock.on('data', (c: Buffer) => (reply += String(c)));
    await waitFor(() => reply.startsWith('HTTP/1.1 101'), 5_000, 'the 101');
    await waitFor(() => Buffer.concat(got).toString() === 'head-early', 5_000, 'the early bytes at the backend');
  });
});

describe('the drain', () => {
  it('a request or an upgrade arriving on an open connection once the drain began gets 503 DRAINING, counted by route', async () => {
    const releases: (() => void)[] = [];
    const legacy = await backend((req, res) => {
      if (req.url === '/slow') releases.push(() => res.end('slow'));
      else res.end('ok');
    });
    const p = await startProxy(baseConfig(legacy.url, legacy.url, { defaults: { shadow: { percent: 0 } }, routes: [{ name: 'plain', match: { path: '/plain' } }, { name: 'ws', match: { path: '/socket' } }, { name: 'slow', match: { path: '/slow' } }] }));
    let closed = false;
    cleanups.push(async () => {
      if (!closed) await p.close(100);
    });
    const net = await import('node:net');
    const { port } = new URL(p.dataUrl);
    // Two connections kept busy by a slow request each, so the drain does not close them at once.
    const replies = ['', ''];
    const socks = [0, 1].map((i) => {
      const sock = net.connect(Number(port), '127.0.0.1');
      sock.on('data', (c: Buffer) => (replies[i] += String(c)));
      sock.on('error', () => undefined);
      sock.write('GET /slow HTTP/1.1\r\nhost: x\r\n\r\n');
      return sock;
    });
    cleanups.push(async () => socks.forEach((s) => s.destroy()));
    await waitFor(() => releases.length === 2, 5_000, 'both slow requests at the backend');
    const closing = p.close(5_000);
    await new Promise((r) => setTimeout(r, 50));
    // Once the drain has begun, each connection sends one more: a request, and an upgrade.
    socks[0].write('GET /plain HTTP/1.1\r\nhost: x\r\n\r\n');
    socks[1].write('GET /socket HTTP/1.1\r\nhost: x\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
    await new Promise((r) => setTimeout(r, 200));
    for (const release of releases) release();
    await waitFor(() => replies.every((r) => r.includes('"code":"DRAINING"')), 5_000, 'both answered DRAINING');
    await closing;
    closed = true;
    const text = await p.telemetry.exposition();
    expect(sample(text, 'cutover_rejected_requests_total{route="plain",reason="draining"}')).toBe(1);
    expect(sample(text, 'cutover_rejected_requests_total{route="ws",reason="draining"}')).toBe(1);
    // Nothing but the slow requests reached the backend (an upgrade would too: it has no upgrade
    // listener, so Node hands the handshake to its request handler).
    expect(legacy.received.map((r) => r.url)).toEqual(['/slow', '/slow']);
  });
});

describe('sticky upgrades', () => {
  it('sends a client\'s WebSocket to the backend its HTTP calls go to, behind a trusted proxy with sticky ip', async () => {
    const named = async (name: string): Promise<TestBackend> => {
      const b = await backend((_req, res) => res.end(name));
      const wss = new WebSocketServer({ server: b.server });
      wss.on('connection', (socket) => socket.send(name));
      cleanups.push(async () => wss.close());
      return b;
    };
    const legacy = await named('legacy');
    const next = await named('new');
    const p = await proxy(
      baseConfig(legacy.url, next.url, {
        listen: { host: '127.0.0.1', port: 0, trustedProxies: ['127.0.0.0/8'] },
        sticky: { key: 'ip' },
        defaults: { shadow: { percent: 0 } },
        routes: [{ name: 'live', match: { path: '/live' }, weight: 50 }],
      }),
    );
    const seen = new Set<string>();
    for (let i = 1; i <= 12; i++) {
      const headers = { 'x-forwarded-for': `198.51.100.${i}` };
      const http = (await rawRequest(`${p.dataUrl}/live`, { headers })).body;
      const overWs = await firstWsMessage(p.dataUrl, '/live', { headers });
      expect(overWs, `client 198.51.100.${i}`).toBe(http);
      seen.add(http);
    }
    // Both backends serve someone, so agreement is not the trivial all-legacy case.
    expect(seen).toEqual(new Set(['legacy', 'new']));
  });
});

describe('routing', () => {
  it('rewrites the path toward the new backend and sends unmatched requests to legacy as "other"', async () => {
    const legacy = await backend();
    const next = await backend();
    const p = await proxy(
      baseConfig(legacy.url, next.url, {
        defaults: { shadow: { percent: 0 } },
        routes: [
          { name: 'get-widget', match: { methods: ['GET'], path: '/v1/widgets/:id' }, rewrite: { path: '/v2/items/:id' }, weight: 100 },
          { name: 'files', match: { methods: ['GET'], path: '/v1/files/*' }, rewrite: { path: '/v2/*/content' }, weight: 100 },
        ],
      }),
    );
    // An empty * capture: the rewritten path is canonical too (it was /v2//content).
    await rawRequest(`${p.dataUrl}/v1/files/`);
    await rawRequest(`${p.dataUrl}/v1/widgets/42?fields=a`);
    await rawRequest(`${p.dataUrl}/v1/unknown`);
    await rawRequest(`${p.dataUrl}/v1/widgets/42`, { method: 'DELETE' });
    expect(next.received.map((r) => r.url)).toEqual(['/v2/content', '/v2/items/42?fields=a']);
    expect(legacy.received.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /v1/unknown', 'DELETE /v1/widgets/42']);
    const metrics = await (await request(`${p.adminUrl}/metrics`)).body.text();
    expect(metrics).toMatch(/cutover_requests_total\{route="get-widget",backend="new",role="primary",outcome="2xx"\} 1/);
    expect(metrics).toMatch(/cutover_requests_total\{route="other",backend="legacy",role="primary",outcome="2xx"\} 2/);
  });

  it('never forwards the legacy credential to the new backend unless the route opts in', async () => {
    const legacy = await backend();
    const next = await backend();
    const p = await proxy(
      baseConfig(legacy.url, next.url, {
        defaults: { shadow: { percent: 0 } },
        routes: [
          { name: 'a', match: { path: '/a' }, weight: 100 },
          { name: 'b', match: { path: '/b' }, weight: 100, forwardCredentials: true },
        ],
      }),
    );
    const headers = { authorization: 'Bearer legacy-key', 'x-api-key': 'k-123' };
    await rawRequest(`${p.dataUrl}/a`, { headers });
    await rawRequest(`${p.dataUrl}/b`, { headers });
    expect(next.received[0].headers.authorization).toBeUndefined();
    expect(next.received[0].headers['x-api-key']).toBeUndefined();
    expect(next.received[1].headers.authorization).toBe('Bearer legacy-key');
  });

  it('splits keyless requests with an exact counter', async () => {
    const legacy = await backend();
    const next = await backend();
    const p = await proxy(baseConfig(legacy.url, next.url, { defaults: { shadow: { percent: 0 } }, routes: [{ name: 'r', match: { path: '/r' }, weight: 25 }] }));
    for (let i = 0; i < 40; i++) await rawRequest(`${p.dataUrl}/r`);
    expect(next.received).toHaveLength(10);
    expect(legacy.received).toHaveLength(30);
  });
});

describe('admin and logs', () => {
  it('serves metrics, health and readiness, and locks /api without the token', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    expect((await rawRequest(`${p.adminUrl}/healthz`)).status).toBe(200);
    expect((await rawRequest(`${p.adminUrl}/readyz`)).status).toBe(200);
    const api = await rawRequest(`${p.adminUrl}/api/anything`);
    expect(api.status).toBe(401);
    expect(api.headers['content-type']).toMatch(/^application\/problem\+json/);
  });

  it('writes an access log line per request when asked, without the query string or credentials', async () => {
    const legacy = await backend((_req, res) => {
      res.statusCode = 201;
      res.end('made');
    });
    const p = await proxy(baseConfig(legacy.url, legacy.url, { log: { level: 'info', access: true }, routes: [{ name: 'orders', match: { path: '/orders' } }] }));
    await rawRequest(`${p.dataUrl}/orders?token=s3cret`, { method: 'POST', headers: { authorization: 'Bearer abc', 'content-type': 'text/plain' }, body: 'x' });
    const line = await waitFor(() => p.logs.map((l) => JSON.parse(l)).find((l) => l.msg === 'request'), 5_000, 'the access log line');
    // A POST is not mirrored by default; a GET of the same route is, and its line says so.
    expect(line).toMatchObject({ route: 'orders', method: 'POST', path: '/orders', backend: 'legacy', status: 201, outcome: '2xx', client: '127.0.0.1', mirrored: false });
    expect(line.ms).toBeGreaterThan(0);
    await rawRequest(`${p.dataUrl}/orders`);
    const get = await waitFor(() => p.logs.map((l) => JSON.parse(l)).find((l) => l.msg === 'request' && l.method === 'GET'), 5_000, 'the GET line');
    expect(get).toMatchObject({ route: 'orders', mirrored: true });
    expect(get.upgrade).toBeUndefined();
    expect(p.logs.join('')).not.toContain('s3cret');
    expect(p.logs.join('')).not.toContain('Bearer abc');
  });

  it('writes no access log by default', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url, { log: { level: 'info' } }));
    await rawRequest(`${p.dataUrl}/x`);
    await rawRequest(`${p.adminUrl}/healthz`);
    expect(p.logs.map((l) => JSON.parse(l).msg)).not.toContain('request');
  });

  it('redacts credentials from logs', async () => {
    const { createLogger } = await import('../src/telemetry/logger.js');
    const lines: string[] = [];
    const { Writable } = await import('node:stream');
    const logger = createLogger('info', new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }));
    logger.info({ req: { headers: { authorization: 'Bearer s3cret', cookie: 'sid=abc', 'x-api-key': 'k1', 'proxy-authorization': 'Basic x' } }, res: { headers: { 'set-cookie': 'sid=def' } } }, 'request');
    logger.flush();
    await waitFor(() => lines.length > 0);
    const text = lines.join('');
    for (const secret of ['s3cret', 'sid=abc', 'k1', 'Basic x', 'sid=def']) expect(text).not.toContain(secret);
    expect(text).toContain('[redacted]');
  });
});
