// A lean HTTP/1.1 load generator, closed-loop or at a fixed rate, for the big-body rows (~940 KB answers).
//
// autocannon spends ~1.6 ms of CPU per 1 MB answer (measured: 7.6 s of CPU for 4,700 answers in
// 10 s), more than the proxy it measures, and on a two-core machine that CPU comes out of the
// proxy's core or the backends'. This client reads each answer's head, then only counts body bytes
// (no parse, no copy) until Content-Length, and sends the next request on the same connection. It
// returns the shape of runLoad (load.mjs), so rows and ratios read the same. Bounded by duration
// and by a per-request timeout; answers without Content-Length (chunked) count as errors.
//
// Every connection reads into one buffer allocated once (net's `onread`), READ_BYTES per read. With
// a fresh 64 KiB buffer per read, as a plain 'data' listener gets, this client spent 1.0–1.8 ms of
// CPU per answer read through the proxy (0.64–0.83 of a core at 465–656 req/s, the `passthrough-1mb`
// and `shadow-1mb` rows on 2026-12-02): the rows measured the generator as much as the proxy. With
// the one buffer, ~0.35 ms (0.28–0.33 of a core at 848–882 req/s, the proxy now at 0.93–0.98).
// test/bench-lean-load.test.ts holds its counting to a server that splits every head.
import net from 'node:net';
import { latencyBuffer, latencySummary, round3 } from './load.mjs';

const CRLFCRLF = Buffer.from('\r\n\r\n');

/** Bytes asked of the kernel per read; the buffer is shared, since each read is handled before the next. */
export const READ_BYTES = 256 * 1024;

/** An answer head longer than this is not one a proxy under test sends: counted as an error, not kept growing. */
export const MAX_HEAD_BYTES = 64 * 1024;

/**
 * With `rate`, the load is open: request i is due at start + i / rate seconds whether or not earlier
 * answers came back, a free connection sends it at its due time, and its latency counts from that
 * time (a request that waited for a connection waited like a client would). Without it, each
 * connection sends its next request as soon as its answer is in (closed loop: as fast as the proxy goes).
 *
 * @param {{ url: string, connections: number, durationS: number, timeoutS?: number, paths: string[], rate?: number }} opts
 */
export async function runLeanLoad({ url, connections, durationS, timeoutS = 10, paths, rate }) {
  const { hostname, port } = new URL(url);
  const requests = paths.map((p) => Buffer.from(`GET ${p} HTTP/1.1\r\nhost: ${hostname}:${port}\r\n\r\n`));
  const latencies = latencyBuffer(durationS);
  const stats = { count: 0, dropped: 0, sent: 0, bytes: 0, non2xx: 0, errors: 0, timeouts: 0, statusCodes: {} };
  const readBuffer = Buffer.allocUnsafe(READ_BYTES);
  const start = performance.now();
  const endAt = start + durationS * 1000;
  let next = 0;

  const client = () =>
    new Promise((resolve) => {
      let head = null; // bytes of an incomplete head
      let remaining = -1; // body bytes still to come; -1 while reading the head
      let sentAt = 0;
      let timer = null;
      // The head's bytes so far are kept out of readBuffer (the next read overwrites it), up to
      // MAX_HEAD_BYTES; body bytes are only counted. The callback returns nothing: `false` would
      // pause the socket.
      const onData = (nread, buffer) => {
        stats.bytes += nread;
        let buf = buffer.subarray(0, nread);
        if (remaining < 0) {
          buf = head === null ? buf : Buffer.concat([head, buf]);
          const end = buf.indexOf(CRLFCRLF);
          if (end === -1) {
            if (buf.length > MAX_HEAD_BYTES) {
              stats.errors++;
              finish();
              return;
            }
            // A first piece is a view of readBuffer and must be copied; a concatenation is a copy already.
            head = head === null ? Buffer.from(buf) : buf;
            return;
          }
          const text = buf.toString('latin1', 0, end);
          const status = Number(text.slice(9, 12));
          stats.statusCodes[status] = (stats.statusCodes[status] ?? 0) + 1;
          if (status < 200 || status > 299) stats.non2xx++;
          const m = /\r\ncontent-length:\s*(\d+)/i.exec(text);
          if (m === null) {
            stats.errors++;
            finish();
            return;
          }
          remaining = Number(m[1]);
          buf = buf.subarray(end + 4);
        }
        remaining -= buf.length;
        if (remaining === 0) done();
        else if (remaining < 0) {
          // More than the answer: this client never pipelines, so the server sent garbage.
          stats.errors++;
          finish();
        }
      };
      const socket = net.connect({ host: hostname, port: Number(port), noDelay: true, onread: { buffer: readBuffer, callback: onData } });
      const finish = () => {
        clearTimeout(timer);
        socket.destroy();
        resolve();
      };
      // The request this connection sends next, and when it is due (open load only).
      let claimed = -1;
      const send = () => {
        const now = performance.now();
        if (now >= endAt) return finish();
        if (rate) {
          if (claimed < 0) claimed = next++;
          const due = start + (claimed * 1000) / rate;
          if (due >= endAt) return finish();
          if (due > now + 0.5) {
            clearTimeout(timer);
            timer = setTimeout(send, due - now);
            return;
          }
          sentAt = due;
        } else {
          claimed = next++;
          sentAt = now;
        }
        stats.sent++;
        remaining = -1;
        head = null;
        clearTimeout(timer);
        timer = setTimeout(() => {
          stats.timeouts++;
          finish();
        }, timeoutS * 1000);
        socket.write(requests[claimed % requests.length]);
        claimed = -1;
      };
      const done = () => {
        const ms = performance.now() - sentAt;
        if (stats.count < latencies.length) latencies[stats.count++] = ms;
        else stats.dropped++;
        send();
      };
      socket.on('connect', send);
      socket.on('error', () => {
        stats.errors++;
        finish();
      });
      socket.on('close', finish);
    });

  const guard = new Promise((resolve) => setTimeout(resolve, (durationS + timeoutS + 15) * 1000).unref());
  await Promise.race([Promise.all(Array.from({ length: connections }, client)), guard]);
  const elapsedS = (performance.now() - start) / 1000;
  const count = stats.count;
  return {
    durationS: round3(elapsedS),
    requests: count,
    sent: stats.sent,
    rps: elapsedS > 0 ? Math.round(count / elapsedS) : 0,
    bytesPerSec: elapsedS > 0 ? Math.round(stats.bytes / elapsedS) : 0,
    latencyMs: latencySummary(latencies, count, stats.dropped),
    generator: 'lean',
    // Open load: requests due in the window that no connection got to send (a backlog at the end).
    ...(rate ? { offeredRps: rate, unsent: Math.max(0, Math.floor(rate * durationS) - stats.sent) } : {}),
    non2xx: stats.non2xx,
    statusCodes: stats.statusCodes,
    errors: stats.errors,
    timeouts: stats.timeouts,
    resets: 0,
  };
}
