/**
 * One hanging backend path must not stall everything behind it (issue 9, row 2): the pool's
 * queue is bounded by backends.X.maxPending (fast 503 UPSTREAM_SATURATED past it), and the
 * backend timeout counts from dispatch, so a queued request ends at its budget and is never sent.
 */
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { startBackend, waitFor, type TestBackend } from '../helpers/backend.js';
import { baseConfig, startProxy, type InProcessProxy } from '../helpers/proxy.js';

let backend: TestBackend | null = null;
let proxy: InProcessProxy | null = null;

afterEach(async () => {
  await proxy?.close(100);
  await backend?.close();
  proxy = null;
  backend = null;
});

interface Answer {
  status: number;
  body: string;
  ms: number;
}

const agent = new http.Agent({ keepAlive: false, maxSockets: 1000 });

function get(url: string): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, ms: performance.now() - started }));
      })
      .on('error', reject);
  });
}

describe('a hanging backend path', () => {
  it('answers 503 UPSTREAM_SATURATED at once past maxPending, and a queued request times out at its budget, queue time included', async () => {
    // /hang never answers; /ok answers at once. Both routes share the legacy pool.
    backend = await startBackend((req, res) => {
      if (req.url?.startsWith('/hang')) return;
      res.end('ok');
    });
    const CONNECTIONS = 20;
    proxy = await startProxy(
      baseConfig(backend.url, backend.url, {
        backends: { legacy: { url: backend.url, connections: CONNECTIONS, maxPending: 50, timeout: '2s' }, new: { url: backend.url } },
        routes: [
          { name: 'hang', match: { path: '/hang/:id' }, shadow: { percent: 0 } },
          { name: 'healthy', match: { path: '/ok' }, shadow: { percent: 0 } },
        ],
      }),
    );
    // First enough to fill every connection and the queue, then 230 more once the backend holds 20.
    const filling = Array.from({ length: CONNECTIONS + 50 }, (_, i) => get(`${proxy!.dataUrl}/hang/${i}`));
    await waitFor(() => backend!.received.length >= CONNECTIONS, 10_000, 'the backend to hold every connection');
    const extra = Array.from({ length: 230 }, (_, i) => get(`${proxy!.dataUrl}/hang/x${i}`));
    const healthy = await get(`${proxy.dataUrl}/ok`);
    const filled = await Promise.all(filling);
    const answers = [...filled, ...(await Promise.all(extra))];

    const saturated = answers.filter((a) => a.status === 503);
    const timedOut = answers.filter((a) => a.status === 504);
    expect(saturated.length).toBeGreaterThanOrEqual(200);
    expect(saturated[0].body).toContain('"code":"UPSTREAM_SATURATED"');
    expect(timedOut.length + saturated.length).toBe(300);
    // The healthy route shares the saturated pool: it is refused at once too, not left to wait.
    expect(healthy.status).toBe(503);
    // A queued request ends at its budget (2 s), not at budget + queue wait (4 s and more when the
    // timeout counts from the socket): the 50 queued ones all end before the running ones could free
    // a connection and run out a second budget. The margin is wide on purpose (a loaded machine).
    const slowest = Math.max(...filled.filter((a) => a.status === 504).map((a) => a.ms));
    expect(slowest).toBeLessThan(3_500);
    // Whether a queued request is written before its own deadline fires races with the running ones'
    // (same budget, dispatched a few ms apart; under CI load all 50 were sent once): how many reach the
    // backend is not asserted here. That a request still queued at its budget is never sent is asserted
    // deterministically in test/exchange-deadline.test.ts (live and mirror).
    expect(backend.received.filter((r) => r.url.startsWith('/hang')).length).toBeLessThanOrEqual(CONNECTIONS + 50);

    const text = await (await fetch(`${proxy.adminUrl}/metrics`)).text();
    expect(text).toMatch(new RegExp(`cutover_rejected_requests_total\\{route="hang",reason="saturated"\\} ${saturated.length}\\n`));
    expect(text).toMatch(/cutover_rejected_requests_total\{route="healthy",reason="saturated"\} 1\n/);

    // Once the queue drains, the healthy route is answered again.
    const after = await get(`${proxy.dataUrl}/ok`);
    expect(after.status).toBe(200);
    const queued = timedOut.map((a) => a.ms).sort((a, b) => a - b);
    const sat = saturated.map((a) => a.ms).sort((a, b) => a - b);
    console.log(
      `300 hanging, connections 20, maxPending 50, timeout 2s: ${saturated.length} × 503 (median ${sat[sat.length >> 1].toFixed(0)} ms), ${timedOut.length} × 504 (slowest ${queued.at(-1)!.toFixed(0)} ms); healthy route ${healthy.status} in ${healthy.ms.toFixed(0)} ms, then ${after.status} in ${after.ms.toFixed(0)} ms`,
    );
  }, 30_000);
});
