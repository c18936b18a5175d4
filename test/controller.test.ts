import http from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AUDIT_MEMORY, AuditLog } from '../src/cutover/audit.js';
import { Controller, LeverError, MAX_WEBHOOKS_IN_FLIGHT, type ControllerRoute, type ControllerSettings, type RollbackEvent, type Step } from '../src/cutover/controller.js';
import { MemoryStore } from '../src/cutover/store.js';
import { FileStore } from '../src/cutover/store-file.js';
import { buildReport } from '../src/cutover/report.js';
import type { GateThresholds } from '../src/cutover/types.js';
import { Telemetry } from '../src/telemetry/metrics.js';
import { TestEvidence } from './helpers/evidence.js';
import { FullDiskStore } from './helpers/full-disk.js';

const GATES: GateThresholds = { minComparisons: 50, maxMismatchRate: 0.05, maxErrorRateIncrease: 0.02, maxLatencyRatio: 1.5 };
const INTERVAL = 30_000;

interface Rig {
  controller: Controller;
  store: MemoryStore;
  traffic: TestEvidence;
  audit: AuditLog;
  auditPath: string;
  telemetry: Telemetry;
  weights: [string, number][];
  clock: { t: number };
  /** Moves the clock one interval (after adding traffic) and runs one check. */
  step(fill?: (traffic: TestEvidence) => void): Promise<void>;
  scrape(): Promise<string>;
}

async function rig(opts: { steps?: Step[]; routes?: Partial<ControllerRoute>[]; settings?: Partial<ControllerSettings>; store?: MemoryStore } = {}): Promise<Rig> {
  const clock = { t: Date.UTC(2026, 0, 1) };
  const now = () => clock.t;
  const store = opts.store ?? new MemoryStore();
  const traffic = new TestEvidence(now);
  const auditPath = join(mkdtempSync(join(tmpdir(), 'cutover-audit-')), 'audit.jsonl');
  const audit = new AuditLog(auditPath);
  const telemetry = new Telemetry({ defaultMetrics: false });
  const settings: ControllerSettings = { steps: opts.steps ?? [0, 10, 100], intervalMs: INTERVAL, holdIntervals: 2, failureThreshold: 3, mode: 'auto', ...opts.settings };
  const routes = (opts.routes ?? [{}]).map((r) => ({ name: 'r', weight: 0, after: [], gates: GATES, ...r }));
  const controller = new Controller(settings, routes, { store, evidence: traffic, audit, now, metrics: telemetry.cutover });
  const initial: [string, number][] = [];
  const stopInitial = controller.onWeight((route, w) => initial.push([route, w]));
  await controller.init();
  stopInitial();
  expect(initial).toEqual(routes.map((r) => [r.name, store.snapshot().routes[r.name].weight]));
  const weights: [string, number][] = [];
  controller.onWeight((route, w) => weights.push([route, w]));
  return {
    controller,
    store,
    traffic,
    audit,
    auditPath,
    telemetry,
    weights,
    clock,
    async step(fill) {
      clock.t += INTERVAL / 2;
      fill?.(traffic);
      clock.t += INTERVAL / 2;
      await controller.tick();
    },
    scrape: () => telemetry.exposition(),
  };
}

/** A file store, loaded, whose disk fills up on demand (`store.full`). */
async function fullDiskStore(): Promise<{ path: string; store: FullDiskStore }> {
  const path = join(mkdtempSync(join(tmpdir(), 'cutover-full-')), 'cutover.json');
  const store = new FullDiskStore(path);
  await store.load();
  return { path, store };
}

/** A rig whose route has taken its first step (10 %) on good evidence. */
async function atTenPercent(opts: Parameters<typeof rig>[0] = {}): Promise<Rig> {
  const r = await rig({ ...opts, settings: { holdIntervals: 1, ...opts.settings } });
  await r.step(good());
  expect(state(r)).toMatchObject({ step: 1, weight: 10 });
  return r;
}

/** A store whose bypass writes fail while `failing` (a full or read-only disk). */
class FailingGlobalStore extends MemoryStore {
  failing = false;
  override updateGlobal(...args: Parameters<MemoryStore['updateGlobal']>): ReturnType<MemoryStore['updateGlobal']> {
    if (this.failing) return Promise.reject(new Error('ENOSPC'));
    return super.updateGlobal(...args);
  }
}

/** A store whose every write fails while `failing` (a full or read-only disk), as the file store's does. */
class UnwritableStore extends MemoryStore {
  failing = false;
  protected override async persist(): Promise<void> {
    if (this.failing) throw new Error('EROFS');
  }
  override up(): boolean {
    return !this.failing;
  }
}

/** A store whose writes wait while `hold` is pending: a slow disk, with changes queued behind a write. */
class HeldWritesStore extends MemoryStore {
  hold: Promise<void> | null = null;
  protected override async persist(): Promise<void> {
    await this.hold;
  }
}

/**
 * Runs one check whose change waits behind an unrelated write the store holds, and `during` once
 * the check has read its evidence and queued its change; then lets the store go and waits for all.
 */
async function checkBehindHeldWrite(r: Rig, store: HeldWritesStore, during: () => Promise<unknown>): Promise<void> {
  let release!: () => void;
  store.hold = new Promise<void>((resolve) => (release = resolve));
  const held = store.setExtra('unrelated', 1);
  const check = r.controller.tick();
  await new Promise((resolve) => setImmediate(resolve));
  const meanwhile = during();
  release();
  await Promise.all([held, check, meanwhile]);
}

const good = (route = 'r') => (t: TestEvidence) => t.add(route, 100);
const bad = (route = 'r') => (t: TestEvidence) => t.add(route, 100, { mismatchShare: 0.3 });

function state(r: Rig, route = 'r') {
  return r.store.snapshot().routes[route];
}

const servers: http.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
});

describe('controller: walking the steps', () => {
  it('advances on good evidence after holdIntervals passing checks, and completes at 100', async () => {
    const r = await rig();
    expect(state(r)).toMatchObject({ step: 0, weight: 0, state: 'shadow' });
    await r.step(good());
    expect(state(r)).toMatchObject({ step: 0, passes: 1 });
    await r.step(good());
    expect(state(r)).toMatchObject({ step: 1, weight: 10, state: 'shifting', since: r.clock.t, changedBy: 'controller' });
    expect(r.weights).toEqual([['r', 10]]);
    await r.step(good());
    await r.step(good());
    expect(state(r)).toMatchObject({ step: 2, weight: 100, state: 'shifting' });
    await r.step(good());
    await r.step(good());
    expect(state(r)).toMatchObject({ step: 2, weight: 100, state: 'complete' });
    const text = await r.scrape();
    expect(text).toContain('cutover_stage{route="r"} 2');
    expect(text).toContain('cutover_state{route="r",state="complete"} 1');
    expect(text).toContain('cutover_state{route="r",state="shifting"} 0');
    expect(text).toContain('cutover_gate_status{route="r",gate="maxMismatchRate"} 1');
    const audit = await r.audit.read();
    expect(audit.map((e) => e.action)).toEqual(['advance', 'advance', 'complete']);
    expect(audit[0]).toMatchObject({ who: 'controller', route: 'r', from: { weight: 0, step: 0 }, to: { weight: 10, step: 1 } });
    expect(audit[0].why).toMatch(/2 passing checks/);
  });

  it('holds on no traffic: no_data never advances and never rolls back', async () => {
    const r = await rig();
    for (let i = 0; i < 10; i++) await r.step();
    expect(state(r)).toMatchObject({ step: 0, weight: 0, state: 'shadow', passes: 0, failures: 0 });
    expect(state(r).history.at(-1)?.verdict).toBe('no_data');
    expect(await r.scrape()).toContain('cutover_gate_status{route="r",gate="minComparisons"} -1');
    expect(await r.audit.read()).toEqual([]);
  });

  it('judges only the evidence since the last weight change', async () => {
    const r = await rig({ settings: { holdIntervals: 1 } });
    await r.step(good());
    expect(state(r)).toMatchObject({ step: 1, weight: 10 });
    const movedAt = r.clock.t;
    // No new traffic: the 100 comparisons from step 0 must not count at step 1.
    await r.step();
    expect(state(r)).toMatchObject({ step: 1, weight: 10 });
    expect(state(r).history.at(-1)?.gates[0]).toMatchObject({ gate: 'minComparisons', verdict: 'no_data', value: 0 });
    expect(r.traffic.asked.get('r')?.at(-1)).toBe(movedAt);
  });

  it('a pause step waits for a person; resume is refused there, promote goes on', async () => {
    const r = await rig({ steps: [0, 10, { pause: true }, 100], settings: { holdIntervals: 1 } });
    await r.step(good());
    await r.step(good());
    expect(state(r)).toMatchObject({ step: 2, weight: 10, state: 'paused', paused: true });
    for (let i = 0; i < 3; i++) await r.step(good());
    expect(state(r)).toMatchObject({ step: 2, weight: 10 });
    await expect(r.controller.resume('r', { who: 'ops' })).rejects.toMatchObject({ code: 'PAUSE_STEP', status: 409 });
    await r.controller.promote('r', { who: 'ops', reason: 'looks good' });
    expect(state(r)).toMatchObject({ step: 3, weight: 100, state: 'shifting', paused: false, changedBy: 'ops', reason: 'looks good' });
    await r.step(good());
    expect(state(r).state).toBe('complete');
    expect((await r.audit.read()).map((e) => `${e.who}:${e.action}`)).toEqual(['controller:advance', 'controller:pause-step', 'ops:promote', 'controller:complete']);
  });

  it('observe mode reports every gate and never moves a weight, even on failures', async () => {
    const r = await rig({ settings: { mode: 'observe' }, routes: [{ weight: 10 }] });
    for (let i = 0; i < 5; i++) await r.step(good());
    expect(state(r)).toMatchObject({ step: 1, weight: 10, state: 'shifting' });
    expect(state(r).history.at(-1)?.gates.map((g) => g.verdict)).toEqual(['pass', 'pass', 'pass', 'pass']);
    for (let i = 0; i < 5; i++) await r.step(bad());
    expect(state(r)).toMatchObject({ step: 1, weight: 10, state: 'shifting', paused: false });
    expect(state(r).failures).toBeGreaterThanOrEqual(3);
    expect(r.weights).toEqual([]);
    expect(await r.scrape()).toContain('cutover_gate_status{route="r",gate="maxMismatchRate"} 0');
    expect(await r.scrape()).not.toContain('cutover_rollbacks_total');
  });
});

describe('controller: rollback', () => {
  it('rolls back to step 0 after failureThreshold failing checks; counted, audited, POSTed to the webhook', async () => {
    const received: { body: RollbackEvent; type: string | undefined }[] = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        received.push({ body: JSON.parse(body) as RollbackEvent, type: req.headers['content-type'] });
        res.end('ok');
      });
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const webhook = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    const r = await rig({ settings: { holdIntervals: 1, webhook } });
    await r.step(good());
    expect(state(r)).toMatchObject({ step: 1, weight: 10 });
    await r.step(bad());
    await r.step(bad());
    // No data between failures adds nothing and forgives nothing.
    expect(state(r).failures).toBe(2);
    await r.step(bad());
    expect(state(r)).toMatchObject({ step: 0, weight: 0, state: 'rolled_back', paused: true, changedBy: 'controller' });
    expect(r.weights.at(-1)).toEqual(['r', 0]);
    expect(await r.scrape()).toContain('cutover_rollbacks_total{route="r",reason="maxMismatchRate"} 1');
    const last = (await r.audit.read()).at(-1);
    expect(last).toMatchObject({ who: 'controller', action: 'rollback', from: { weight: 10 }, to: { weight: 0, state: 'rolled_back' } });
    expect(last?.why).toMatch(/3 failing checks in a row/);
    const deadline = Date.now() + 5_000;
    while (received.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(received).toHaveLength(1);
    expect(received[0].type).toBe('application/json');
    expect(received[0].body).toMatchObject({ event: 'rollback', route: 'r', reason: 'maxMismatchRate', who: 'controller', from: { step: 1, weight: 10 }, to: { step: 0, weight: 0 } });
    expect(received[0].body.gates.find((g) => g.gate === 'maxMismatchRate')?.verdict).toBe('fail');
    // Paused after a rollback: good evidence moves nothing until a person resumes.
    for (let i = 0; i < 3; i++) await r.step(good());
    expect(state(r)).toMatchObject({ weight: 0, state: 'rolled_back' });
    await r.controller.resume('r', { who: 'ops', reason: 'fixed the price rounding' });
    expect(state(r)).toMatchObject({ state: 'shadow', paused: false });
    await r.step(good());
    expect(state(r)).toMatchObject({ step: 1, weight: 10 });
  });

  it('failing in shadow (weight 0) holds: nothing to roll back, the reason says why', async () => {
    const r = await rig();
    for (let i = 0; i < 5; i++) await r.step(bad());
    expect(state(r)).toMatchObject({ step: 0, weight: 0, state: 'shadow', paused: false, failures: 5 });
    expect(state(r).reason).toBe('holding in shadow: 5 failing checks in a row (maxMismatchRate)');
    expect(await r.scrape()).toContain('cutover_gate_status{route="r",gate="maxMismatchRate"} 0');
    expect(await r.scrape()).not.toContain('cutover_rollbacks_total');
    // Once the difference is fixed, a resume starts the evidence afresh and the route walks on.
    await r.controller.resume('r', { who: 'ops', reason: 'fixed' });
    await r.step(good());
    await r.step(good());
    expect(state(r)).toMatchObject({ step: 1, weight: 10 });
  });

  it('a webhook that does not answer never blocks the controller', async () => {
    const hanging = http.createServer(() => {});
    servers.push(hanging);
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    const webhook = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/`;
    const r = await rig({ settings: { holdIntervals: 1, failureThreshold: 1, webhook, webhookTimeoutMs: 200 } });
    await r.step(good());
    await r.step(bad());
    expect(state(r).state).toBe('rolled_back');
    await r.controller.resume('r', { who: 'ops' });
    expect(state(r).state).toBe('shadow');
    const deadline = Date.now() + 5_000;
    while (r.controller.webhookFailures === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(r.controller.webhookFailures).toBe(1);
    hanging.closeAllConnections();
  });

  it('bounds rollback webhooks in flight: past MAX_WEBHOOKS_IN_FLIGHT they are dropped and counted, not queued', async () => {
    let arrived = 0;
    const hanging = http.createServer(() => {
      arrived++;
    });
    servers.push(hanging);
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    const webhook = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/`;
    const r = await rig({ settings: { webhook, webhookTimeoutMs: 30_000 } });
    // Each rollback moves the route (a rollback of a rolled-back route announces nothing).
    for (let i = 0; i < MAX_WEBHOOKS_IN_FLIGHT + 3; i++) {
      await r.controller.promote('r', { who: 'ops' });
      await r.controller.rollback('r', { who: 'ops' });
    }
    expect(r.controller.webhooksDropped).toBe(3);
    const deadline = Date.now() + 5_000;
    while (arrived < MAX_WEBHOOKS_IN_FLIGHT && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(arrived).toBe(MAX_WEBHOOKS_IN_FLIGHT);
    hanging.closeAllConnections();
  });

  it('rolls back on a slower new backend (latency gate) and on new errors', async () => {
    const r = await rig({ settings: { holdIntervals: 1, failureThreshold: 2 }, routes: [{ name: 'slow' }, { name: 'errs' }, { name: 'both' }] });
    await r.step((t) => {
      t.add('slow', 100);
      t.add('errs', 100);
      t.add('both', 100);
    });
    for (let i = 0; i < 2; i++) {
      await r.step((t) => {
        t.add('slow', 100, { newSlowdown: 2 });
        t.add('errs', 100, { newErrorShare: 0.2 });
        // A 5xx from new is also a status mismatch: the rollback is named after the cause, the errors.
        t.add('both', 100, { newErrorShare: 0.2, mismatchShare: 0.2 });
      });
    }
    expect(state(r, 'slow').state).toBe('rolled_back');
    expect(state(r, 'errs').state).toBe('rolled_back');
    expect(state(r, 'both').state).toBe('rolled_back');
    const text = await r.scrape();
    expect(text).toContain('cutover_rollbacks_total{route="slow",reason="maxLatencyRatio"} 1');
    expect(text).toContain('cutover_rollbacks_total{route="errs",reason="maxErrorRateIncrease"} 1');
    expect(text).toContain('cutover_rollbacks_total{route="both",reason="maxErrorRateIncrease"} 1');
  });
});

describe('controller: sequencing and levers', () => {
  it('a route with after starts shifting only when those are complete', async () => {
    const r = await rig({ settings: { holdIntervals: 1 }, routes: [{ name: 'a' }, { name: 'b', after: ['a'] }] });
    const both = (t: TestEvidence) => {
      t.add('a', 100);
      t.add('b', 100);
    };
    await r.step(both);
    expect(state(r, 'a').weight).toBe(10);
    expect(state(r, 'b')).toMatchObject({ weight: 0, step: 0, reason: 'waiting for a to complete' });
    expect(r.controller.view().routes.find((v) => v.route === 'b')?.waitingFor).toEqual(['a']);
    await r.step(both);
    await r.step(both);
    expect(state(r, 'a').state).toBe('complete');
    // Checked after a in the same round, b starts as soon as a is complete.
    expect(state(r, 'b')).toMatchObject({ weight: 10, step: 1 });
    expect((await r.audit.read()).filter((e) => e.route === 'b').map((e) => e.action)).toEqual(['advance']);
  });

  it('every lever changes the state and is audited with who and why', async () => {
    const r = await rig({ steps: [0, 1, 5, 25, 50, 100] });
    const promotedAt = r.clock.t;
    await r.controller.promote('r', { who: 'alice', reason: 'canary looks fine' });
    expect(state(r)).toMatchObject({ step: 1, weight: 1, state: 'shifting' });
    await r.controller.pause('r', { who: 'bob' });
    expect(state(r)).toMatchObject({ paused: true, state: 'paused', weight: 1 });
    for (let i = 0; i < 3; i++) await r.step(good());
    expect(state(r).weight).toBe(1);
    await r.controller.resume('r', { who: 'bob', reason: 'go on' });
    expect(state(r)).toMatchObject({ paused: false, state: 'shifting', since: r.clock.t });
    await r.controller.setWeight('r', 33.33, { who: 'carol' });
    expect(state(r)).toMatchObject({ weight: 33.33, step: 3, paused: true, state: 'paused' });
    await expect(r.controller.setWeight('r', 101, { who: 'carol' })).rejects.toMatchObject({ code: 'BAD_WEIGHT', status: 400 });
    // Finer than the split's 0.01 is refused, not rounded away unseen (0.004 would be 0 %).
    for (const fine of [0.004, 33.333]) await expect(r.controller.setWeight('r', fine, { who: 'carol' })).rejects.toMatchObject({ code: 'BAD_WEIGHT', status: 400 });
    expect(state(r).weight).toBe(33.33);
    await r.controller.promote('r', { who: 'alice', full: true });
    expect(state(r)).toMatchObject({ weight: 100, step: 5, paused: false, state: 'shifting' });
    await r.controller.rollback('r', { who: 'dave', reason: 'customer report' });
    expect(state(r)).toMatchObject({ weight: 0, step: 0, state: 'rolled_back', paused: true });
    expect(await r.scrape()).toContain('cutover_rollbacks_total{route="r",reason="manual"} 1');
    await expect(r.controller.pause('nope', { who: 'x' })).rejects.toBeInstanceOf(LeverError);
    expect(r.weights).toEqual([
      ['r', 1],
      ['r', 33.33],
      ['r', 100],
      ['r', 0],
    ]);
    await r.audit.flush();
    const lines = readFileSync(r.auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { who: string; action: string; why: string; when: string });
    expect(lines.map((e) => `${e.who}:${e.action}`)).toEqual(['alice:promote', 'bob:pause', 'bob:resume', 'carol:weight', 'alice:promote', 'dave:rollback']);
    expect(lines[0].why).toBe('canary looks fine');
    expect(lines[1].why).toBe('pause by bob');
    expect(lines[0].when).toBe(new Date(promotedAt).toISOString());
    expect((await r.audit.read(2)).map((e) => e.action)).toEqual(['promote', 'rollback']);
  });

  it('bypass sends every route to legacy and pauses the controller; off restores the weights', async () => {
    const r = await rig({ settings: { holdIntervals: 1 }, routes: [{ name: 'a', weight: 25 }, { name: 'b' }], steps: [0, 10, 25, 50, 100] });
    expect(r.controller.weightOf('a')).toBe(25);
    await r.controller.bypass(true, { who: 'ops', reason: 'incident 42' });
    expect(r.store.snapshot().global).toMatchObject({ bypass: true, changedBy: 'ops', reason: 'incident 42' });
    expect(r.controller.weightOf('a')).toBe(0);
    expect(r.weights).toEqual([
      ['a', 0],
      ['b', 0],
    ]);
    for (let i = 0; i < 3; i++) {
      await r.step((t) => {
        t.add('a', 100);
        t.add('b', 100);
      });
    }
    expect(state(r, 'a')).toMatchObject({ weight: 25, step: 2 });
    expect(state(r, 'b')).toMatchObject({ weight: 0, step: 0 });
    await r.controller.bypass(false, { who: 'ops' });
    expect(r.controller.weightOf('a')).toBe(25);
    expect(r.weights.slice(2)).toEqual([
      ['a', 25],
      ['b', 0],
    ]);
    expect((await r.audit.read()).map((e) => `${e.route}:${e.action}:${e.why}`)).toEqual(['*:bypass-on:incident 42', '*:bypass-off:bypass off']);
  });

  it('bypass on takes effect even when the store is wedged', async () => {
    /** A store whose disk never answers (the writes hang). */
    class WedgedStore extends MemoryStore {
      wedged = false;
      protected override persist(): Promise<void> {
        return this.wedged ? new Promise(() => {}) : Promise.resolve();
      }
    }
    const store = new WedgedStore();
    const r = await rig({ store, routes: [{ name: 'a', weight: 25 }], steps: [0, 25, 100] });
    store.wedged = true;
    const pending = r.controller.bypass(true, { who: 'ops', reason: 'store is stuck' });
    expect(r.weights).toEqual([['a', 0]]);
    expect(r.controller.weightOf('a')).toBe(0);
    expect(r.controller.view()).toMatchObject({ bypass: { bypass: true }, routes: [{ route: 'a', weight: 25, effectiveWeight: 0 }] });
    // The write itself stays queued behind the wedged disk; the proxy did not wait for it.
    expect(store.snapshot().global.bypass).toBe(false);
    void pending;
  });

  it('a new controller over the same store resumes at the same step and weight (the store wins over routes[].weight)', async () => {
    const store = new MemoryStore();
    const first = await rig({ store, settings: { holdIntervals: 1 } });
    await first.step(good());
    expect(state(first)).toMatchObject({ step: 1, weight: 10 });
    const second = await rig({ store, routes: [{ name: 'r', weight: 50 }] });
    expect(second.controller.weightOf('r')).toBe(10);
    expect(second.controller.view().routes[0]).toMatchObject({ step: 1, weight: 10, state: 'shifting' });
    // A route the store does not know is seeded from its configured weight.
    const third = await rig({ store, routes: [{ name: 'r' }, { name: 'fresh', weight: 25 }], steps: [0, 10, 25, 100] });
    expect(third.controller.view().routes[1]).toMatchObject({ route: 'fresh', weight: 25, step: 2, state: 'shifting' });
  });

  it('start() checks on the injected timer', async () => {
    const clock = { t: 1_000 };
    let scheduled: { fn: () => void; ms: number } | undefined;
    const traffic = new TestEvidence(() => clock.t);
    const store = new MemoryStore();
    const controller = new Controller(
      { steps: [0, 10, 100], intervalMs: 5_000, holdIntervals: 1, failureThreshold: 3, mode: 'auto' },
      [{ name: 'r', weight: 0, after: [], gates: GATES }],
      {
        store,
        evidence: traffic,
        audit: new AuditLog(),
        now: () => clock.t,
        schedule: (fn, ms) => {
          scheduled = { fn, ms };
          return () => (scheduled = undefined);
        },
      },
    );
    await controller.init();
    controller.start();
    expect(scheduled?.ms).toBe(5_000);
    traffic.add('r', 100);
    clock.t += 5_000;
    scheduled?.fn();
    const deadline = Date.now() + 5_000;
    while (store.snapshot().routes.r.weight === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(store.snapshot().routes.r.weight).toBe(10);
    controller.stop();
    expect(scheduled).toBeUndefined();
  });
});

describe('controller: found by review', () => {
  it('steps changed under a route (reload or edited config): back in line at the step of its live weight, never complete at 25 %', async () => {
    const store = new MemoryStore();
    const first = await rig({ store, steps: [0, 1, 5, 25, 50, 100], settings: { holdIntervals: 1 } });
    for (let i = 0; i < 3; i++) await first.step(good());
    expect(state(first)).toMatchObject({ step: 3, weight: 25 });
    // Step 3 of the new list is 100: read as it was, two passing checks made the route "complete" at 25 %.
    const second = await rig({ store, steps: [0, 10, 50, 100], settings: { holdIntervals: 1 } });
    expect(state(second)).toMatchObject({ step: 1, weight: 25, state: 'shifting', passes: 0 });
    second.clock.t = first.clock.t;
    await second.step(good());
    expect(state(second)).toMatchObject({ step: 2, weight: 50, state: 'shifting' });
    // A weight set by hand between two steps is in line already: nothing is rewritten.
    await second.controller.setWeight('r', 33, { who: 'ops' });
    const before = state(second);
    const third = await rig({ store, steps: [0, 10, 50, 100] });
    expect(state(third)).toBe(before);
  });

  it('two reloads close together: the first one\'s init stops, so a route the second removed gets no weight and no gauge', async () => {
    // A store whose writes wait until released: the first reload's init waits on its new route.
    class HeldStore extends MemoryStore {
      held: (() => void)[] = [];
      hold = false;
      override updateRoute(...args: Parameters<MemoryStore['updateRoute']>): ReturnType<MemoryStore['updateRoute']> {
        if (!this.hold) return super.updateRoute(...args);
        return new Promise<void>((resolve) => this.held.push(resolve)).then(() => super.updateRoute(...args));
      }
    }
    const store = new HeldStore();
    const r = await rig({ store });
    const settings: ControllerSettings = { steps: [0, 10, 100], intervalMs: INTERVAL, holdIntervals: 2, failureThreshold: 3, mode: 'auto' };
    const base = { name: 'r', weight: 0, after: [], gates: GATES };
    store.hold = true;
    const first = r.controller.configure(settings, [base, { ...base, name: 'ghost', weight: 10 }]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(store.held).toHaveLength(1);
    const second = r.controller.configure(settings, [base]);
    store.hold = false;
    for (const release of store.held) release();
    await Promise.all([first, second]);
    expect(r.weights.map(([route]) => route)).not.toContain('ghost');
    expect(await r.scrape()).not.toContain('route="ghost"');
    expect(r.weights.map(([route]) => route)).toContain('r');
  });

  it('bypass on with a store that cannot be written: in effect, refused as not stored, audited, and written at the next check', async () => {
    const store = new FailingGlobalStore();
    const r = await rig({ store, routes: [{ weight: 10 }] });
    store.failing = true;
    await expect(r.controller.bypass(true, { who: 'ops', reason: 'incident' })).rejects.toThrow(/Bypass is ON in this process, but the state store could not be written/);
    expect(r.controller.bypassed()).toBe(true);
    expect(r.weights).toEqual([['r', 0]]);
    expect(store.snapshot().global.bypass).toBe(false);
    await r.audit.flush();
    expect((await r.audit.read()).map((e) => [e.action, e.why])).toEqual([['bypass-on', 'incident (not yet in the state store)']]);
    // The store is back: the next check writes it, so a restart keeps it.
    store.failing = false;
    await r.step();
    expect(store.snapshot().global).toMatchObject({ bypass: true, changedBy: 'ops', reason: 'incident' });
    expect(state(r).weight).toBe(10);
  });

  it('bypass on with a full disk: kept in the rescue file, so a restarted store starts bypassed', async () => {
    const { path, store } = await fullDiskStore();
    const r = await rig({ store, routes: [{ weight: 10 }] });
    store.full = true;
    await expect(r.controller.bypass(true, { who: 'ops', reason: 'incident' })).rejects.toThrow(
      `Bypass is ON in this process, but the state file ${path} could not be written (ENOSPC): it is kept in the rescue file ${path}.rescue, so a restart keeps it; cutover writes it at each check.`,
    );
    expect(r.controller.bypassed()).toBe(true);
    expect(r.weights).toEqual([['r', 0]]);
    await r.audit.flush();
    expect((await r.audit.read()).map((e) => [e.action, e.why])).toEqual([['bypass-on', `incident (not yet in the state store; kept in the rescue file ${path}.rescue)`]]);
    // Turning it off waits for the store, as before: still on.
    await expect(r.controller.bypass(false, { who: 'ops' })).rejects.toThrow(/ENOSPC/);
    expect(r.controller.bypassed()).toBe(true);
    await store.close();
    const restarted = new FileStore(path);
    expect((await restarted.load()).global).toMatchObject({ bypass: true, changedBy: 'ops', reason: 'incident' });
    await restarted.close();
  });

  it('a check retrying an unsaved bypass-on never lands after a later bypass-off (found by review)', async () => {
    class FlakyStore extends MemoryStore {
      failing = false;
      hold: Promise<void> | null = null;
      protected override async persist(): Promise<void> {
        if (this.failing) throw new Error('EROFS');
        if (this.hold) await this.hold;
      }
    }
    const store = new FlakyStore();
    const r = await rig({ store, routes: [{ weight: 10 }] });
    store.failing = true;
    await expect(r.controller.bypass(true, { who: 'ops', reason: 'incident' })).rejects.toThrow(/not stored|could not be written/);
    store.failing = false;
    let release!: () => void;
    store.hold = new Promise<void>((resolve) => (release = resolve));
    const off = r.controller.bypass(false, { who: 'ops', reason: 'incident over' });
    // The interval fires while the off is being written.
    const tick = r.controller.tick();
    store.hold = null;
    release();
    expect((await off).bypass).toBe(false);
    await tick;
    expect(store.snapshot().global.bypass).toBe(false);
    expect(r.controller.bypassed()).toBe(false);
  });

  it('a repeated or failed bypass call keeps an unsaved bypass-on pending: the store gets it once it recovers (found by review)', async () => {
    for (const again of ['on', 'off'] as const) {
      const store = new FailingGlobalStore();
      const r = await rig({ store, routes: [{ weight: 10 }] });
      store.failing = true;
      await expect(r.controller.bypass(true, { who: 'ops', reason: 'incident' })).rejects.toThrow(/not stored|could not be written/);
      // The operator tries again (on), or tries to end it (off), while the store still fails.
      await expect(r.controller.bypass(again === 'on', { who: 'ops', reason: again })).rejects.toThrow();
      expect(r.controller.bypassed(), again).toBe(true);
      store.failing = false;
      await r.step();
      expect(store.snapshot().global.bypass, again).toBe(true);
    }
  });

  it('the readiness report never shows the gates of the step before the last weight change', async () => {
    const r = await rig({ settings: { holdIntervals: 1 } });
    await r.step(good());
    await r.step(good());
    // Just moved to 100 %: the passing check that moved it judged 10 %, not 100 %.
    expect(state(r)).toMatchObject({ weight: 100, state: 'shifting' });
    const input = await r.controller.reportInput({ configHash: 'h' });
    expect(input.routes[0].gates).toEqual([]);
    expect(buildReport(input).verdict).toBe('NOT READY');
    await r.step(good());
    expect((await r.controller.reportInput({ configHash: 'h' })).routes[0].gates.length).toBeGreaterThan(0);
  });

  it('a route waiting at a pause step, with clients on new, still rolls back on failing checks', async () => {
    const r = await rig({ steps: [0, 10, { pause: true }, 100], settings: { holdIntervals: 1 } });
    await r.step(good());
    await r.step(good());
    expect(state(r)).toMatchObject({ step: 2, weight: 10, state: 'paused' });
    for (let i = 0; i < 3; i++) await r.step(bad());
    expect(state(r)).toMatchObject({ step: 0, weight: 0, state: 'rolled_back' });
    expect((await r.audit.read()).map((e) => `${e.who}:${e.action}`)).toContain('controller:rollback');
  });

  it('rolls back to 0 % even when the first step is above 0', async () => {
    const r = await rig({ steps: [5, 50, 100], routes: [{ weight: 50 }] });
    for (let i = 0; i < 3; i++) await r.step(bad());
    expect(state(r)).toMatchObject({ weight: 0, state: 'rolled_back' });
    expect(r.controller.weightOf('r')).toBe(0);
    await r.controller.setWeight('r', 50, { who: 'ops' });
    await r.controller.rollback('r', { who: 'ops' });
    expect(r.controller.weightOf('r')).toBe(0);
    // From 0 % the next step is the first one (5 %), by promote and by the controller alike.
    await r.controller.promote('r', { who: 'ops' });
    expect(state(r)).toMatchObject({ step: 0, weight: 5 });
    await r.controller.promote('r', { who: 'ops' });
    expect(state(r)).toMatchObject({ step: 1, weight: 50 });
    // Promote never lowers a hand-set weight: onto a pause step the route keeps its 30 %.
    const paused = await rig({ steps: [5, { pause: true }, 50, 100] });
    await paused.controller.setWeight('r', 30, { who: 'ops' });
    await paused.controller.promote('r', { who: 'ops' });
    expect(state(paused)).toMatchObject({ step: 1, weight: 30, state: 'paused' });
    // A restart over the same store keeps it there (it was moved off the pause step, idle and
    // paused, with no rollback left to protect its 30 %).
    const restarted = await rig({ steps: [5, { pause: true }, 50, 100], store: paused.store });
    expect(state(restarted)).toMatchObject({ step: 1, weight: 30, state: 'paused' });
    await paused.controller.promote('r', { who: 'ops' });
    expect(state(paused)).toMatchObject({ step: 2, weight: 50 });
    const auto = await rig({ steps: [5, 50, 100] });
    expect(state(auto)).toMatchObject({ step: 0, weight: 0, state: 'shadow' });
    await auto.step(good());
    await auto.step(good());
    expect(state(auto)).toMatchObject({ step: 0, weight: 5, state: 'shifting' });
    await auto.step(good());
    await auto.step(good());
    expect(state(auto)).toMatchObject({ step: 1, weight: 50 });
  });

  it('after a bypass, a route judges only what it sees from then on: no advance on evidence from before the incident', async () => {
    const r = await rig({ steps: [0, 10, 50, 100], routes: [{ weight: 10 }], settings: { holdIntervals: 2 } });
    await r.step(good());
    expect(state(r).passes).toBe(1);
    await r.controller.bypass(true, { who: 'ops' });
    await r.step();
    await r.controller.bypass(false, { who: 'ops' });
    expect(state(r)).toMatchObject({ weight: 10, passes: 0 });
    // No traffic since: no evidence, no advance.
    await r.step();
    expect(state(r)).toMatchObject({ weight: 10, step: 1 });
  });

  it("one route whose check throws does not keep the others from being judged; audit entries name the state the change was made from", async () => {
    const r = await rig({ routes: [{ name: 'a', weight: 10 }, { name: 'b', weight: 10 }] });
    // A hand-edited store entry without its history: its check throws.
    await r.store.updateRoute('a', () => state(r, 'a'), (c) => ({ ...c, history: undefined as unknown as [] }));
    for (let i = 0; i < 3; i++) await r.step((t) => t.add('b', 100, { mismatchShare: 0.3 }));
    expect(state(r, 'b')).toMatchObject({ weight: 0, state: 'rolled_back' });
    const rollback = (await r.audit.read()).find((e) => e.route === 'b' && e.action === 'rollback')!;
    expect(rollback.from).toMatchObject({ weight: 10 });
  });
});

describe('audit log bounds', () => {
  const entry = (i: number) => ({ when: new Date(i).toISOString(), who: 'test', route: 'r', action: 'weight', from: null, to: null, why: `#${i}` });

  it('without a file: reads at most AUDIT_MEMORY entries, the latest ones, oldest first', async () => {
    const audit = new AuditLog();
    for (let i = 0; i < AUDIT_MEMORY + 5; i++) await audit.append(entry(i));
    const read = await audit.read(AUDIT_MEMORY + 50);
    expect(read).toHaveLength(AUDIT_MEMORY);
    expect(read[0].why).toBe('#5');
    expect(read.at(-1)?.why).toBe(`#${AUDIT_MEMORY + 4}`);
    expect((await audit.read(3)).map((e) => e.why)).toEqual([`#${AUDIT_MEMORY + 2}`, `#${AUDIT_MEMORY + 3}`, `#${AUDIT_MEMORY + 4}`]);
  });

  it('reads the latest entries from the file, at most AUDIT_MEMORY', async () => {
    const audit = new AuditLog(join(mkdtempSync(join(tmpdir(), 'cutover-audit-')), 'audit.jsonl'));
    for (let i = 0; i < AUDIT_MEMORY + 5; i++) void audit.append(entry(i));
    await audit.flush();
    const read = await audit.read(AUDIT_MEMORY + 50);
    expect(read).toHaveLength(AUDIT_MEMORY);
    expect(read.at(-1)?.why).toBe(`#${AUDIT_MEMORY + 4}`);
  });

  it('a torn last line left by a crash mid-append costs only itself: the next entry starts a line of its own', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'cutover-audit-')), 'audit.jsonl');
    writeFileSync(path, `${JSON.stringify(entry(1))}\n${JSON.stringify(entry(2)).slice(0, 30)}`);
    const audit = new AuditLog(path);
    await audit.append(entry(3));
    await audit.append(entry(4));
    expect((await audit.read()).map((e) => e.why)).toEqual(['#1', '#3', '#4']);
    // The file replaced while running by one ending in a torn line (a restore): the same holds.
    writeFileSync(path, `${JSON.stringify(entry(5))}\n${JSON.stringify(entry(6)).slice(0, 30)}`);
    await audit.append(entry(7));
    expect((await audit.read()).map((e) => e.why)).toEqual(['#5', '#7']);
  });

  it('a file that cannot be written or read: the lever is not lost from the log, and reading it never fails', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cutover-audit-'));
    const path = join(dir, 'audit.jsonl');
    const errors: string[] = [];
    const audit = new AuditLog(path, (err) => errors.push(err.message));
    await audit.append(entry(1));
    // The file turns into a directory: appends fail, and so do reads.
    rmSync(path);
    mkdirSync(path);
    await audit.append(entry(2));
    expect(audit.failedWrites).toBe(1);
    expect(errors).toHaveLength(1);
    expect((await audit.read()).map((e) => e.why)).toEqual(['#1', '#2']);
    // The file is back with what it had: the entry it missed is shown in its place.
    rmSync(path, { recursive: true });
    writeFileSync(path, `${JSON.stringify(entry(1))}\n`);
    await audit.append(entry(3));
    expect((await audit.read()).map((e) => e.why)).toEqual(['#1', '#2', '#3']);
  });
});

describe('controller: a state store that cannot be written', () => {
  it('still counts failing checks and rolls back (in memory, saved once it can be), but never steps forward unsaved', async () => {
    const store = new UnwritableStore();
    const r = await atTenPercent({ store });
    store.failing = true;
    // Good evidence: the step forward is not taken while it cannot be saved.
    await r.step(good()).catch(() => undefined);
    await r.step(good()).catch(() => undefined);
    expect(state(r)).toMatchObject({ step: 1, weight: 10 });
    // new fails: three failing checks roll back, and clients leave new now.
    for (let i = 0; i < 3; i++) await r.step(bad());
    expect(state(r)).toMatchObject({ step: 0, weight: 0, state: 'rolled_back' });
    expect(r.weights.at(-1)).toEqual(['r', 0]);
    const text = await r.scrape();
    expect(text).toContain('cutover_rollbacks_total{route="r",reason="maxMismatchRate"} 1');
    expect(text).toMatch(/^cutover_gate_status\{route="r",gate="maxMismatchRate"\} 0$/m);
  });
});

describe('controller: bypass turned on while a check waits', () => {
  it('stops the step forward the check was about to take (its evidence is from before the incident)', async () => {
    const store = new HeldWritesStore();
    const r = await atTenPercent({ store });
    good()(r.traffic);
    r.clock.t += INTERVAL;
    await checkBehindHeldWrite(r, store, () => r.controller.bypass(true, { who: 'ops', reason: 'incident' }));
    expect(state(r)).toMatchObject({ step: 1, weight: 10 });
    expect(r.controller.weightOf('r')).toBe(0);
  });
});

describe('controller: a route removed by a reload while a check runs', () => {
  it('does not get its gate gauges back from that check (they would stay exported for good)', async () => {
    const store = new HeldWritesStore();
    const base = { name: 'r', weight: 0, after: [], gates: GATES };
    const r = await rig({ store, routes: [base, { ...base, name: 'gone' }] });
    const settings: ControllerSettings = { steps: [0, 10, 100], intervalMs: INTERVAL, holdIntervals: 2, failureThreshold: 3, mode: 'auto' };
    good('gone')(r.traffic);
    r.clock.t += INTERVAL;
    // The reload: the controller takes the new routes, the telemetry forgets the removed one.
    await checkBehindHeldWrite(r, store, () => {
      const reload = r.controller.configure(settings, [base]);
      r.telemetry.forgetRoute('gone');
      return reload;
    });
    expect(await r.scrape()).not.toMatch(/cutover_gate_status\{route="gone"/);
  });
});

describe('controller: a reload that puts a pause step where a route stands', () => {
  it('realigns the route, which then waits there as paused for a person (it sat there "shifting" for good)', async () => {
    const r = await rig({ steps: [0, 10, 50, 100], settings: { holdIntervals: 1 } });
    await r.step(good());
    await r.step(good());
    expect(state(r)).toMatchObject({ step: 2, weight: 50, state: 'shifting' });
    const settings: ControllerSettings = { steps: [0, 10, { pause: true }, 100], intervalMs: INTERVAL, holdIntervals: 1, failureThreshold: 3, mode: 'auto' };
    await r.controller.configure(settings, [{ name: 'r', weight: 0, after: [], gates: GATES }]);
    for (let i = 0; i < 3; i++) await r.step(good());
    expect(state(r)).toMatchObject({ state: 'paused', paused: true });
  });
});

describe('controller: its own rollback on a full disk', () => {
  it('is kept in the rescue file, so a restarted store has the route rolled back (found by review)', async () => {
    const { path, store } = await fullDiskStore();
    const r = await atTenPercent({ store });
    store.full = true;
    for (let i = 0; i < 3; i++) await r.step(bad()).catch(() => undefined);
    expect(state(r)).toMatchObject({ weight: 0, state: 'rolled_back' });
    await store.close();
    const restarted = new FileStore(path);
    expect((await restarted.load()).routes.r).toMatchObject({ weight: 0, state: 'rolled_back' });
    await restarted.close();
  });
});

describe('controller: a step forward refused by a store that cannot be written', () => {
  it('still publishes what the check found', async () => {
    const store = new UnwritableStore();
    const r = await rig({ store, settings: { holdIntervals: 1 } });
    await r.step(good());
    await r.step(() => undefined);
    expect(await r.scrape()).toMatch(/^cutover_gate_status\{route="r",gate="minComparisons"\} -1$/m);
    store.failing = true;
    await r.step(good()).catch(() => undefined);
    expect(await r.scrape()).toMatch(/^cutover_gate_status\{route="r",gate="minComparisons"\} 1$/m);
  });
});

describe('controller: the rollback lever with a state store that cannot be written', () => {
  it('takes clients off new at once, audits and counts it, says it is not saved, and the next write saves it', async () => {
    // The real file store, its directory turned into a plain file: every write fails, even as root.
    const dir = mkdtempSync(join(tmpdir(), 'cutover-unwritable-'));
    const stateDir = join(dir, 'state');
    const store = new FileStore(join(stateDir, 'cutover.json'));
    await store.load();
    const r = await atTenPercent({ store });
    renameSync(stateDir, join(dir, 'moved'));
    writeFileSync(stateDir, 'not a directory');
    const err = await r.controller.rollback('r', { who: 'ops', reason: 'disk full, new misbehaving' }).then(
      () => null,
      (e: unknown) => e as { code?: string; message: string },
    );
    expect(err?.code).toBe('CUTOVER_STATE_WRITE_FAILED');
    expect(err?.message).toMatch(/^r is rolled_back at 0% in this process, but the state file .*cutover\.json could not be written \(E[A-Z]+\): a restart would lose it/);
    expect(err?.message).not.toContain('not applied');
    expect(store.up()).toBe(false);
    expect(state(r)).toMatchObject({ step: 0, weight: 0, state: 'rolled_back' });
    expect(r.weights.at(-1)).toEqual(['r', 0]);
    expect(await r.scrape()).toContain('cutover_rollbacks_total{route="r",reason="manual"} 1');
    const audit = await r.audit.read();
    expect(audit.at(-1)).toMatchObject({ who: 'ops', action: 'rollback', why: 'disk full, new misbehaving (not yet in the state store)' });
    // The disk comes back: the next check's write carries the rollback, and the route stays there.
    rmSync(stateDir);
    renameSync(join(dir, 'moved'), stateDir);
    await r.step(good());
    expect(store.up()).toBe(true);
    expect(state(r)).toMatchObject({ step: 0, weight: 0, state: 'rolled_back' });
    expect(JSON.parse(readFileSync(join(stateDir, 'cutover.json'), 'utf8')).routes.r).toMatchObject({ weight: 0, state: 'rolled_back' });
  });

  it('on a full disk: keeps the rollback in the rescue file, says a restart keeps it, and a restarted store has it', async () => {
    const { path, store } = await fullDiskStore();
    const r = await atTenPercent({ store });
    store.full = true;
    const err = await r.controller.rollback('r', { who: 'ops', reason: 'new misbehaving' }).then(
      () => null,
      (e: unknown) => e as { code?: string; message: string },
    );
    expect(err?.code).toBe('CUTOVER_STATE_WRITE_FAILED');
    expect(err?.message).toBe(`r is rolled_back at 0% in this process, but the state file ${path} could not be written (ENOSPC): it is kept in the rescue file ${path}.rescue, so a restart keeps it; the store's next write (at the next check) saves it.`);
    expect((await r.audit.read()).at(-1)).toMatchObject({ who: 'ops', action: 'rollback', why: `new misbehaving (not yet in the state store; kept in the rescue file ${path}.rescue)` });
    expect(r.weights.at(-1)).toEqual(['r', 0]);
    await store.close();
    const restarted = new FileStore(path);
    expect((await restarted.load()).routes.r).toMatchObject({ weight: 0, step: 0, state: 'rolled_back' });
    await restarted.close();
  });

  it('counts and announces a rollback once: pressing it again on a rolled-back route moves nothing', async () => {
    const events: RollbackEvent[] = [];
    const hook = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        events.push(JSON.parse(body) as RollbackEvent);
        res.end();
      });
    });
    servers.push(hook);
    await new Promise<void>((resolve) => hook.listen(0, '127.0.0.1', resolve));
    const r = await atTenPercent({ settings: { webhook: `http://127.0.0.1:${(hook.address() as AddressInfo).port}/` } });
    for (let i = 0; i < 3; i++) await r.controller.rollback('r', { who: 'ops' });
    expect(await r.scrape()).toContain('cutover_rollbacks_total{route="r",reason="manual"} 1');
    const deadline = Date.now() + 5_000;
    while (events.length < 1 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(events.map((e) => `${e.from.weight}->${e.to.weight}`)).toEqual(['10->0']);
    // Every press is still in the audit log: who pressed what, when.
    expect((await r.audit.read()).filter((e) => e.action === 'rollback')).toHaveLength(3);
  });

  it('leaves the other levers as they were: a promote that cannot be saved changes nothing', async () => {
    const store = new UnwritableStore();
    const r = await rig({ store });
    store.failing = true;
    await expect(r.controller.promote('r', { who: 'ops' })).rejects.toThrow('EROFS');
    expect(state(r)).toMatchObject({ step: 0, weight: 0 });
    expect(r.weights).toEqual([]);
  });
});
