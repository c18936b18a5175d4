import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startBackend, type Handler, type TestBackend } from './helpers/backend.js';
import { baseConfig, startProxy, type InProcessProxy } from './helpers/proxy.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function setup(handler: Handler): Promise<{ b: TestBackend; p: InProcessProxy }> {
  const b = await startBackend(handler);
  cleanups.push(() => b.close());
  const p = await startProxy(baseConfig(b.url, b.url, { defaults: { shadow: { percent: 0 } } }));
  cleanups.push(() => p.close(100));
  return { b, p };
}

function call(url: string, init: { method?: string; headers?: http.OutgoingHttpHeaders; chunks?: string[] } = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer; trailers: NodeJS.Dict<string> }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: init.method ?? 'GET', headers: init.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), trailers: res.trailers }));
    });
    req.on('error', reject);
    for (const c of init.chunks ?? []) req.write(c);
    req.end();
  });
}

describe('HTTP edge cases through the proxy', () => {
  it('answers HEAD with the headers and no body, keeping content-length', async () => {
    const { p } = await setup((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '11' });
      res.end();
    });
    const res = await call(`${p.dataUrl}/h`, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers['content-length']).toBe('11');
    expect(res.body.length).toBe(0);
  });

  it('relays 204 and 304 without a body, and conditional headers both ways', async () => {
    const { b, p } = await setup((req, res) => {
      if (req.url === '/etag') {
        res.writeHead(304, { etag: '"v1"' });
        res.end();
      } else {
        res.writeHead(204);
        res.end();
      }
    });
    const notModified = await call(`${p.dataUrl}/etag`, { headers: { 'if-none-match': '"v1"' } });
    expect(notModified.status).toBe(304);
    expect(notModified.headers.etag).toBe('"v1"');
    expect(b.received[0].headers['if-none-match']).toBe('"v1"');
    const noContent = await call(`${p.dataUrl}/empty`, { method: 'DELETE' });
    expect(noContent.status).toBe(204);
    expect(noContent.body.length).toBe(0);
  });

  it('accepts a chunked request body and forwards it whole, with Expect: 100-continue answered by the proxy', async () => {
    const { b, p } = await setup((_req, res, body) => {
      res.end(`got ${body.length}`);
    });
    const res = await call(`${p.dataUrl}/upload`, {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked', expect: '100-continue' },
      chunks: ['abc', 'defg', 'h'],
    });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('got 8');
    expect(b.received[0].body.toString()).toBe('abcdefgh');
    expect(b.received[0].headers.expect).toBeUndefined();
    expect(b.received[0].headers['content-length']).toBe('8');
  });

  it('streams a 20 MB answer intact', async () => {
    const chunk = Buffer.alloc(64 * 1024, 7);
    const { p } = await setup((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      let left = 320;
      const pump = (): void => {
        while (left > 0) {
          left--;
          if (!res.write(chunk)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      pump();
    });
    const res = await call(`${p.dataUrl}/big`);
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(320 * 64 * 1024);
    expect(res.body.every((x) => x === 7)).toBe(true);
  });

  it('passes the trailer fields of a chunked answer on (a checksum after the body), asks for them only for a client that takes them, and never the framing ones', async () => {
    const { b, p } = await setup((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', trailer: 'x-checksum, cache-control', connection: 'keep-alive, x-hop' });
      res.write('{"rows":[1,2,3]}');
      // x-hop is named in Connection: this hop's alone, in the trailer section as in the header.
      res.addTrailers({ 'x-checksum': 'sha256=abc', 'cache-control': 'no-store', 'x-hop': 'secret', 'x-te-seen': String(req.headers.te) });
      res.end();
    });
    const taking = await call(`${p.dataUrl}/export`, { headers: { te: 'trailers', connection: 'TE' } });
    expect(taking.status).toBe(200);
    expect(taking.body.toString()).toBe('{"rows":[1,2,3]}');
    expect(taking.headers.trailer).toBe('x-checksum, cache-control');
    expect(taking.trailers).toEqual({ 'x-checksum': 'sha256=abc', 'x-te-seen': 'trailers' });
    expect(b.received[0].headers.te).toBe('trailers');
    // A client that did not say it takes trailers: the backend is not told it may send them.
    await call(`${p.dataUrl}/export`);
    expect(b.received[1].headers.te).toBeUndefined();
  });

  it('answers a HEAD, a 204, an answer with a length and an HTTP/1.0 client whole when the backend names trailers it cannot send there', async () => {
    // Node's own server will not send these heads: the backend writes them by hand, one per connection.
    const heads: Record<string, string> = {
      'HEAD /x': 'HTTP/1.1 200 OK\r\nTrailer: x-checksum\r\nContent-Length: 2\r\n\r\n',
      'GET /none': 'HTTP/1.1 204 No Content\r\nTrailer: x-checksum\r\n\r\n',
      'GET /length': 'HTTP/1.1 200 OK\r\nTrailer: x-checksum\r\nContent-Length: 2\r\n\r\nok',
      'GET /old': 'HTTP/1.1 200 OK\r\nTrailer: x-checksum\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nx-checksum: abc\r\n\r\n',
    };
    const raw = net.createServer((socket) => {
      socket.once('data', (c: Buffer) => {
        const line = c.toString().split(' HTTP/')[0];
        socket.end(heads[line].replace('\r\n', '\r\nConnection: close\r\n'));
      });
    });
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => raw.close(resolve)));
    const url = `http://127.0.0.1:${(raw.address() as net.AddressInfo).port}`;
    const p = await startProxy(baseConfig(url, url, { defaults: { shadow: { percent: 0 } } }));
    cleanups.push(() => p.close(100));
    const head = await call(`${p.dataUrl}/x`, { method: 'HEAD' });
    const none = await call(`${p.dataUrl}/none`);
    const length = await call(`${p.dataUrl}/length`);
    expect([head.status, none.status, length.status]).toEqual([200, 204, 200]);
    expect(length.body.toString()).toBe('ok');
    expect([head.headers.trailer, none.headers.trailer, length.headers.trailer]).toEqual([undefined, undefined, undefined]);
    // Clients below HTTP/1.1 as Node's parser takes them (1.0, and 2.0 or 0.9 written on an HTTP/1 line), none of which Node chunks for.
    for (const version of ['1.0', '2.0', '0.9']) {
      const old = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(Number(new URL(p.dataUrl).port), '127.0.0.1', () => socket.write(`GET /old HTTP/${version}\r\nHost: x\r\n\r\n`));
        let text = '';
        socket.on('data', (c: Buffer) => (text += c.toString()));
        socket.on('end', () => resolve(text));
        socket.on('error', reject);
      });
      expect(old, version).toMatch(/^HTTP\/1\.1 200 /);
      expect(old, version).not.toMatch(/^trailer:/im);
      expect(old.endsWith('ok'), version).toBe(true);
    }
  });

  it('keeps several Set-Cookie headers apart', async () => {
    const { p } = await setup((_req, res) => {
      res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']);
      res.end('ok');
    });
    const res = await call(`${p.dataUrl}/c`);
    expect(res.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; Path=/']);
  });
});
