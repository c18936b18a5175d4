/**
 * The bench's lean load generator (bench/lib/lean-load.mjs), which reads the 1 MB rows' answers:
 * against a real loopback server that answers in awkward pieces, it counts what was answered, no
 * more and no less. Its connections share one read buffer, so an answer head split across reads
 * must be copied out before another connection's read overwrites it: the server here splits every
 * head and lets other connections' bodies arrive in between.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ES module of the bench, without types
import { MAX_HEAD_BYTES, runLeanLoad, READ_BYTES } from '../bench/lib/lean-load.mjs';

interface LoadResult {
  requests: number;
  sent: number;
  bytesPerSec: number;
  durationS: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  latencyMs: { samples: number };
}

type Answer = (socket: net.Socket, n: number) => void;

const servers: net.Server[] = [];
const sockets = new Set<net.Socket>();
afterEach(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A raw HTTP/1.1 server: `answer` writes each request's answer; counts what it answered. */
async function rawServer(answer: Answer): Promise<{ url: string; answered: () => number }> {
  let answered = 0;
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let pending = '';
    socket.on('data', (chunk) => {
      pending += chunk.toString('latin1');
      let end;
      while ((end = pending.indexOf('\r\n\r\n')) !== -1) {
        pending = pending.slice(end + 4);
        answer(socket, answered++);
      }
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return { url: `http://127.0.0.1:${port}`, answered: () => answered };
}

const BODY = Buffer.alloc(1_000_000, 0x61);

/** Head in two writes 5 ms apart, cut inside its blank line; then a 1 MB body in uneven writes. */
function splitAnswer(status: number): Answer {
  return (socket) => {
    const head = Buffer.from(`HTTP/1.1 ${status} X\r\ncontent-type: text/plain\r\ncontent-length: ${BODY.length}\r\n\r\n`, 'latin1');
    const cut = head.length - 3;
    socket.write(head.subarray(0, cut));
    setTimeout(() => {
      if (socket.destroyed) return;
      socket.write(head.subarray(cut));
      for (let at = 0; at < BODY.length; at += 300_007) socket.write(BODY.subarray(at, Math.min(BODY.length, at + 300_007)));
    }, 5);
  };
}

async function load(url: string, durationS = 0.6): Promise<LoadResult> {
  return (await runLeanLoad({ url, connections: 6, durationS, timeoutS: 2, paths: ['/a', '/b'] })) as LoadResult;
}

describe('bench lean load generator', () => {
  it('reads 1 MB answers whose heads are split across reads while other connections read, and counts each once', async () => {
    expect(READ_BYTES).toBeLessThan(BODY.length); // a body takes several reads of the shared buffer
    const server = await rawServer(splitAnswer(200));
    const r = await load(server.url);
    expect(r.errors).toBe(0);
    expect(r.timeouts).toBe(0);
    expect(r.requests).toBeGreaterThan(12);
    expect(r.statusCodes).toEqual({ 200: r.requests });
    expect(r.latencyMs.samples).toBe(r.requests);
    // Every answer counted was answered; at most one per connection was still coming at the end.
    expect(server.answered()).toBeGreaterThanOrEqual(r.requests);
    expect(server.answered()).toBeLessThanOrEqual(r.requests + 6);
    // Bytes come back as a rate over a duration rounded to the millisecond: within 1 %.
    expect(r.bytesPerSec * r.durationS).toBeGreaterThanOrEqual(0.99 * r.requests * BODY.length);
  });

  it('counts a non-2xx answer by its status, and an answer without Content-Length or with bytes past it as an error', async () => {
    const failing = await rawServer(splitAnswer(503));
    const r = await load(failing.url, 0.3);
    expect(r.requests).toBeGreaterThan(0);
    expect(r.non2xx).toBe(r.requests);
    expect(r.statusCodes).toEqual({ 503: r.requests });

    const chunked = await rawServer((socket) => socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n'));
    const c = await load(chunked.url, 0.3);
    expect(c.requests).toBe(0);
    expect(c.errors).toBe(6); // each connection stops at its first such answer

    const extra = await rawServer((socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nabc'));
    const e = await load(extra.url, 0.3);
    expect(e.requests).toBe(0);
    expect(e.errors).toBe(6);
  });

  it('gives up on a head that never ends at MAX_HEAD_BYTES, at once, instead of keeping it until the timeout', async () => {
    // Header lines without the blank line that ends a head, four times the bound, then silence.
    const line = `x-pad: ${'p'.repeat(1000)}\r\n`;
    const endless = await rawServer((socket) => socket.write(`HTTP/1.1 200 OK\r\n${line.repeat(Math.ceil((4 * MAX_HEAD_BYTES) / line.length))}`));
    const r = await load(endless.url, 0.3);
    expect(r.requests).toBe(0);
    expect(r.errors).toBe(6);
    expect(r.timeouts).toBe(0);
  });
});
