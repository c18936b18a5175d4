/**
 * The mirror never costs the client: faulty mirror backends of every kind, comparison workers, the
 * bounded comparison queue and load shedding. Behaviour only (answers, counters, memory); timing
 * targets live in bench/.
 */
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { ComparisonQueue } from '../src/analysis/queue.js';
import { LoadShedder } from '../src/shadow/load.js';
import type { BreakerView } from '../src/shadow/breaker.js';
import type { CapturedAnswerPair } from '../src/shadow/pair.js';
import { deadPort, startBackend, waitFor, type Handler } from './helpers/backend.js';
import { baseConfig, startProxy, type InProcessProxy } from './helpers/proxy.js';
import { sample, scrape, total } from './helpers/metrics.js';

process.env.CUTOVER_ISOLATION_TOKEN = 't';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const expected = { id: 7, name: 'widget', price: 12.5 };

function json(res: http.ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

async function backend(handler: Handler): Promise<string> {
  const b = await startBackend(handler);
  cleanups.push(() => b.close());
  return b.url;
}

/** A TCP server that is not HTTP at all: it answers every connection with bytes and hangs up. */
async function garbageServer(): Promise<string> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.end(Buffer.from('\u0000\u00ffSSH-2.0-not-http\r\n\r\n\u0001\u0002garbage'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function proxy(legacy: string, next: string, extra: Record<string, unknown> = {}): Promise<InProcessProxy> {
  const p = await startProxy(
    baseConfig(legacy, next, {
      admin: { host: '127.0.0.1', port: 0, tokenEnv: 'CUTOVER_ISOLATION_TOKEN' },
      defaults: { shadow: { baselinePercent: 0 }, compare: { maxBodyBytes: '64kb' } },
      routes: [{ name: 'w', match: { path: '/w' } }],
      ...extra,
    }),
  );
  cleanups.push(() => p.close(100));
  return p;
}

function skipped(text: string, reason: string): number {
  return sample(text, `cutover_shadow_skipped_total{route="w",reason="${reason}"}`);
}

/** Overload skips by the bound they hit (cutover_shadow_overload_total). */
function overloadBy(text: string, cause: 'in_flight' | 'comparison_queue' | 'event_loop'): number {
  return sample(text, `cutover_shadow_overload_total{route="w",cause="${cause}"}`);
}

/** Sends `n` requests, `concurrency` at a time; every client answer must be the legacy one, whole. */
async function load(p: InProcessProxy, n: number, concurrency: number, want: unknown = expected): Promise<void> {
  let sent = 0;
  const worker = async (): Promise<void> => {
    while (sent < n) {
      sent++;
      const res = await request(`${p.dataUrl}/w`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.json()).toEqual(want);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Every request was either compared or skipped for a counted reason: the accounting closes. */
async function accountedFor(p: InProcessProxy, n: number): Promise<string> {
  return waitFor(
    async () => {
      const text = await scrape(p);
      const compared = total(text, 'cutover_comparisons_total{route="w"');
      const notCompared = total(text, 'cutover_shadow_skipped_total{route="w"');
      return compared + notCompared === n ? text : null;
    },
    15_000,
    `${n} requests to be compared or counted as skipped`,
  );
}

const used = (): number => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;

describe('faulty mirrors never touch the client, and every mirror not compared is counted', () => {
  const N = 60;

  it('answers 10 MB (announced): read up to nothing, then skipped for a cool-down as body_too_large', async () => {
    const big = Buffer.alloc(10 * 1024 * 1024, 'a');
    const legacy = await backend((_req, res) => json(res, 200, expected));
    const next = await backend((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': big.length });
      res.end(big);
    });
    const p = await proxy(legacy, next);
    const before = used();
    await load(p, N, 4);
    const text = await accountedFor(p, N);
    // A few pairs were in flight together before the first came back oversize; the rest are skipped.
    expect(skipped(text, 'body_too_large')).toBeGreaterThanOrEqual(N - 10);
    expect(sample(text, 'cutover_comparisons_total{route="w",result="error"}')).toBeGreaterThan(0);
    // Sixty 10 MB answers would be 600 MB; what the proxy keeps is bounded by the cap.
    expect(used() - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('answers 10 MB (chunked, no length): stops at the cap and skips the route for a cool-down', async () => {
    const chunk = Buffer.alloc(256 * 1024, 'b');
    const legacy = await backend((_req, res) => json(res, 200, expected));
    const next = await backend((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      let left = 40;
      const more = (): void => {
        while (left > 0) {
          left--;
          if (!res.write(chunk)) return void res.once('drain', more);
        }
        res.end();
      };
      res.on('error', () => undefined);
      more();
    });
    const p = await proxy(legacy, next);
    const before = used();
    await load(p, N, 4);
    const text = await accountedFor(p, N);
    expect(skipped(text, 'body_too_large')).toBeGreaterThanOrEqual(N - 10);
    expect(used() - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('resets mid-body: counted as failures, then the breaker skips it as shadow_down', async () => {
    const legacy = await backend((_req, res) => json(res, 200, expected));
    const next = await backend((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 1000 });
      res.write('{"id": 7, "na');
      setImmediate(() => res.socket?.destroy());
    });
    const p = await proxy(legacy, next);
    await load(p, N, 4);
    const text = await accountedFor(p, N);
    expect(skipped(text, 'shadow_down')).toBeGreaterThanOrEqual(N - 15);
    expect(sample(text, 'cutover_requests_total{route="w",backend="new",role="shadow",outcome="error"}')).toBeGreaterThanOrEqual(5);
  });

  it('hangs: mirrors pile up to the in-flight bound and the rest are skipped as overload', async () => {
    const legacy = await backend((_req, res) => json(res, 200, expected));
    const next = await backend(() => undefined); // never answers
    const p = await proxy(legacy, next, { shadow: { maxInFlight: 8, timeout: '1s' } });
    await load(p, N, 4);
    const text = await accountedFor(p, N);
    expect(skipped(text, 'overload') + skipped(text, 'shadow_down')).toBeGreaterThanOrEqual(N - 8);
    expect(sample(text, 'cutover_requests_total{route="w",backend="new",role="shadow",outcome="timeout"}')).toBeGreaterThan(0);
  });

  /** A breaker's log line as pino writes it (app.ts onBreaker). */
  interface BreakerLine {
    level: number;
    msg: string;
    backend: string;
    open: boolean;
    reason?: string;
    failures?: number;
    silentMs?: number;
    waiting?: number;
  }

  /** The log lines of `backend`'s breaker opening, parsed. */
  function openings(p: InProcessProxy, backend: 'legacy' | 'new'): BreakerLine[] {
    return p.logs.map((l) => JSON.parse(l) as BreakerLine).filter((l) => l.backend === backend && l.open === true);
  }

  /** Sends `n` requests one at a time, `gapMs` apart, each answered whole from legacy. */
  async function paced(p: InProcessProxy, n: number, gapMs: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const res = await request(`${p.dataUrl}/w`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.json()).toEqual(expected);
      await new Promise((resolve) => setTimeout(resolve, gapMs));
    }
  }

  it('goes silent after answering: taken as down after 1 s of silence, long before any mirror times out', async () => {
    const legacy = await backend((_req, res) => json(res, 200, expected));
    let answered = 0;
    const next = await backend((_req, res) => {
      if (answered < 10) {
        answered++;
        json(res, 200, expected);
      } // then never again
    });
    // A budget no mirror reaches in this test and room for every mirror in flight: neither a timeout
    // nor the in-flight bound can be what stops them.
    const p = await proxy(legacy, next, { shadow: { maxInFlight: 64, timeout: '20s' } });
    await paced(p, 10, 0); // the breaker learns the target's pace: a few ms
    await waitFor(async () => (total(await scrape(p), 'cutover_comparisons_total{route="w"') === 10 ? true : null), 5_000, 'the ten answered mirrors compared');
    const silentFrom = Date.now();
    await paced(p, 22, 100); // ~2.2 s of steady traffic to a target that no longer answers
    const text = await scrape(p);
    expect(Date.now() - silentFrom).toBeLessThan(20_000);
    // Mirrors went on only until a second of silence; the rest were skipped as shadow_down.
    expect(skipped(text, 'shadow_down')).toBeGreaterThanOrEqual(5);
    expect(skipped(text, 'shadow_down')).toBeLessThanOrEqual(22 - 5);
    expect(skipped(text, 'overload')).toBe(0);
    expect(sample(text, 'cutover_requests_total{route="w",backend="new",role="shadow",outcome="timeout"}')).toBe(0);
    expect(p.shadow.breakers.new.stalls).toBe(1);
    // The operator is told why, once: a warning naming the backend, the silence and the mirrors waiting.
    const opened = openings(p, 'new');
    expect(opened).toHaveLength(1);
    expect(opened[0]).toMatchObject({ level: 40, reason: 'silence' }); // pino's warn
    expect(opened[0].silentMs).toBeGreaterThanOrEqual(1_000);
    // One mirror per 100 ms for the second of silence: about ten sent since the last answer.
    expect(opened[0].waiting).toBeGreaterThanOrEqual(5);
    expect(opened[0].waiting).toBeLessThanOrEqual(12);
    expect(opened[0].msg).toMatch(/^the shadow backend new has answered nothing for \d+\.\d s while \d+ mirrors wait: mirrors to it are skipped as shadow_down/);
    // GET /api/state says it too, while it lasts: since when, why, in the log's words.
    const res = await request(`${p.adminUrl}/api/state`, { headers: { authorization: 'Bearer t' } });
    const state = (await res.body.json()) as { shadowBackends: Record<'legacy' | 'new', BreakerView> };
    expect(state.shadowBackends.legacy).toEqual({ open: false, stalls: 0 });
    expect(state.shadowBackends.new).toMatchObject({ open: true, reason: 'silence', detail: opened[0].msg, stalls: 1 });
    expect(Date.parse(state.shadowBackends.new!.since!)).toBeGreaterThanOrEqual(silentFrom + 1_000);
  });

  it('hangs from the start: taken as down after half of shadow.timeout, before any mirror times out', async () => {
    const legacy = await backend((_req, res) => json(res, 200, expected));
    const next = await backend(() => undefined); // never answers
    const p = await proxy(legacy, next, { shadow: { maxInFlight: 64, timeout: '4s' } });
    await paced(p, 28, 100); // ~2.8 s: past 2 s of silence, short of the 4 s timeout
    const text = await scrape(p);
    expect(skipped(text, 'shadow_down')).toBeGreaterThanOrEqual(3);
    expect(skipped(text, 'overload')).toBe(0);
    expect(sample(text, 'cutover_requests_total{route="w",backend="new",role="shadow",outcome="timeout"}')).toBe(0);
  });

  it('slow (200 ms): the client does not wait; what does not fit in flight is skipped as overload', async () => {
    const legacy = await backend((_req, res) => json(res, 200, expected));
    const next = await backend((_req, res) => void setTimeout(() => json(res, 200, expected), 200));
    const p = await proxy(legacy, next, { shadow: { maxInFlight: 4 } });
    await load(p, N, 4);
    const text = await accountedFor(p, N);
    expect(skipped(text, 'overload')).toBeGreaterThan(0);
    // Each overload skip names its bound; here the slots of slow mirrors are what runs out.
    expect(overloadBy(text, 'in_flight')).toBeGreaterThan(0);
    expect(overloadBy(text, 'in_flight') + overloadBy(text, 'comparison_queue') + overloadBy(text, 'event_loop')).toBe(skipped(text, 'overload'));
    expect(sample(text, 'cutover_comparisons_total{route="w",result="match"}')).toBeGreaterThan(0);
  });

  it('refuses connections: the breaker opens and the rest are skipped as shadow_down', async () => {
    const legacy = await backend((_req, res) => json(res, 200, expected));
    const p = await proxy(legacy, `http://127.0.0.1:${await deadPort()}`);
    await load(p, N, 4);
    const text = await accountedFor(p, N);
    expect(skipped(text, 'shadow_down')).toBeGreaterThanOrEqual(N - 15);
    // One warning (pino's level 40), not one per mirror.
    expect(openings(p, 'new').map((l) => [l.level, l.reason, l.failures])).toEqual([[40, 'failures', 5]]);
  });

  it('answers bytes that are not HTTP: errors, then shadow_down', async () => {
    const legacy = await backend((_req, res) => json(res, 200, expected));
    const p = await proxy(legacy, await garbageServer());
    await load(p, N, 4);
    const text = await accountedFor(p, N);
    expect(skipped(text, 'shadow_down')).toBeGreaterThanOrEqual(N - 15);
    expect(sample(text, 'cutover_comparisons_total{route="w",result="error"}')).toBeGreaterThanOrEqual(5);
  });
});

describe('the comparison queue', () => {
  it('sends no mirror it has no room to compare: skipped once as overload, never sent and dropped', async () => {
    const legacy = await backend((_req, res) => json(res, 200, expected));
    let mirrors = 0;
    const next = await backend((_req, res) => {
      mirrors++;
      setTimeout(() => json(res, 200, expected), 100);
    });
    const p = await startProxy(
      baseConfig(legacy, next, { defaults: { shadow: { baselinePercent: 0 } }, routes: [{ name: 'w', match: { path: '/w' } }] }),
      { analysis: { queueLimit: 2, workers: 0 } },
    );
    cleanups.push(() => p.close(100));
    await load(p, 20, 5);
    const text = await accountedFor(p, 20);
    // Every mirror the shadow backend received was compared; every other request is one overload skip.
    expect(total(text, 'cutover_comparisons_total{route="w"')).toBe(mirrors);
    expect(total(text, 'cutover_requests_total{route="w",backend="new",role="shadow"')).toBe(mirrors);
    expect(skipped(text, 'overload')).toBe(20 - mirrors);
    expect(overloadBy(text, 'comparison_queue')).toBe(20 - mirrors);
    expect(overloadBy(text, 'in_flight') + overloadBy(text, 'event_loop')).toBe(0);
    expect(mirrors).toBeLessThan(20);
  });

  const answer = (bytes: number) => ({ outcome: '2xx' as const, status: 200, headers: {}, body: Buffer.alloc(bytes), truncated: false, seconds: 0 });
  const pair = (bytes: number): CapturedAnswerPair =>
    ({ route: { name: 'r' }, method: 'GET', path: '/', primaryIsNew: false, primary: answer(bytes), shadow: answer(bytes), baseline: null }) as unknown as CapturedAnswerPair;
  /** How many more places `route` gets before the queue refuses one (at most `max`). */
  const places = (queue: ComparisonQueue, route: string, max: number): number => {
    let n = 0;
    while (n < max && queue.reserve(route)) n++;
    return n;
  };
  /** A pair of `route`, each answer `bytes` long. */
  const routePair = (route: string, bytes: number): CapturedAnswerPair => ({ ...pair(bytes), route: { name: route } }) as unknown as CapturedAnswerPair;

  it('is bounded by bytes, queued and being compared, until the comparison is done', async () => {
    const finish: (() => void)[] = [];
    const dropped: CapturedAnswerPair[] = [];
    const queue = new ComparisonQueue({ count: 100, bytes: 1_000, sliceMs: 5 }, () => new Promise<void>((r) => finish.push(r)), (p) => dropped.push(p));
    expect(queue.reserve('r')).toBe(true);
    queue.submit(pair(300), true); // 600 bytes held
    expect(queue.reserve('r')).toBe(true);
    queue.submit(pair(300), true); // 1 200 bytes held: over the bound
    expect(queue.reserve('r')).toBe(false);
    queue.submit(pair(10));
    expect(dropped).toHaveLength(1);
    await waitFor(() => finish.length === 2, 2_000, 'both comparisons to start');
    expect(queue.reserve('r')).toBe(false); // still held while being compared
    finish.splice(0).forEach((f) => f());
    await waitFor(() => queue.pending === 0, 2_000, 'the comparisons to finish');
    expect(queue.reserve('r')).toBe(true);
  });

  it('before any pair is back, reserves at most 1/64 of its byte bound per place (a start-up burst cannot pass the bound)', () => {
    const queue = new ComparisonQueue({ count: 1_000, bytes: 64_000, sliceMs: 5 }, () => undefined, () => undefined);
    const taken = places(queue, 'r', 1_000);
    expect(taken).toBe(64);
    // The first pair sets the size a place is expected to bring: 10-byte pairs leave room for many more.
    queue.submit(pair(5), true);
    const more = places(queue, 'r', 2_000);
    expect(more).toBeGreaterThan(800);
  });

  it('expects each route\'s places at that route\'s pair size: small answers on one route do not open the bound to big ones on another', async () => {
    const queue = new ComparisonQueue({ count: 10_000, bytes: 64_000, sliceMs: 5 }, () => undefined, () => undefined);
    // A busy route of 10-byte pairs.
    for (let i = 0; i < 300; i++) {
      expect(queue.reserve('small')).toBe(true);
      queue.submit(routePair('small', 5), true);
    }
    await waitFor(() => queue.pending === 0, 2_000, 'the small pairs to be compared');
    // A route never seen yet: its places count at 1/64 of the bound, whatever the small route's size.
    const big = places(queue, 'big', 1_000);
    expect(big).toBe(64);
    for (let i = 0; i < big; i++) queue.unreserve('big');
    // Once its pairs are known to be 16 KB, four places fill the 64 KB bound.
    expect(queue.reserve('big')).toBe(true);
    queue.submit(routePair('big', 8_000), true);
    const after = places(queue, 'big', 1_000);
    // 16 KB held by the first pair: three more 16 KB pairs on their way reach the bound.
    expect(after).toBe(3);
  });

  it('past its bound on routes remembered, forgets the oldest idle one only, not every route\'s pair size', async () => {
    const queue = new ComparisonQueue({ count: 10_000, bytes: 64_000, sliceMs: 5 }, () => undefined, () => undefined);
    for (let i = 0; i < 5_000; i++) {
      expect(queue.reserve(`r${i}`)).toBe(true);
      queue.submit(routePair(`r${i}`, 5), true);
    }
    await waitFor(() => queue.pending === 0, 5_000, 'the pairs to be compared');
    // A route of the middle still has its 10-byte pairs: far more than the 64 places of an unknown one.
    expect(places(queue, 'r3000', 1_000)).toBe(1_000);
  });

  it('a processor that throws or rejects gives its place and bytes back, is reported, and the drain goes on', async () => {
    const failed: unknown[] = [];
    let n = 0;
    const queue = new ComparisonQueue(
      { count: 3, bytes: 1e9, sliceMs: 5 },
      () => {
        n++;
        if (n === 1) throw new Error('thrown');
        if (n === 2) return Promise.reject(new Error('rejected'));
        return Promise.resolve();
      },
      () => undefined,
      (_pair, err) => failed.push((err as Error).message),
    );
    for (let i = 0; i < 3; i++) {
      expect(queue.reserve('r')).toBe(true);
      queue.submit(pair(10), true);
    }
    await waitFor(() => queue.pending === 0 && n === 3, 2_000, 'all three to be processed');
    expect(failed).toEqual(['thrown', 'rejected']);
    // Every place is free again.
    for (let i = 0; i < 3; i++) expect(queue.reserve('r')).toBe(true);
  });

  it('drains in time-boxed slices, yielding to the event loop between them', async () => {
    let processed = 0;
    const busy = (ms: number): void => {
      const end = performance.now() + ms;
      while (performance.now() < end);
    };
    const queue = new ComparisonQueue({ count: 100, bytes: 1e9, sliceMs: 5 }, () => {
      busy(3);
      processed++;
    }, () => undefined);
    for (let i = 0; i < 20; i++) queue.submit(pair(1));
    // One turn later (a setImmediate queued after the drain's runs after its first slice) not all are done.
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(processed).toBeGreaterThan(0);
    expect(processed).toBeLessThan(20);
    await waitFor(() => processed === 20, 5_000, 'the rest of the queue');
  });
});

describe('comparison workers', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cutover-workers-'));
  const file = join(dir, 'thread.mjs');
  // The transform says which thread ran it, so the answer shows where the comparison happened.
  writeFileSync(file, "import { isMainThread } from 'node:worker_threads';\nexport default (legacy, candidate) => ({ legacy, candidate: { ...candidate, thread: isMainThread ? 'main' : 'worker' } });\n");

  async function threadOf(workers: number, padding = 0): Promise<unknown> {
    const pad = 'p'.repeat(padding);
    const legacy = await backend((_req, res) => json(res, 200, { ...expected, pad }));
    // Byte-different answers: equal ones take the byte-equal fast path and never reach the transform.
    const next = await backend((_req, res) => json(res, 200, { ...expected, pad, price: 13 }));
    const p = await proxy(legacy, next, {
      shadow: { compareWorkers: workers, shedAt: { eventLoopDelay: 0, utilisation: 1 } },
      routes: [{ name: 'w', match: { path: '/w' }, compare: { transform: file } }],
    });
    expect(p.analysis.inWorkers).toBe(workers > 0);
    await load(p, 3, 1, { ...expected, pad });
    const text = await accountedFor(p, 3);
    expect(sample(text, 'cutover_comparisons_total{route="w",result="mismatch"}')).toBe(3);
    const res = await request(`${p.adminUrl}/api/routes/w/diffs`, { headers: { authorization: 'Bearer t' } });
    const report = (await res.body.json()) as { fields: { field: string; examples: { new?: unknown }[] }[] };
    return report.fields.find((f) => f.field === '$.thread')?.examples[0]?.new;
  }

  it('run the comparison (and the transform, loaded by path) off the main thread', async () => {
    expect(await threadOf(1, 20_000)).toBe('worker');
  });

  it('leave small pairs on the main thread, where they cost less than the hand-over', async () => {
    expect(await threadOf(1, 0)).toBe('main');
  });

  it('compareWorkers: 0 compares on the main thread', async () => {
    expect(await threadOf(0, 20_000)).toBe('main');
  });
});

describe('load shedding', () => {
  const spin = (ms: number): void => {
    const end = performance.now() + ms;
    while (performance.now() < end);
  };
  /** `turns` event-loop turns, each busy for `ms`, letting the shedder's overdue sample run between them. */
  const busyTurns = async (turns: number, ms: number): Promise<void> => {
    for (let i = 0; i < turns; i++) {
      spin(ms);
      await new Promise((r) => setTimeout(r, 0));
    }
  };

  it('a busy loop sends fewer mirrors, but never fewer than half', async () => {
    const shed = new LoadShedder({ eventLoopDelay: 0, utilisation: 0.5 });
    cleanups.push(async () => shed.close());
    // Busy nearly all the time for ~10 samples: the admitted share steps down to its floor.
    await busyTurns(12, 95);
    let admitted = 0;
    for (let i = 0; i < 100; i++) if (shed.admit()) admitted++;
    expect(admitted).toBeGreaterThanOrEqual(50);
    expect(admitted).toBeLessThan(100);
  });

  it('restart() forgets a busy start: mirrors are admitted at once, at full share', async () => {
    const shed = new LoadShedder({ eventLoopDelay: 20, utilisation: 0.5 });
    cleanups.push(async () => shed.close());
    await busyTurns(4, 150);
    expect(shed.admit()).toBe(false);
    shed.restart();
    let admitted = 0;
    for (let i = 0; i < 20; i++) if (shed.admit()) admitted++;
    expect(admitted).toBe(20);
  });

  it('one hiccup sheds nothing', async () => {
    const shed = new LoadShedder({ eventLoopDelay: 20, utilisation: 1 });
    cleanups.push(async () => shed.close());
    await new Promise((r) => setTimeout(r, 200)); // the delay monitor is running
    spin(150);
    await waitFor(() => shed.lastDelayMs > 20, 2_000, 'the sample that saw the hiccup');
    expect(shed.admit()).toBe(true);
  });

  it('one busy sample sheds nothing either: the share steps down from the second busy sample in a row', async () => {
    const shed = new LoadShedder({ eventLoopDelay: 0, utilisation: 0.5 });
    cleanups.push(async () => shed.close());
    await new Promise((r) => setTimeout(r, 250)); // idle samples first
    // One spin longer than a sample: the sample due meanwhile runs right after it and saw at least
    // 120 ms busy of at most 220 (over the 0.5 bound wherever the spin began); the next one is idle.
    spin(120);
    await waitFor(() => shed.lastUtilisation > 0.5, 2_000, 'the sample that saw the busy spell');
    let admitted = 0;
    for (let i = 0; i < 20; i++) if (shed.admit()) admitted++;
    expect(admitted).toBe(20);
  });

  it('skips new mirrors as overload while the event loop is late, and clients still get their answers', async () => {
    const legacy = await backend((_req, res) => json(res, 200, expected));
    const next = await backend((_req, res) => json(res, 200, expected));
    const p = await proxy(legacy, next, { shadow: { shedAt: { eventLoopDelay: '20ms', utilisation: 1 } } });
    const busy = (ms: number): void => {
      const end = performance.now() + ms;
      while (performance.now() < end);
    };
    await waitFor(
      async () => {
        // Late by far more than the bound, sample after sample (one hiccup sheds nothing).
        for (let i = 0; i < 3; i++) {
          busy(150);
          await new Promise((r) => setTimeout(r, 0)); // lets the overdue sample run
        }
        await load(p, 1, 1);
        return overloadBy(await scrape(p), 'event_loop') > 0;
      },
      10_000,
      'a mirror shed as overload',
    );
  });
});
