/**
 * The adversarial suite of issue 8: raw node:net clients against the proxy, in front of logging
 * echo backends that record exactly what reached legacy and new. One case per row of the issue's
 * table and per attack that held, each named after its attack; each fails if its defence goes.
 */
import http from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { request } from 'undici';
import { WebSocketServer } from 'ws';
import { firstWsMessage } from '../helpers/ws.js';
import { sendProblem } from '../../src/admin/server.js';
import { waitFor } from '../helpers/backend.js';
import { scoped } from '../helpers/scoped.js';
import { baseConfig, startProxy } from '../helpers/proxy.js';
import { oneResponse, rawExchange } from './raw.js';
import { scrape } from '../helpers/metrics.js';

const { backend, proxy, defer } = scoped();

const WIDGETS = { name: 'widgets', match: { path: '/v1/widgets/:id' }, rewrite: { path: '/v2/widgets/:id' } };

function get(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: shop.example\r\n${extra}Connection: close\r\n\r\n`;
}

describe('row 2: upgrade tunnel smuggling', () => {
  it('upgrade-to-200: relays the 200 with Connection: close, closes, and nothing after it reaches the backend', async () => {
    const legacy = await backend((_req, res) => res.end('no upgrade here'));
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    const smuggled = 'GET /internal/admin HTTP/1.1\r\nHost: shop.example\r\nX-Cutover-Shadow: 1\r\n\r\n';
    const res = await rawExchange(p.dataUrl, [`GET /chat HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`, smuggled]);
    expect(res.status).toBe(200);
    expect(res.text.toLowerCase()).toContain('connection: close');
    expect(res.text).toContain('no upgrade here');
    expect(res.closed).toBe(true);
    expect(res.statuses).toEqual([200]);
    expect(legacy.received.map((r) => r.url)).toEqual(['/chat']);
  });

  it('upgrade-through-shaping: a real 101 is spliced, on the canonical path, with preserveHost and the credential stripped toward new', async () => {
    const next = await backend();
    const wss = new WebSocketServer({ server: next.server });
    const seen: http.IncomingMessage[] = [];
    wss.on('connection', (socket, req) => {
      seen.push(req);
      socket.on('message', (data) => socket.send(`echo:${String(data)}`));
    });
    defer(async () => wss.close());
    const legacy = await backend();
    const p = await proxy(
      baseConfig(legacy.url, next.url, {
        listen: { host: '127.0.0.1', port: 0, preserveHost: true },
        credentials: { legacy: [{ header: 'x-api-key' }, { query: 'api_key' }] },
        routes: [{ name: 'chat', match: { path: '/chat/:room' }, weight: 100 }],
      }),
    );
    const reply = await firstWsMessage(p.dataUrl, '/cha%74/r1?api_key=S3CR3T&x=1', { headers: { 'x-api-key': 'S3CR3T', host: 'shop.example' }, send: 'hi' });
    expect(reply).toBe('echo:hi');
    expect(seen[0].url).toBe('/chat/r1?x=1');
    expect(seen[0].headers.host).toBe('shop.example');
    expect(seen[0].headers['x-api-key']).toBeUndefined();
  });
});

describe('h2c smuggling: only WebSocket is tunnelled', () => {
  /** A backend that switches to any protocol asked for, then answers every line on the tunnel: what an h2c-capable backend is to a smuggler. */
  async function switchingBackend() {
    const b = await backend((_req, res) => res.end('plain answer'));
    const switched: string[] = [];
    b.server.on('upgrade', (req: http.IncomingMessage, socket: import('node:stream').Duplex) => {
      switched.push(String(req.headers.upgrade));
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${String(req.headers.upgrade)}\r\n\r\n`);
      socket.on('data', (d) => socket.write(`tunnel got: ${String(d)}`));
      socket.on('end', () => socket.end());
    });
    return { ...b, switched };
  }

  it('Upgrade: h2c (or a list naming it) is forwarded as an ordinary request without its upgrade, answered, and closed: no tunnel', async () => {
    const legacy = await switchingBackend();
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    for (const upgrade of ['h2c', 'websocket, h2c', 'WebSocket/13']) {
      const res = await rawExchange(p.dataUrl, [
        `GET /private HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: ${upgrade}\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n`,
        'GET /admin HTTP/1.1\r\nHost: shop.example\r\n\r\n',
      ]);
      expect(res.status, upgrade).toBe(200);
      expect(res.text, upgrade).toContain('plain answer');
      expect(res.text, upgrade).not.toContain('tunnel got');
      expect(res.closed, upgrade).toBe(true);
    }
    expect(legacy.switched).toEqual([]);
    expect(legacy.received.map((r) => r.url)).toEqual(['/private', '/private', '/private']);
    for (const r of legacy.received) {
      expect(r.headers.upgrade).toBeUndefined();
      expect(r.headers['http2-settings']).toBeUndefined();
    }
  });

  it('a backend that answers a WebSocket handshake by switching to another protocol gets no tunnel: the client gets 502', async () => {
    const legacy = await backend();
    legacy.server.on('upgrade', (_req: http.IncomingMessage, socket: import('node:stream').Duplex) => {
      socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n');
      socket.on('data', (d) => socket.write(`tunnel got: ${String(d)}`));
      socket.on('end', () => socket.end());
    });
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    const res = await rawExchange(p.dataUrl, [`GET /chat HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`, 'PRI * HTTP/2.0\r\n\r\n']);
    expect(res.status).toBe(502);
    expect(res.text).toContain('UPSTREAM_UNAVAILABLE');
    expect(res.text).not.toContain('tunnel got');
    expect(res.closed).toBe(true);
  });

  it('a non-WebSocket upgrade carrying a body is refused 400 and nothing is forwarded (it would go without its body)', async () => {
    const legacy = await switchingBackend();
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    const res = await rawExchange(p.dataUrl, 'POST /orders HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\n{}');
    expect(res.status).toBe(400);
    expect(res.text).toContain('application/problem+json');
    expect(res.text).toContain('Only WebSocket upgrades are tunnelled');
    expect(legacy.received).toHaveLength(0);
    expect(legacy.switched).toEqual([]);
    expect(await scrape(p)).toMatch(/cutover_rejected_requests_total\{route="other",reason="bad_upgrade"\} 1/);
  });
});

describe('row 2 and 3 together: upgrades are canonicalised too', () => {
  it('upgrade-with-traversal-param: refused with a raw problem+json 400 before any backend is asked', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url, { routes: [{ name: 'chat', match: { path: '/chat/:room' }, rewrite: { path: '/v2/chat/:room' } }] }));
    const res = await rawExchange(p.dataUrl, 'GET /chat/..%2f..%2fadmin HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    expect(res.status).toBe(400);
    expect(res.text).toContain('application/problem+json');
    expect(res.closed).toBe(true);
    expect(legacy.received).toHaveLength(0);
  });
});

describe('a request pipelined behind a refused one', () => {
  it('is never forwarded: its answer could not be sent (a write the backend ran for a client that saw no answer)', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url, { listen: { host: '127.0.0.1', port: 0, bodyLimit: 100 }, routes: [{ name: 'w', match: { path: '/w/:id' } }] }));
    const order = '{"item":"book","qty":1}';
    const post = `POST /orders HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: ${order.length}\r\n\r\n${order}`;
    for (const [first, status] of [
      ['GET /w/a%2fb HTTP/1.1\r\nHost: h\r\n\r\n', 400],
      ['GET /a HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n', 400],
      [`POST /a HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 101\r\n\r\n${'x'.repeat(101)}`, 413],
    ] as const) {
      const res = await rawExchange(p.dataUrl, first + post, { timeoutMs: 2_000 });
      expect(res.statuses).toEqual([status]);
      expect(res.closed).toBe(true);
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(legacy.received).toHaveLength(0);
  });
});

describe('a broken request head pipelined behind requests whose answers are due', () => {
  it('gets its 400 or 431 after those answers, in order, never in their place (the backend ran them); then the connection closes', async () => {
    const legacy = await backend((req, res) => {
      req.resume();
      setTimeout(() => {
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(`{"done":"${req.method} ${req.url}"}`);
      }, 300);
    });
    const p = await proxy(baseConfig(legacy.url, legacy.url, { routes: [{ name: 'orders', match: { path: '/orders' }, shadow: { percent: 0 } }] }));
    const order = '{"item":"book","qty":1}';
    const post = `POST /orders HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: ${order.length}\r\n\r\n${order}`;
    const get = 'GET /orders HTTP/1.1\r\nHost: h\r\n\r\n';
    for (const [broken, status] of [
      ['GET /orders HTTP/1.1\r\nHost: h\r\nnot a header line\r\n\r\n', 400],
      [`GET /orders HTTP/1.1\r\nHost: h\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`, 431],
    ] as const) {
      // The requests whole first, so their answers are due when the broken head arrives.
      const res = await rawExchange(p.dataUrl, [post, get, broken], { timeoutMs: 5_000 });
      expect(res.statuses, res.text.slice(0, 300)).toEqual([201, 201, status]);
      expect(res.text.indexOf('"done":"POST /orders"')).toBeLessThan(res.text.indexOf('"done":"GET /orders"'));
      expect(res.text.slice(res.text.indexOf(`HTTP/1.1 ${status}`))).toContain('application/problem+json');
      expect(res.closed).toBe(true);
    }
    // Both ran each time (the proxy sends pipelined requests on at once; their answers keep the order).
    expect(legacy.received.map((r) => `${r.method} ${r.url}`).sort()).toEqual(['GET /orders', 'GET /orders', 'POST /orders', 'POST /orders']);
  });
});

describe('a broken body in a request pipelined behind one whose answer is due', () => {
  it('cuts the connection at once (its handler waits for that body: no 408 ten seconds later)', async () => {
    const legacy = await backend((req, res) => {
      req.resume();
      setTimeout(() => res.end('slow'), 300);
    });
    const p = await proxy(baseConfig(legacy.url, legacy.url, { routes: [{ name: 'orders', match: { path: '/orders' }, shadow: { percent: 0 } }] }));
    const res = await rawExchange(p.dataUrl, ['GET /orders HTTP/1.1\r\nHost: h\r\n\r\n', 'POST /orders HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbad\r\n0\r\n\r\n'], { timeoutMs: 3_000 });
    expect(res.closed).toBe(true);
    expect(res.statuses).not.toContain(408);
  });
});

describe('sockets answered with a raw problem', () => {
  it('are closed by the proxy even when the client keeps its half open (they have no HTTP timeouts left)', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url, { routes: [{ name: 'chat', match: { path: '/chat/:room' } }] }));
    const net = await import('node:net');
    const { port } = new URL(p.dataUrl);
    const sock = net.connect({ host: '127.0.0.1', port: Number(port), allowHalfOpen: true });
    let text = '';
    sock.on('data', (d: Buffer) => (text += String(d)));
    sock.on('error', () => undefined);
    // The client never ends its side: before, the proxy's socket stayed open for good.
    sock.on('end', () => undefined);
    sock.write('GET /chat/..%2fadmin HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n');
    await waitFor(() => /^HTTP\/1\.1 400/.test(text), 5_000, 'the 400');
    const server = p.proxy.app.server;
    const open = () => new Promise<number>((resolve) => server.getConnections((_e, n) => resolve(n)));
    expect(await open()).toBe(1);
    await waitFor(async () => (await open()) === 0, 8_000, "the proxy to close its side (the client's is still open)");
    expect(sock.destroyed).toBe(false);
    sock.destroy();
  });
});

describe('row 3: path traversal past rewrite.path', () => {
  it('encoded-dot-segments: resolved before routing, so new never receives ".." and the rewrite cannot be escaped', async () => {
    const legacy = await backend();
    const next = await backend();
    const p = await proxy(baseConfig(legacy.url, next.url, { routes: [{ name: 'live', match: { path: '/v1/live/*' }, rewrite: { path: '/v2/live/*' }, weight: 100 }] }));
    await rawExchange(p.dataUrl, get('/v1/live/%2e%2e/%2e%2e/internal/admin'), { until: oneResponse });
    await rawExchange(p.dataUrl, get('/v1/live/a/%2E%2E/b'), { until: oneResponse });
    await waitFor(() => legacy.received.length + next.received.length >= 2);
    const all = [...legacy.received, ...next.received].map((r) => r.url);
    for (const url of all) expect(url).not.toMatch(/%2e|\.\./i);
    // The canonical path is /internal/admin: not the live route, so it goes to legacy as "other".
    expect(legacy.received.map((r) => r.url)).toContain('/internal/admin');
    expect(next.received.map((r) => r.url)).toContain('/v2/live/b');
  });

  it('encoded-separator-in-param: %2f, %5c and backslash inside :param are refused with 400 BAD_PATH and counted', async () => {
    const legacy = await backend();
    const next = await backend();
    const p = await proxy(baseConfig(legacy.url, next.url, { routes: [{ ...WIDGETS, weight: 100 }] }));
    for (const path of ['/v1/widgets/..%2f..%2finternal', '/v1/widgets/a%5cb', '/v1/widgets/a\\b', '/v1/widgets/%2e%2e%2fadmin']) {
      const res = await rawExchange(p.dataUrl, get(path), { until: oneResponse });
      expect(res.status, path).toBe(400);
      expect(res.text).toContain('application/problem+json');
      expect(res.text).toContain('"BAD_PATH"');
    }
    expect(legacy.received.length + next.received.length).toBe(0);
    expect(await scrape(p)).toMatch(/cutover_rejected_requests_total\{route="widgets",reason="bad_path"\} 4/);
  });
});

describe('row 4: route bypass', () => {
  it('encoded-and-double-slash-spellings: /v1/widget%73/1 and //v1//widgets/1 match the route and are mirrored', async () => {
    const legacy = await backend();
    const next = await backend();
    const p = await proxy(baseConfig(legacy.url, next.url, { defaults: { shadow: { baselinePercent: 0 } }, routes: [WIDGETS] }));
    for (const path of ['/v1/widget%73/1', '//v1//widgets/1', '/v1/./widgets/1']) {
      const res = await rawExchange(p.dataUrl, get(path), { until: oneResponse });
      expect(res.status, path).toBe(200);
    }
    await waitFor(() => next.received.length >= 3, 5_000, 'mirrors');
    expect(legacy.received.map((r) => r.url)).toEqual(['/v1/widgets/1', '/v1/widgets/1', '/v1/widgets/1']);
    expect(next.received.map((r) => r.url)).toEqual(['/v2/widgets/1', '/v2/widgets/1', '/v2/widgets/1']);
  });

  it('absolute-form: reduced to origin-form, routed, and the backend never sees the absolute URL', async () => {
    const legacy = await backend();
    const next = await backend();
    const p = await proxy(baseConfig(legacy.url, next.url, { routes: [WIDGETS] }));
    const res = await rawExchange(p.dataUrl, get('http://evil.example/v1/widgets/1'), { until: oneResponse });
    expect(res.status).toBe(200);
    await waitFor(() => next.received.length >= 1);
    expect(legacy.received[0].url).toBe('/v1/widgets/1');
    expect(legacy.received[0].headers['x-forwarded-host']).toBe('evil.example');
    expect(next.received[0].url).toBe('/v2/widgets/1');
  });

  it('two-host-headers and malformed-host: 400 problem+json, nothing forwarded', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    const two = await rawExchange(p.dataUrl, 'GET /a HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n');
    expect(two.status).toBe(400);
    expect(two.text).toContain('application/problem+json');
    const bad = await rawExchange(p.dataUrl, 'GET /a HTTP/1.1\r\nHost: user@a.example/x\r\nConnection: close\r\n\r\n');
    expect(bad.status).toBe(400);
    expect(bad.text).toContain('application/problem+json');
    expect(legacy.received).toHaveLength(0);
  });
});

describe('row 5: query-string credentials', () => {
  it('query-credential: stripped toward new, kept toward legacy, and absent from diff examples and the access log', async () => {
    const legacy = await backend((_req, res) => res.setHeader('content-type', 'application/json').end('{"a":1}'));
    const next = await backend((_req, res) => res.setHeader('content-type', 'application/json').end('{"a":2}'));
    const p = await proxy(
      baseConfig(legacy.url, next.url, {
        admin: { host: '127.0.0.1', port: 0, tokens: [{ name: 't', role: 'viewer', tokenEnv: 'CUTOVER_TEST_QCRED' }] },
        log: { level: 'info', access: true },
        credentials: { legacy: [{ query: 'api_key' }, { basic: true }] },
        defaults: { shadow: { baselinePercent: 0 } },
        routes: [WIDGETS],
      }),
    );
    // access_token is not a configured credential location, only named like one: masked in what is kept all the same.
    const res = await request(`${p.dataUrl}/v1/widgets/1?api_key=S3CR3T&page=2&access_token=T0KEN`, { headers: { authorization: 'Basic dXNlcjpTM0NSM1Q=' } });
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    await waitFor(() => next.received.length >= 1);
    expect(legacy.received[0].url).toBe('/v1/widgets/1?api_key=S3CR3T&page=2&access_token=T0KEN');
    expect(next.received[0].url).toBe('/v2/widgets/1?page=2&access_token=T0KEN');
    expect(next.received[0].headers.authorization).toBeUndefined();
    const diffs = await waitFor(async () => {
      const r = await request(`${p.adminUrl}/api/routes/widgets/diffs`, { headers: { authorization: 'Bearer q-token' } });
      const text = await r.body.text();
      return text.includes('/v1/widgets/1') ? text : null;
    });
    expect(diffs).not.toContain('S3CR3T');
    expect(diffs).not.toContain('T0KEN');
    expect(diffs).toContain('api_key=[redacted]');
    expect(p.logs.join('')).not.toContain('S3CR3T');
  });
});
process.env.CUTOVER_TEST_QCRED = 'q-token';

describe('row 6: client-IP headers', () => {
  it('spoofed-client-ip-headers: Forwarded, X-Real-IP, True-Client-IP, X-Forwarded-Port/Prefix, X-Original-URL, X-Rewrite-URL dropped from untrusted peers', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    const spoof = 'Forwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\nTrue-Client-IP: 1.2.3.4\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Prefix: /admin\r\nX-Original-URL: /admin/keys\r\nX-Rewrite-URL: /admin/keys\r\nX-Original-URI: /admin/keys\r\nX-Forwarded-Uri: /admin/keys\r\nX-Envoy-Original-Path: /admin/keys\r\nX-Forwarded-For: 1.2.3.4\r\n';
    await rawExchange(p.dataUrl, get('/a', spoof), { until: oneResponse });
    const got = legacy.received[0].headers;
    for (const h of ['forwarded', 'x-real-ip', 'true-client-ip', 'x-forwarded-port', 'x-forwarded-prefix', 'x-original-url', 'x-rewrite-url', 'x-original-uri', 'x-forwarded-uri', 'x-envoy-original-path']) expect(got[h], h).toBeUndefined();
    expect(got['x-forwarded-for']).toBe('127.0.0.1');
  });

  it('method-override: a GET that names DELETE or PUT in an override header is not mirrored (counted unsafe_method); one that names GET is', async () => {
    const legacy = await backend();
    const next = await backend();
    const p = await proxy(baseConfig(legacy.url, next.url, { routes: [WIDGETS] }));
    for (const header of ['X-HTTP-Method-Override: DELETE', 'x-http-method: delete', 'X-Method-Override: PUT']) {
      const res = await rawExchange(p.dataUrl, get('/v1/widgets/7', `${header}\r\n`), { until: oneResponse });
      expect(res.status, header).toBe(200);
    }
    // The control: a plain GET (and one overridden to a safe method) is mirrored.
    await rawExchange(p.dataUrl, get('/v1/widgets/7', 'X-HTTP-Method-Override: GET\r\n'), { until: oneResponse });
    const metrics = await scrape(p);
    expect(metrics).toMatch(/cutover_shadow_skipped_total\{route="widgets",reason="unsafe_method"\} 3/);
    await waitFor(() => next.received.length === 1, 5_000, 'the one safe mirror');
    expect(next.received.map((r) => r.headers['x-http-method-override'])).toEqual(['GET']);
  });

  it('method-override makes a request less safe only: a POST naming GET stays unmirrored, and a second override naming GET does not hide a DELETE', async () => {
    const legacy = await backend();
    const next = await backend();
    const p = await proxy(baseConfig(legacy.url, next.url, { defaults: { shadow: { baselinePercent: 100 } }, routes: [WIDGETS] }));
    const body = '{"qty":1}';
    const post = await rawExchange(p.dataUrl, `POST /v1/widgets/7 HTTP/1.1\r\nHost: shop.example\r\nX-HTTP-Method-Override: GET\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`, { until: oneResponse });
    expect(post.status).toBe(200);
    for (const headers of ['X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: GET\r\n', 'X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method-Override: GET\r\n', 'X-HTTP-Method-Override: GET, DELETE\r\n']) {
      const res = await rawExchange(p.dataUrl, get('/v1/widgets/7', headers), { until: oneResponse });
      expect(res.status, headers).toBe(200);
    }
    // Every one skipped as unsafe (counted synchronously when the request is planned), none sent on.
    expect(await scrape(p)).toMatch(/cutover_shadow_skipped_total\{route="widgets",reason="unsafe_method"\} 4/);
    expect(legacy.received.map((r) => r.method)).toEqual(['POST', 'GET', 'GET', 'GET']);
    expect(next.received).toHaveLength(0);
  });

  it('xff-leftmost-spoof: behind a trusted appending balancer the client is the rightmost untrusted entry', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url, { listen: { host: '127.0.0.1', port: 0, trustedProxies: ['127.0.0.1', '10.0.0.0/8'] }, log: { level: 'info', access: true } }));
    await rawExchange(p.dataUrl, get('/a', 'X-Forwarded-For: 6.6.6.6, 203.0.113.9, 10.1.1.1\r\n'), { until: oneResponse });
    await waitFor(() => p.logs.some((l) => l.includes('"client"')));
    const line = JSON.parse(p.logs.find((l) => l.includes('"client"'))!);
    expect(line.client).toBe('203.0.113.9');
  });
});

describe('row 7: small contract breaks', () => {
  it('options-asterisk: answered locally with Allow, never forwarded, never counted as a legacy error', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    const res = await rawExchange(p.dataUrl, 'OPTIONS * HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n');
    expect(res.status).toBe(200);
    expect(res.text.toLowerCase()).toMatch(/allow: get, head, post/);
    expect(legacy.received).toHaveLength(0);
    expect(await scrape(p)).not.toMatch(/cutover_requests_total\{route="other",backend="legacy",role="primary",outcome="5xx"\} [1-9]/);
  });

  it('framing-error: a malformed request gets a problem+json 400 and the connection closes', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    const res = await rawExchange(p.dataUrl, 'GET /a HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab');
    expect(res.status).toBe(400);
    expect(res.text).toContain('application/problem+json');
    expect(res.text).toContain('BAD_FRAMING');
    expect(res.closed).toBe(true);
  });

  it('undecodable-url-and-star-target: problem+json 400 BAD_PATH, nothing forwarded', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    for (const line of ['GET /v1/%zz HTTP/1.1', 'GET /v1/%E0%A4%A HTTP/1.1', 'GET * HTTP/1.1']) {
      const res = await rawExchange(p.dataUrl, `${line}\r\nHost: h\r\nConnection: close\r\n\r\n`);
      expect(res.status, line).toBe(400);
      expect(res.text, line).toContain('application/problem+json');
      expect(res.text, line).toContain('"BAD_PATH"');
    }
    expect(legacy.received).toHaveLength(0);
  });

  it('trace: refused 405 with Allow and never forwarded (its echo would show the credential the proxy adds toward new), unless a route names TRACE', async () => {
    const legacy = await backend();
    const next = await backend();
    const p = await proxy(
      baseConfig(legacy.url, next.url, {
        routes: [
          { name: 'orders', match: { path: '/orders/:id' }, weight: 100 },
          { name: 'debug', match: { methods: ['TRACE'], path: '/debug/echo' } },
        ],
      }),
    );
    // The third goes the upgrade path (raw socket): refused the same way, Allow included.
    for (const [path, extra] of [['/orders/1', ''], ['/elsewhere', ''], ['/orders/2', 'Upgrade: websocket\r\n']]) {
      const res = await rawExchange(p.dataUrl, `TRACE ${path} HTTP/1.1\r\nHost: shop.example\r\n${extra ? `${extra}Connection: Upgrade` : 'Connection: close'}\r\n\r\n`);
      expect(res.status, path).toBe(405);
      expect(res.text.toLowerCase(), path).toContain('allow: get, head, post');
      expect(res.text, path).toContain('"METHOD_NOT_ALLOWED"');
    }
    expect(next.received).toHaveLength(0);
    expect(legacy.received).toHaveLength(0);
    const metrics = await scrape(p);
    expect(metrics).toMatch(/cutover_rejected_requests_total\{route="orders",reason="bad_method"\} 2/);
    expect(metrics).toMatch(/cutover_rejected_requests_total\{route="other",reason="bad_method"\} 1/);
    const allowed = await rawExchange(p.dataUrl, 'TRACE /debug/echo HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n');
    expect(allowed.status).toBe(200);
    expect(legacy.received.map((r) => `${r.method} ${r.url}`)).toEqual(['TRACE /debug/echo']);
  });

  it('latin1-path: a target percent-encoded in Latin-1 is routed by the route table and forwarded as sent, not refused', async () => {
    const legacy = await backend();
    const next = await backend();
    const p = await proxy(baseConfig(legacy.url, next.url, { routes: [{ name: 'search', match: { path: '/search/:term' }, rewrite: { path: '/v2/search/:term' }, weight: 100 }] }));
    const res = await rawExchange(p.dataUrl, get('/search/caf%E9?q=na%EFve'));
    expect(res.status).toBe(200);
    // Live on new under the route's rewrite; mirrored to legacy on the path as sent.
    await waitFor(() => legacy.received.length === 1, 5_000, 'the mirror');
    expect(next.received[0].url).toBe('/v2/search/caf%E9?q=na%EFve');
    expect(legacy.received[0].url).toBe('/search/caf%E9?q=na%EFve');
    const other = await rawExchange(p.dataUrl, get('/caf%E9/x'));
    expect(other.status).toBe(200);
    await waitFor(() => legacy.received.length === 2, 5_000, 'the unrouted request');
    expect(legacy.received[1].url).toBe('/caf%E9/x');
  });

  it('draining-503: a request arriving on an open connection during the drain gets problem+json 503', async () => {
    let release: (() => void) | null = null;
    const legacy = await backend((_req, res) => {
      release = () => res.end('first');
    });
    const p = await startProxy(baseConfig(legacy.url, legacy.url));
    const socket = connect({ host: '127.0.0.1', port: Number(new URL(p.dataUrl).port) });
    let text = '';
    socket.on('data', (d) => (text += d));
    socket.write('GET /first HTTP/1.1\r\nHost: h\r\n\r\n');
    await waitFor(() => release !== null, 5_000, 'the first request to reach the backend');
    let requests = 1;
    p.proxy.app.server.on('request', () => requests++);
    const closed = p.close(5_000);
    socket.write('GET /second HTTP/1.1\r\nHost: h\r\n\r\n');
    // The second request must be read while the first is still open, i.e. during the drain.
    await waitFor(() => requests === 2, 5_000, 'the second request to be read');
    release!();
    await waitFor(() => text.includes('DRAINING'), 5_000, 'the 503');
    socket.destroy();
    await closed;
    expect(text).toMatch(/HTTP\/1\.1 200[\s\S]*first[\s\S]*HTTP\/1\.1 503[\s\S]*application\/problem\+json/);
    expect(legacy.received.map((r) => r.url)).toEqual(['/first']);
  });

  it('admin-500-logged: an admin failure answers problem+json and logs its cause', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url, { admin: { host: '127.0.0.1', port: 0, tokens: [{ name: 't', role: 'viewer', tokenEnv: 'CUTOVER_TEST_QCRED' }] } }), {
      adminRoutes: [
        (app) =>
          app.get('/api/boom', async () => {
            throw new Error('the disk caught fire');
          }),
      ],
    });
    const res = await request(`${p.adminUrl}/api/boom`, { headers: { authorization: 'Bearer q-token' } });
    expect(res.statusCode).toBe(500);
    expect(res.headers['content-type']).toContain('application/problem+json');
    await res.body.dump();
    await waitFor(() => p.logs.some((l) => l.includes('the disk caught fire')));
    void sendProblem;
  });
});

describe('held: request smuggling', () => {
  const cases: [string, string][] = [
    ['cl-plus-te', 'POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['duplicate-content-length', 'POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['te-obfuscated-xchunked', 'POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['te-chunked-then-identity', 'POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['te-space-before-colon', 'POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['bare-lf', 'GET /a HTTP/1.1\nHost: h\nX: y\n\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['obs-fold', 'GET /a HTTP/1.1\r\nHost: h\r\nX-Long: a\r\n b\r\nContent-Length: 0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n'],
    ['bad-chunk-size', 'POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nx\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n'],
  ];
  for (const [name, bytes] of cases) {
    it(`${name}: refused (or read as one request) and the smuggled request never reaches a backend`, async () => {
      const legacy = await backend();
      const p = await proxy(baseConfig(legacy.url, legacy.url));
      const res = await rawExchange(p.dataUrl, bytes, { timeoutMs: 1_500 });
      expect(res.status).toBeGreaterThan(0);
      expect(legacy.received.map((r) => r.url)).not.toContain('/smuggled');
      if (res.status === 400) expect(res.text).toContain('application/problem+json');
    });
  }

  it('pipelining: two pipelined requests are each routed, shaped and answered in order', async () => {
    const legacy = await backend((req, res) => res.end(`answer ${req.url}`));
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    const res = await rawExchange(p.dataUrl, 'GET /one HTTP/1.1\r\nHost: h\r\nX-Cutover-Shadow: 1\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\nX-Cutover-Shadow: 1\r\nConnection: close\r\n\r\n');
    expect(res.statuses).toEqual([200, 200]);
    expect(res.text.indexOf('answer /one')).toBeLessThan(res.text.indexOf('answer /two'));
    expect(legacy.received.map((r) => [r.url, r.headers['x-cutover-shadow']])).toEqual([['/one', undefined], ['/two', undefined]]);
  });

  it('response-desync: extra bytes a backend sends after its response never reach the client as a second response', async () => {
    const server = http.createServer();
    server.on('connection', (socket) => {
      socket.once('data', () => socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 302 Found\r\nLocation: http://evil.example\r\nContent-Length: 0\r\n\r\n'));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    defer(() => new Promise((r) => server.close(r)));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const p = await proxy(baseConfig(url, url));
    const res = await rawExchange(p.dataUrl, 'GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n', { timeoutMs: 2_000 });
    expect(res.text).not.toContain('evil.example');
    expect(res.statuses[0]).toBe(200);
  });

  it('hop-by-hop-both-ways: Connection-named and hop-by-hop fields are dropped toward the backend and the client', async () => {
    const legacy = await backend((_req, res) => {
      res.setHeader('connection', 'keep-alive, x-secret-hop');
      res.setHeader('x-secret-hop', '1');
      res.end('ok');
    });
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    // TE as a smuggler would send it (the proxy says `TE: trailers` itself only for a client taking trailers).
    const res = await rawExchange(p.dataUrl, get('/a', 'Connection: x-client-hop\r\nX-Client-Hop: 1\r\nTE: chunked\r\nProxy-Connection: keep-alive\r\n'), { until: oneResponse });
    expect(res.text.toLowerCase()).not.toContain('x-secret-hop');
    for (const h of ['x-client-hop', 'te', 'proxy-connection']) expect(legacy.received[0].headers[h], h).toBeUndefined();
  });

  it('spoofed-x-forwarded: an untrusted peer cannot set X-Forwarded-For/Proto/Host', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    await rawExchange(p.dataUrl, get('/a', 'X-Forwarded-For: 1.1.1.1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n'), { until: oneResponse });
    const got = legacy.received[0].headers;
    expect(got['x-forwarded-for']).toBe('127.0.0.1');
    expect(got['x-forwarded-proto']).toBe('http');
    expect(got['x-forwarded-host']).toBe('shop.example');
  });

  it('client-set-x-cutover-shadow: a live request can never be marked as a shadow', async () => {
    const legacy = await backend();
    const next = await backend();
    const p = await proxy(baseConfig(legacy.url, next.url, { routes: [WIDGETS] }));
    await rawExchange(p.dataUrl, get('/v1/widgets/1', 'X-Cutover-Shadow: 1\r\nIdempotency-Key: k1\r\n'), { until: oneResponse });
    await waitFor(() => next.received.length >= 1);
    expect(legacy.received[0].headers['x-cutover-shadow']).toBeUndefined();
    expect(legacy.received[0].headers['idempotency-key']).toBe('k1');
    expect(next.received[0].headers['x-cutover-shadow']).toBe('1');
    expect(next.received[0].headers['idempotency-key']).toBe('cutover-shadow-k1');
  });

  it('header-credential-toward-new: bearer, x-api-key and cookie credentials never reach new, live or mirrored', async () => {
    const legacy = await backend();
    const next = await backend();
    const p = await proxy(baseConfig(legacy.url, next.url, { credentials: { legacy: [{ bearer: true }, { header: 'x-api-key' }, { cookie: 'sid' }] }, routes: [WIDGETS] }));
    await rawExchange(p.dataUrl, get('/v1/widgets/1', 'Authorization: Bearer S3CR3T\r\nX-Api-Key: S3CR3T\r\nCookie: sid=S3CR3T\r\n'), { until: oneResponse });
    await waitFor(() => next.received.length >= 1);
    expect(JSON.stringify(next.received[0].rawHeaders)).not.toContain('S3CR3T');
    expect(legacy.received[0].headers['x-api-key']).toBe('S3CR3T');
  });

  it('metric-cardinality-from-paths: 300 distinct unmatched paths add no series', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url, { routes: [WIDGETS] }));
    const before = (await scrape(p)).split('\n').length;
    for (let i = 0; i < 300; i++) await rawExchange(p.dataUrl, get(`/random/${i}/${'x'.repeat(i % 7)}`), { until: oneResponse });
    const after = await scrape(p);
    expect(after.split('\n').length).toBe(before);
    expect(after).not.toContain('/random/');
  });

  it('concurrent-3000: 3,000 requests at once on 3,000 connections are each answered with their own backend answer', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url, { backends: { legacy: { url: legacy.url, connections: 128, maxPending: 10_000 }, new: { url: legacy.url } }, routes: [WIDGETS] }));
    const { Agent } = await import('undici');
    const clients = new Agent({ connections: 3_000, pipelining: 0 });
    defer(() => clients.close());
    const answers = await Promise.all(
      Array.from({ length: 3_000 }, async (_, i) => {
        const res = await request(`${p.dataUrl}/v1/widgets/${i}`, { dispatcher: clients, headersTimeout: 60_000, bodyTimeout: 60_000 });
        return { status: res.statusCode, url: ((await res.body.json()) as { url: string }).url, i };
      }),
    );
    expect(answers.filter((a) => a.status !== 200 || a.url !== `/v1/widgets/${a.i}`)).toEqual([]);
    expect(legacy.received.filter((r) => r.headers['x-cutover-shadow'] === undefined)).toHaveLength(3_000);
  }, 60_000);

  it('slow-headers: a client trickling its headers does not hold up other clients', async () => {
    const legacy = await backend();
    const p = await proxy(baseConfig(legacy.url, legacy.url));
    const slow = rawExchange(p.dataUrl, ['GET /slow HTTP/1.1\r\n', 'X-A: 1\r\n'], { timeoutMs: 1_000 });
    const res = await request(`${p.dataUrl}/fast`);
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    const s = await slow;
    expect(s.status).toBe(0);
    expect(legacy.received.map((r) => r.url)).toEqual(['/fast']);
  });
});
