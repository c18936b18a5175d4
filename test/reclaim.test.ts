/**
 * Bodies' read buffers reclaimed young (src/forward/reclaim.ts): every upstream answer's bytes are
 * counted, live and mirrored, and every request body's; past the threshold V8 really runs a
 * scavenge. The real `gc` comes from V8 itself (the flag `cutover run` starts with, set here at run
 * time), and the scavenge is seen by Node's own GC observer.
 */
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { RECLAIM_EVERY_BYTES, YoungReclaimer, youngReclaimer } from '../src/forward/reclaim.js';
import { startBackend, waitFor } from './helpers/backend.js';
import { baseConfig, startProxy } from './helpers/proxy.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('young reclaimer', () => {
  it('asks V8 for a scavenge each time the threshold of answer bytes is crossed, and V8 runs one', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as ConstructorParameters<typeof YoungReclaimer>[0];
    const minor: number[] = [];
    const observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) if ((e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor.push(e.startTime);
    });
    observer.observe({ entryTypes: ['gc'] });
    try {
      const r = new YoungReclaimer(gc, 1024 * 1024);
      expect(r.active).toBe(true);
      r.read(1024 * 1024 - 1);
      await pause(50);
      expect(r.requested).toBe(0);
      const before = minor.length;
      r.read(1);
      expect(r.requested).toBe(1);
      // Asynchronous: V8 runs it as a task of its own, soon after.
      await waitFor(() => minor.length > before, 5_000, 'a scavenge');
      r.read(3 * 1024 * 1024);
      expect(r.requested).toBe(2);
      expect(r.seen).toBe(4 * 1024 * 1024);
    } finally {
      observer.disconnect();
    }
  });

  it('without V8 gc exposed, only counts', () => {
    const r = new YoungReclaimer(undefined, 10);
    r.read(100);
    expect(r.active).toBe(false);
    expect(r.requested).toBe(0);
    expect(r.seen).toBe(100);
    expect(RECLAIM_EVERY_BYTES).toBe(32 * 1024 * 1024);
  });

  it('counts every body byte read: answers, live and mirrored, and request bodies', async () => {
    const body = Buffer.alloc(300_000, 'x');
    const backend = async () => {
      const b = await startBackend((_req, res) => {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
        res.end(body);
      });
      cleanups.push(() => b.close());
      return b;
    };
    const legacy = await backend();
    const next = await backend();
    const p = await startProxy(baseConfig(legacy.url, next.url, { routes: [{ name: 'big', match: { path: '/big' }, weight: 0, shadow: { percent: 100, baselinePercent: 0 } }] }));
    cleanups.push(() => p.close(100));
    const before = youngReclaimer.seen;
    const res = await request(`${p.dataUrl}/big`);
    expect((await res.body.arrayBuffer()).byteLength).toBe(body.length);
    // The live answer and its mirror's: the mirror may finish after the client's answer.
    await waitFor(() => youngReclaimer.seen - before >= 2 * body.length, 5_000, 'both answers counted');
    expect(youngReclaimer.seen - before).toBe(2 * body.length);

    // A client's request body is read off its socket too (a POST is not mirrored by default).
    const sent = Buffer.alloc(200_000, 'y');
    const beforePost = youngReclaimer.seen;
    const post = await request(`${p.dataUrl}/big`, { method: 'POST', body: sent, headers: { 'content-type': 'application/octet-stream' } });
    expect((await post.body.arrayBuffer()).byteLength).toBe(body.length);
    expect(youngReclaimer.seen - beforePost).toBe(sent.length + body.length);
  });
});
