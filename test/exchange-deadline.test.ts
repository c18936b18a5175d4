/**
 * The mirror's hard budget (`shadow.timeout`) counts from dispatch: a mirror still queued for a pooled
 * connection ends at its deadline, without ever being sent, and so frees its mirror slot.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Pool } from 'undici';
import type http from 'node:http';
import { CapturingExchange } from '../src/forward/exchange.js';
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
});
