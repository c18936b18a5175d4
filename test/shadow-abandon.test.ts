/**
 * A mirror planned for a request whose primary was never dispatched (its dispatch threw) gives back
 * what plan() took: the in-flight place, the comparison queue place and any breaker probe. Kept,
 * they would add up until every later mirror was skipped as overload, or a backend's breaker could
 * never probe again.
 */
import { describe, expect, it } from 'vitest';
import { validateConfig } from '../src/config/load.js';
import { RouteTable } from '../src/routing/table.js';
import { ShadowEngine, type ShadowEngineDeps } from '../src/shadow/engine.js';
import { Admission } from '../src/shadow/breaker.js';
import { Telemetry } from '../src/telemetry/metrics.js';

function setup(maxInFlight: number) {
  const config = validateConfig({
    backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
    routes: [{ name: 'r', match: { path: '/r' } }],
  });
  const routes = new RouteTable(config.routes, config.defaults, new Telemetry({ defaultMetrics: false }));
  const queue = { reserved: 0, reserve: () => (queue.reserved++, true), unreserve: () => void queue.reserved-- };
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
  });
  return { engine, route: routes.get('r')!, queue, later: (ms: number) => (now += ms) };
}

describe('a mirror whose request is never sent', () => {
  it('gives back its in-flight place and its comparison place, once', () => {
    const { engine, route, queue } = setup(1);
    const job = engine.plan(route, 'GET', null, false)!;
    expect(job).not.toBeNull();
    expect(engine.active).toBe(1);
    expect(queue.reserved).toBe(1);
    // The one in-flight place is taken: the next request is not mirrored.
    expect(engine.plan(route, 'GET', null, false)).toBeNull();
    job.abandon();
    job.abandon();
    expect(engine.active).toBe(0);
    expect(queue.reserved).toBe(0);
    expect(engine.plan(route, 'GET', null, false)).not.toBeNull();
  });

  it("gives back the breaker's probe, so the next mirror may probe the backend", () => {
    const { engine, route, later } = setup(10);
    for (let i = 0; i < 5; i++) engine.breakers.new.record(false, false);
    expect(engine.plan(route, 'GET', null, false)).toBeNull(); // open: refused
    later(60_000);
    const probe = engine.plan(route, 'GET', null, false)!;
    expect(probe.probe).toBe(true);
    probe.abandon();
    expect(engine.breakers.new.allow()).toBe(Admission.Probe);
  });
});
