/**
 * A mirror planned for a request whose primary was never dispatched (its dispatch threw) gives back
 * what plan() took: its comparison queue place and any breaker probe (the in-flight place is taken
 * when a mirror is sent). Kept, they would add up until every later mirror was skipped as overload,
 * or a backend's breaker could never probe again. In the running proxy the client is answered at once (500 PROXY_ERROR), not at
 * the backend's timeout; and a pair hook that throws keeps nothing either.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import type { AppOptions } from '../src/app.js';
import type { Upstream } from '../src/forward/upstream.js';
import { startBackend, waitFor, type Handler } from './helpers/backend.js';
import { sample, scrape } from './helpers/metrics.js';
import { baseConfig, startProxy, type InProcessProxy } from './helpers/proxy.js';
import { validateConfig } from '../src/config/load.js';
import { RouteTable } from '../src/routing/table.js';
import { MirrorJob, ShadowEngine, type ShadowEngineDeps } from '../src/shadow/engine.js';
import { Admission } from '../src/shadow/breaker.js';
import { Telemetry } from '../src/telemetry/metrics.js';

function setup(maxInFlight: number, shed?: ShadowEngineDeps['shed']) {
  const config = validateConfig({
    backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
    routes: [{ name: 'r', match: { path: '/r' } }],
  });
  const routes = new RouteTable(config.routes, config.defaults, new Telemetry({ defaultMetrics: false }));
  const queue = { reserved: 0, reserve: () => (queue.reserved++, true), unreserve: () => void queue.reserved--, typicalBytes: () => -1 };
  let now = 1_000_000;
  const engine = new ShadowEngine({
    // plan() and abandon() never reach the pools: nothing is sent here.
    pools: {} as ShadowEngineDeps['pools'],
    maxInFlight,
    timeout: 1_000,
    credentialQuery: [],
    onPair: () => undefined,
    breaker: { now: () => now },
    comparisons: queue,
    shed,
  });
  return { engine, route: routes.get('r')!, queue, later: (ms: number) => (now += ms) };
}

/** The job plan() made; fails the test when it gave a reason not to mirror instead. */
function job(planned: ReturnType<ShadowEngine['plan']>): MirrorJob {
  expect(planned).toBeInstanceOf(MirrorJob);
  return planned as MirrorJob;
}

describe('a mirror whose request is never sent', () => {
  it('gives back its comparison place, once; it took no in-flight place (only a mirror sent does)', () => {
    const { engine, route, queue } = setup(1);
    const first = job(engine.plan(route, 'GET', null, false));
    expect(engine.active).toBe(0);
    expect(queue.reserved).toBe(1);
    const second = job(engine.plan(route, 'GET', null, false));
    expect(queue.reserved).toBe(2);
    first.abandon();
    first.abandon();
    expect(queue.reserved).toBe(1);
    second.abandon();
    expect(queue.reserved).toBe(0);
    expect(engine.active).toBe(0);
  });

  it("gives back the breaker's probe, so the next mirror may probe the backend", () => {
    const { engine, route, later } = setup(10);
    for (let i = 0; i < 5; i++) engine.breakers.new.record(false, false);
    expect(engine.plan(route, 'GET', null, false)).toBe('shadow_down'); // open: refused
    later(60_000);
    const probe = job(engine.plan(route, 'GET', null, false));
    expect(probe.probe).toBe(true);
    probe.abandon();
    expect(engine.breakers.new.allow()).toBe(Admission.Probe);
  });
});

describe('a mirror to a target that is down', () => {
  it('is skipped as shadow_down before the in-flight bound, the shedder or the queue is asked: the reason is the target', () => {
    let asked = 0;
    const { engine, route, queue, later } = setup(1, { admit: () => (asked++, false) });
    for (let i = 0; i < 5; i++) engine.breakers.new.record(false, false);
    expect(engine.plan(route, 'GET', null, false)).toBe('shadow_down');
    expect(asked).toBe(0);
    expect(queue.reserved).toBe(0);
    // When a probe is due, the other bounds are asked as before (here the shedder refuses it).
    later(60_000);
    expect(engine.plan(route, 'GET', null, false)).toBe('event_loop');
    expect(asked).toBe(1);
    expect(engine.breakers.new.allow()).toBe(Admission.Probe);
  });
});

describe('in the running proxy', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });
  const ok: Handler = (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}');
  };
  async function running(options: AppOptions = {}): Promise<InProcessProxy> {
    const legacy = await startBackend(ok);
    const next = await startBackend(ok);
    const p = await startProxy(baseConfig(legacy.url, next.url, { backends: { legacy: { url: legacy.url, timeout: '5s' }, new: { url: next.url } }, defaults: { shadow: { baselinePercent: 0 } }, routes: [{ name: 'r', match: { path: '/r/:id' } }] }), options);
    cleanups.push(() => legacy.close(), () => next.close(), () => p.close(100));
    return p;
  }

  it('a primary dispatch that throws answers the client 500 at once, and takes no place for good', async () => {
    const p = await running();
    const upstream = (p.proxy as unknown as { deps: { upstreams: { legacy: { -readonly [K in keyof Upstream]: Upstream[K] } } } }).deps.upstreams.legacy;
    const real = upstream.dispatcher;
    upstream.dispatcher = { dispatch: () => { throw new Error('boom'); } } as unknown as Upstream['dispatcher'];
    const started = Date.now();
    const res = await request(`${p.dataUrl}/r/1`);
    const body = (await res.body.json()) as { code: string };
    upstream.dispatcher = real;
    expect(res.statusCode).toBe(500);
    expect(body.code).toBe('PROXY_ERROR');
    // Told at once, not at the backend's 5 s timeout.
    expect(Date.now() - started).toBeLessThan(2_500);
    expect(upstream.inFlight).toBe(0);
    expect(p.shadow.active).toBe(0);
    expect(p.logs.some((l) => l.includes('proxy error') && l.includes('boom'))).toBe(true);
    // The next request is served and mirrored as usual.
    expect((await request(`${p.dataUrl}/r/2`)).statusCode).toBe(200);
    await waitFor(async () => sample(await scrape(p), 'cutover_comparisons_total{route="r",result="match"}') === 1, 5_000, 'the next pair compared');
  });

  it('an onPair hook that throws does not keep the pair from its comparison, nor its place', async () => {
    const p = await running({
      onPair: () => {
        throw new Error('hook');
      },
    });
    for (let i = 0; i < 3; i++) expect((await request(`${p.dataUrl}/r/${i}`)).statusCode).toBe(200);
    await waitFor(async () => sample(await scrape(p), 'cutover_comparisons_total{route="r",result="match"}') === 3, 5_000, 'all three pairs compared');
    expect(p.analysis.pending).toBe(0);
  });
});
