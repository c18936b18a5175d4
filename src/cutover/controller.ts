/**
 * The cutover controller: walks each route through `cutover.steps`, judging the evidence gathered
 * since the route's last weight change every `interval`; advances after `holdIntervals` passing
 * checks in a row, rolls back to step 0 after `failureThreshold` failing ones, and holds on no data.
 * People pull the same levers (promote, pause, resume, rollback, weight, bypass); every change, by
 * either, goes through the state store and into the audit log.
 *
 * The clock and the timer are injected, so tests drive it without real time. State lives only in the
 * store (keyed by route name): a restart resumes at the same step and weight.
 */
import { request } from 'undici';
import { CutoverError, storeProblem } from '../errors.js';
import type { Config } from '../config/load.js';
import { DEFAULT_STEPS, isSplitPercent } from '../config/schema.js';
import type { CutoverMetrics } from '../telemetry/metrics.js';
import { AUDIT_MEMORY, type AuditEntry, type AuditLog, type AuditPosition } from './audit.js';
import type { ReportFieldInput, ReportInput, ReportRollback, ReportStraggler } from './report.js';
import { check as runCheck } from './gates.js';
import type { GateCheck, GateResult, GateThresholds, GlobalState, EvidenceSource, RouteState, RouteStateName, StateStore } from './types.js';

/** A step of `cutover.steps`: percent to new, or a pause that waits for a person. */
export type Step = number | { pause: true };

export interface ControllerSettings {
  steps: Step[];
  intervalMs: number;
  holdIntervals: number;
  failureThreshold: number;
  mode: 'auto' | 'observe';
  /** Rollbacks are POSTed here as JSON. */
  webhook?: string;
  webhookTimeoutMs?: number;
}

export interface ControllerRoute {
  name: string;
  /** Seeds a route the store does not know yet; after that the store's weight wins. */
  weight: number;
  after: string[];
  gates: GateThresholds;
}

/** The subset of a pino logger the controller uses. */
export interface ControllerLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface ControllerDeps {
  store: StateStore;
  evidence: EvidenceSource;
  audit: AuditLog;
  now: () => number;
  /** Runs `fn` every `ms`; returns a cancel function. Defaults to setInterval (unref'd). */
  schedule?: (fn: () => void, ms: number) => () => void;
  metrics?: CutoverMetrics;
  logger?: ControllerLogger;
}

/** What the proxy needs to apply: the effective weight of a route (0 while bypass is on). */
export type WeightListener = (route: string, weight: number) => void;

/** The body POSTed to `cutover.webhook` on a rollback. */
export interface RollbackEvent {
  event: 'rollback';
  route: string;
  /** The failing gate, or `manual`. */
  reason: string;
  who: string;
  at: string;
  from: { step: number; weight: number };
  to: { step: number; weight: number };
  gates: GateResult[];
  detail: string;
}

/** Checks kept per route in the store. */
export const HISTORY_LIMIT = 10;
/** Webhook POSTs in flight at once; more are dropped (and counted) rather than queued without bound. */
export const MAX_WEBHOOKS_IN_FLIGHT = 16;

export type LeverCode = 'UNKNOWN_ROUTE' | 'ALREADY_COMPLETE' | 'PAUSE_STEP' | 'BAD_WEIGHT';

/** A lever that cannot be pulled; `status` is the HTTP status the admin API answers with. */
export class LeverError extends CutoverError {
  constructor(
    code: LeverCode,
    message: string,
    readonly status: number,
  ) {
    super(code, message);
    this.name = 'LeverError';
  }
}

export interface LeverOptions {
  who: string;
  reason?: string;
}

export interface RouteView {
  route: string;
  state: RouteStateName;
  step: number;
  /** The step as configured: a percent, or "pause". */
  stepValue: number | 'pause';
  weight: number;
  /** What the proxy applies (0 while bypass is on). */
  effectiveWeight: number;
  paused: boolean;
  /** Evidence counts from this moment (epoch ms and ISO). */
  since: number;
  sinceIso: string;
  passes: number;
  failures: number;
  /** The latest check's gates: value beside threshold and verdict. */
  gates: GateResult[];
  checkedAt: string | null;
  verdict: GateCheck['verdict'] | null;
  /** Routes this one waits for (`after`) that are not complete yet. */
  waitingFor: string[];
  changedAt: string;
  changedBy: string;
  reason: string;
}

export interface ControllerView {
  mode: 'auto' | 'observe';
  bypass: GlobalState;
  steps: (number | 'pause')[];
  intervalMs: number;
  holdIntervals: number;
  failureThreshold: number;
  routes: RouteView[];
}

function isPause(step: Step | undefined): step is { pause: true } {
  return typeof step === 'object' && step !== null;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function position(s: RouteState): AuditPosition {
  return { weight: s.weight, step: s.step, state: s.state, paused: s.paused };
}

/** The audit's words for a change applied though the store could not take it, and where it was kept. */
function unsavedNote(keptIn: string | null): string {
  return keptIn === null ? 'not yet in the state store' : `not yet in the state store; kept in ${keptIn}`;
}

/** What a restart does to such a change. */
function afterRestart(keptIn: string | null): string {
  return keptIn === null ? 'a restart would lose it until the store can be written' : `it is kept in ${keptIn}, so a restart keeps it`;
}

export class Controller {
  private settings: ControllerSettings;
  private routes = new Map<string, ControllerRoute>();
  private readonly listeners: WeightListener[] = [];
  private cancel: (() => void) | undefined;
  private ticking: Promise<void> | undefined;
  private webhooksInFlight = 0;
  /** Bypass switched on in this process, possibly not yet in the store. */
  private bypassNow = false;
  /** A bypass-on the store could not take yet: written again at each check. */
  private bypassUnsaved: Pick<GlobalState, 'changedAt' | 'changedBy' | 'reason'> | null = null;
  /** Bypass calls so far: a check's retry that sees a newer one leaves the store to it. */
  private bypassCalls = 0;
  /** Bumped by every configure(): an init() a later reload overtook stops at its next await. */
  private generation = 0;
  /** Rollback webhooks dropped because too many were in flight. */
  webhooksDropped = 0;
  /** Rollback webhooks that failed (error, timeout, non-2xx). */
  webhookFailures = 0;

  constructor(
    settings: ControllerSettings,
    routes: readonly ControllerRoute[],
    private readonly deps: ControllerDeps,
  ) {
    this.settings = settings;
    for (const r of routes) this.routes.set(r.name, r);
  }

  // ---- set-up -------------------------------------------------------------------------------

  /**
   * Seeds routes the store does not know, publishes their metrics, and tells the weight listeners
   * every route's effective weight (so the proxy starts at the stored weights). Call before start.
   */
  async init(): Promise<void> {
    const generation = this.generation;
    for (const r of this.routes.values()) {
      const known = this.deps.store.snapshot().routes[r.name];
      let state = known ?? (await this.deps.store.updateRoute(r.name, () => this.seed(r), (s) => s));
      // Two reloads close together: the later one's init publishes its own routes. This one must not
      // go on with routes the later config may have removed (a ghost gauge, a weight for no route).
      if (generation !== this.generation) return;
      // Steps changed since this state was written (a reload, or a restart with an edited config):
      // a step number names a step of the old list. Back into line at the step of its live weight,
      // its passes forgotten, or the route could be "complete" at 25 % or wait at a pause step.
      if (this.misaligned(state)) {
        state = await this.deps.store.updateRoute(
          r.name,
          () => this.seed(r),
          (c) => (this.misaligned(c) ? { ...c, step: this.stepFor(c.weight), passes: 0, failures: 0, reason: `steps changed: now at step ${this.stepFor(c.weight)} with ${c.weight}%` } : c),
        );
        if (generation !== this.generation) return;
      }
      this.publish(state);
      this.deps.evidence.evidence(r.name, state.since);
      this.emit(r.name, this.bypassed() ? 0 : state.weight);
    }
  }

  /** A config reload: new settings and routes; routes the store knows keep their state. */
  async configure(settings: ControllerSettings, routes: readonly ControllerRoute[]): Promise<void> {
    const restart = this.cancel !== undefined && settings.intervalMs !== this.settings.intervalMs;
    this.generation++;
    this.settings = settings;
    this.routes = new Map(routes.map((r) => [r.name, r]));
    await this.init();
    if (restart) {
      this.stop();
      this.start();
    }
  }

  start(): void {
    if (this.cancel) return;
    const schedule =
      this.deps.schedule ??
      ((fn: () => void, ms: number) => {
        const t = setInterval(fn, ms);
        t.unref();
        return () => clearInterval(t);
      });
    this.cancel = schedule(() => {
      // A slow check (a slow store) never overlaps the next one.
      if (this.ticking) return;
      this.tick().catch((err: unknown) => this.deps.logger?.error({ err }, 'cutover controller check failed'));
    }, this.settings.intervalMs);
  }

  stop(): void {
    this.cancel?.();
    this.cancel = undefined;
  }

  /** Listens for effective weight changes (the proxy applies them to its routes). */
  onWeight(listener: WeightListener): () => void {
    this.listeners.push(listener);
    return () => {
      const i = this.listeners.indexOf(listener);
      if (i !== -1) this.listeners.splice(i, 1);
    };
  }

  /** The weight the proxy should apply to a route now (0 while bypass is on); undefined if unknown. */
  weightOf(route: string): number | undefined {
    const state = this.deps.store.snapshot().routes[route];
    if (state === undefined) return undefined;
    return this.bypassed() ? 0 : state.weight;
  }

  /** Whether the emergency bypass is on (here already, even before the store has it). */
  bypassed(): boolean {
    return this.bypassNow || this.deps.store.snapshot().global.bypass;
  }

  get mode(): 'auto' | 'observe' {
    return this.settings.mode;
  }

  routeNames(): string[] {
    return [...this.routes.keys()];
  }

  // ---- steps --------------------------------------------------------------------------------

  private get steps(): Step[] {
    return this.settings.steps.length ? this.settings.steps : DEFAULT_STEPS;
  }

  /** The weight at step `i`: a pause step keeps the weight of the step before it. */
  weightAt(i: number): number {
    for (let j = Math.min(i, this.steps.length - 1); j >= 0; j--) {
      const step = this.steps[j];
      if (!isPause(step)) return step;
    }
    return 0;
  }

  /** Whether a state's step is not a step of the current list at its weight. */
  private misaligned(s: RouteState): boolean {
    if (s.step >= this.steps.length) return true;
    // At a pause step the route keeps at least the weight of the step before it (more when a person
    // set more by hand before promoting onto it: `moved` keeps it), below the next step's; elsewhere
    // its step is the last one at or below its weight (a weight set by hand may lie between two).
    if (!isPause(this.steps[s.step])) return s.step !== this.stepFor(s.weight);
    if (s.weight === this.weightAt(s.step)) return false;
    // A weight above it is one a person set before promoting onto the pause step: only a route
    // waiting there (paused) got it that way, and only below the next step's.
    const after = this.steps.slice(s.step + 1).find((step): step is number => !isPause(step));
    return !(s.paused && s.weight > this.weightAt(s.step) && (after === undefined || s.weight < after));
  }

  /**
   * The step a route goes to next (past the last: it completes there). A route below its step's
   * percent goes to that step first: with steps starting above 0 (`[5, 50, 100]`), a route at 0 %
   * (seeded there, or rolled back) sits at step 0 and goes to 5 %, not 50 %.
   */
  private nextStep(s: RouteState): number {
    const at = Math.min(s.step, this.steps.length - 1);
    return !isPause(this.steps[at]) && s.weight < this.weightAt(at) ? at : s.step + 1;
  }

  /** The last percent step at or below `weight`. */
  stepFor(weight: number): number {
    let found = 0;
    this.steps.forEach((step, i) => {
      if (!isPause(step) && step <= weight) found = i;
    });
    return found;
  }

  private seed(r: ControllerRoute): RouteState {
    const now = this.deps.now();
    return {
      route: r.name,
      weight: r.weight,
      step: this.stepFor(r.weight),
      state: r.weight === 0 ? 'shadow' : 'shifting',
      paused: false,
      since: now,
      passes: 0,
      failures: 0,
      history: [],
      changedAt: now,
      changedBy: 'config',
      reason: 'seeded from routes[].weight',
    };
  }

  private routeConfig(route: string): ControllerRoute {
    const r = this.routes.get(route);
    if (r === undefined) throw new LeverError('UNKNOWN_ROUTE', `No route is named "${route}"; see the routes in the config.`, 404);
    return r;
  }

  private waitingFor(r: ControllerRoute): string[] {
    const routes = this.deps.store.snapshot().routes;
    return r.after.filter((dep) => routes[dep]?.state !== 'complete');
  }

  // ---- the check ----------------------------------------------------------------------------

  /** Writes a bypass-on the store could not take, while it is still wanted. Never throws. */
  private async saveUnsavedBypass(): Promise<void> {
    const unsaved = this.bypassUnsaved;
    const calls = this.bypassCalls;
    if (unsaved === null || !this.bypassNow) return;
    try {
      // Only while it is still wanted: a bypass call made meanwhile (off, or on again) has the last word.
      let wrote = false;
      await this.deps.store.updateGlobal((g) => {
        if (this.bypassCalls !== calls || !this.bypassNow) return g;
        wrote = true;
        return { ...g, ...unsaved, bypass: true };
      });
      if (!wrote) return;
      if (this.bypassUnsaved === unsaved) this.bypassUnsaved = null;
      this.deps.logger?.warn({ who: unsaved.changedBy }, 'cutover bypass ON is now in the state store');
    } catch (err) {
      this.deps.logger?.error({ err }, 'cutover bypass ON is still not in the state store');
    }
  }

  /** Judges every route once. Tests call it directly; `start` calls it every interval. */
  tick(): Promise<void> {
    const run = (async () => {
      await this.saveUnsavedBypass();
      for (const r of this.routes.values()) {
        // One route whose check fails (a malformed stored state) must not keep the others unjudged.
        try {
          await this.checkRoute(r);
        } catch (err) {
          this.deps.logger?.error({ err, route: r.name }, 'cutover controller check of a route failed');
        }
      }
    })();
    this.ticking = run.finally(() => {
      this.ticking = undefined;
    });
    return this.ticking;
  }

  private async checkRoute(r: ControllerRoute): Promise<void> {
    const before = this.deps.store.snapshot().routes[r.name] ?? this.seed(r);
    const now = this.deps.now();
    const evidence = this.deps.evidence.evidence(r.name, before.since);
    const check = runCheck(now, evidence, r.gates);
    const observe = this.settings.mode === 'observe';
    const waiting = this.waitingFor(r);
    let action: { kind: 'advance' | 'pause-step' | 'complete' | 'rollback'; why: string; gate?: string } | undefined;
    /** The state the change was made from (a lever may have moved the route since `before` was read). */
    let from = before;

    // The gauges say what the check found whatever the store did with it (a step forward refused by
    // a store that cannot be written throws here), unless a reload removed the route meanwhile: its
    // gauges were let go with it (published again, they would stay exported, a failing one alerting).
    const publish = (): void => {
      if (this.routes.has(r.name)) this.publishGates(r.name, check);
    };
    const after = await this.deps.store.updateRoute(
      r.name,
      () => this.seed(r),
      (current) => {
        action = undefined;
        from = current;
        const history = [...current.history, check].slice(-HISTORY_LIMIT);
        const next: RouteState = { ...current, history };
        // A lever moved the route while the evidence was read: that evidence is stale.
        if (current.since !== before.since) return { ...current };
        // At a pause step clients are still on new at the step's weight: failures count and roll back
        // there as anywhere; only going on waits for a person.
        const atPauseStep = isPause(this.steps[current.step]);
        // Bypass read now, when the change is made, not when the evidence was: turned on while this
        // check waited behind another write, it must stop the route's step forward.
        const idle = this.bypassed() || (current.paused && !atPauseStep) || current.state === 'complete' || current.state === 'rolled_back';
        if (idle) return next;
        if (check.verdict === 'pass') {
          next.passes = current.passes + 1;
          next.failures = 0;
        } else if (check.verdict === 'fail') {
          next.failures = current.failures + 1;
          next.passes = 0;
        } else {
          // No data is no evidence either way: it breaks a run of passes and never adds a failure.
          next.passes = 0;
        }
        if (observe) return next;
        if (next.failures >= this.settings.failureThreshold && current.weight === 0) {
          // Shadow only: no client reaches new, so there is nothing to roll back. Hold, and say why.
          const gate = decidingGate(check.gates);
          return { ...next, reason: `holding in shadow: ${next.failures} failing checks in a row (${gate?.gate ?? 'a gate'})` };
        }
        if (next.failures >= this.settings.failureThreshold) {
          const gate = decidingGate(check.gates);
          action = { kind: 'rollback', gate: gate?.gate ?? 'unknown', why: `${next.failures} failing checks in a row: ${gate?.detail ?? ''}`.trim() };
          return this.rolledBack(next, now, 'controller', action.why);
        }
        if (atPauseStep || next.passes < this.settings.holdIntervals) return next;
        const last = this.steps.length - 1;
        const target = this.nextStep(current);
        if (target > last) {
          action = { kind: 'complete', why: `held at ${current.weight}% for ${next.passes} passing checks` };
          return { ...next, state: 'complete', passes: 0, failures: 0, changedAt: now, changedBy: 'controller', reason: action.why };
        }
        if (current.step === 0 && waiting.length > 0) {
          return { ...next, reason: `waiting for ${waiting.join(', ')} to complete` };
        }
        if (isPause(this.steps[target])) {
          action = { kind: 'pause-step', why: 'reached a pause step: waiting for a person to promote' };
          return { ...next, step: target, state: 'paused', paused: true, passes: 0, failures: 0, changedAt: now, changedBy: 'controller', reason: action.why };
        }
        action = { kind: 'advance', why: `${next.passes} passing checks in a row at ${current.weight}%` };
        return this.moved(next, target, now, 'controller', action.why, false);
      },
      // A state store that cannot be written must not stop the checks that protect clients: failing
      // checks are counted and a rollback applied in memory (the store reads down; its next write
      // saves them). A step forward is never taken unsaved: it fails, and the route holds.
      { keepUnsaved: () => action === undefined || action.kind === 'rollback' },
    ).finally(publish);

    if (!this.routes.has(r.name)) return;
    if (!this.deps.store.up()) this.deps.logger?.warn({ route: r.name }, 'the state store cannot be written: checks and rollbacks apply in memory until it can');
    const taken = action as typeof action;
    if (observe && check.verdict !== 'no_data') {
      const would = check.verdict === 'fail' && after.failures >= this.settings.failureThreshold && after.weight > 0 ? 'roll back' : check.verdict === 'pass' && after.passes >= this.settings.holdIntervals ? 'advance' : undefined;
      if (would) this.deps.logger?.info({ route: r.name, gates: check.gates }, `cutover observe: ${r.name} would ${would} now (observe mode moves nothing)`);
    }
    if (taken === undefined) return;
    const entry = this.auditEntry('controller', r.name, taken.kind, from, after, taken.why);
    this.changed(from, after, entry);
    if (taken.kind === 'rollback') this.rollbackSideEffects(r.name, taken.gate ?? 'unknown', 'controller', from, after, check.gates, taken.why);
  }

  /** `current` moved to step `target` (its weight), evidence starting now. */
  private moved(current: RouteState, target: number, now: number, who: string, why: string, paused: boolean): RouteState {
    const pauseStep = isPause(this.steps[target]);
    // A pause step holds the weight the route has: a hand-set 30 % promoted onto the pause after
    // the 5 % step stays at 30 %, it does not fall back to 5 %.
    const weight = pauseStep ? Math.max(this.weightAt(target), current.weight) : this.weightAt(target);
    const state: RouteStateName = paused || pauseStep ? 'paused' : weight === 0 ? 'shadow' : 'shifting';
    return {
      ...current,
      step: target,
      weight,
      state,
      paused: paused || pauseStep,
      since: weight !== current.weight ? now : current.since,
      passes: 0,
      failures: 0,
      changedAt: now,
      changedBy: who,
      reason: why,
    };
  }

  private rolledBack(current: RouteState, now: number, who: string, why: string): RouteState {
    // 0 %, not the first step's weight: steps may start above 0, and a rollback takes every client off new.
    return { ...current, step: 0, weight: 0, state: 'rolled_back', paused: true, since: now, passes: 0, failures: 0, changedAt: now, changedBy: who, reason: why };
  }

  // ---- levers -------------------------------------------------------------------------------

  /** Next step (past a pause step too), or with `full` straight to the last step (100%). */
  async promote(route: string, opts: LeverOptions & { full?: boolean }): Promise<RouteState> {
    return this.lever(route, opts, 'promote', (current, now, why) => {
      if (current.state === 'complete') throw new LeverError('ALREADY_COMPLETE', `Route "${route}" is already complete at ${current.weight}%.`, 409);
      const last = this.steps.length - 1;
      const target = this.nextStep(current);
      if (target > last) {
        return { ...current, state: 'complete', paused: false, passes: 0, failures: 0, changedAt: now, changedBy: opts.who, reason: why };
      }
      return this.moved(current, opts.full ? last : target, now, opts.who, why, false);
    });
  }

  async pause(route: string, opts: LeverOptions): Promise<RouteState> {
    return this.lever(route, opts, 'pause', (current, now, why) => ({
      ...current,
      paused: true,
      state: current.state === 'shadow' || current.state === 'shifting' ? 'paused' : current.state,
      changedAt: now,
      changedBy: opts.who,
      reason: why,
    }));
  }

  /** Lets the controller walk the route again; its evidence starts afresh. */
  async resume(route: string, opts: LeverOptions): Promise<RouteState> {
    return this.lever(route, opts, 'resume', (current, now, why) => {
      if (isPause(this.steps[current.step])) throw new LeverError('PAUSE_STEP', `Route "${route}" waits at a pause step; promote it to go on.`, 409);
      if (current.state === 'complete') return current;
      return {
        ...current,
        paused: false,
        state: current.weight === 0 ? 'shadow' : 'shifting',
        since: now,
        passes: 0,
        failures: 0,
        changedAt: now,
        changedBy: opts.who,
        reason: why,
      };
    });
  }

  async rollback(route: string, opts: LeverOptions): Promise<RouteState> {
    return this.lever(
      route,
      opts,
      'rollback',
      (current, now, why) => this.rolledBack(current, now, opts.who, why),
      // A rollback of a route already rolled back moves nothing: it is audited, not counted again
      // nor announced again (a script retrying on 503 would page someone at each try).
      (from, after) => {
        if (from.state !== 'rolled_back' || from.weight > 0) this.rollbackSideEffects(route, 'manual', opts.who, from, after, after.history.at(-1)?.gates ?? [], after.reason);
      },
      // An incident is when a disk fills up: the person rolling back gets clients off new at once,
      // as the controller's own rollback does, and is told it is not saved yet.
      true,
    );
  }

  /** Sets the weight by hand and pauses the controller for this route. */
  async setWeight(route: string, weight: number, opts: LeverOptions): Promise<RouteState> {
    if (typeof weight !== 'number' || !isSplitPercent(weight)) {
      // Finer than 0.01 would be rounded away unseen (0.004 → 0 %: no traffic where some was asked for).
      throw new LeverError('BAD_WEIGHT', 'The weight must be a number from 0 to 100 (percent to the new backend), a multiple of 0.01.', 400);
    }
    const w = Math.round(weight * 100) / 100;
    return this.lever(route, opts, 'weight', (current, now, why) => ({
      ...current,
      weight: w,
      step: this.stepFor(w),
      state: 'paused',
      paused: true,
      since: w !== current.weight ? now : current.since,
      passes: 0,
      failures: 0,
      changedAt: now,
      changedBy: opts.who,
      reason: why,
    }));
  }

  /**
   * Emergency bypass: every route's live traffic to legacy, mirroring off, the controller paused.
   * Turning it on takes effect in this process before the store is written, so it works even when
   * the store is wedged; turning it off waits for the store.
   */
  async bypass(on: boolean, opts: LeverOptions): Promise<GlobalState> {
    const now = this.deps.now();
    const wasOn = this.bypassed();
    const why = opts.reason?.trim() || (on ? 'bypass on' : 'bypass off');
    // This call decides now: a check's retry of an earlier unsaved bypass-on, pending, must not land
    // after it (the retry writes only if no bypass call came since it looked).
    this.bypassCalls++;
    if (on && !wasOn) {
      this.bypassNow = true;
      this.deps.logger?.warn({ who: opts.who, reason: why }, 'cutover bypass ON: all live traffic to legacy, mirroring off');
      for (const name of this.routes.keys()) this.emit(name, 0);
    }
    let after: GlobalState;
    // On in this process already (that is what an incident needs), but not in the store: said so,
    // audited, and written at each check until the store takes it. The store keeps it in memory
    // too, and where a restart finds it when it can (the file store's rescue record).
    const unsavedOn = (err: unknown, keptIn: string | null): CutoverError => {
      this.bypassUnsaved = { changedAt: now, changedBy: opts.who, reason: why };
      void this.deps.audit.append({ when: iso(now), who: opts.who, route: '*', action: 'bypass-on', from: null, to: null, why: `${why} (${unsavedNote(keptIn)})` });
      return new CutoverError('CUTOVER_STATE_WRITE_FAILED', `Bypass is ON in this process, but ${storeProblem(err)}: ${afterRestart(keptIn)}; cutover writes it at each check.`);
    };
    let unsaved: CutoverError | null = null;
    try {
      after = await this.deps.store.updateGlobal(
        (g) => ({ ...g, bypass: on, changedAt: now, changedBy: opts.who, reason: why }),
        on && !wasOn ? { keepUnsaved: () => true, onUnsaved: (err, keptIn) => (unsaved = unsavedOn(err, keptIn)) } : {},
      );
    } catch (err) {
      if (!on || wasOn) throw err;
      throw unsavedOn(err, null);
    }
    if (unsaved !== null) throw unsaved;
    this.bypassUnsaved = null;
    if (!on) {
      this.bypassNow = false;
      if (wasOn) {
        this.deps.logger?.warn({ who: opts.who, reason: why }, 'cutover bypass off');
        // What was seen before the incident says nothing of now: every route's evidence starts afresh.
        for (const name of this.routes.keys()) {
          const state = this.deps.store.snapshot().routes[name];
          if (state === undefined || state.state === 'complete') continue;
          const fresh = await this.deps.store.updateRoute(name, () => state, (c) => (c.state === 'complete' ? c : { ...c, since: now, passes: 0, failures: 0 }));
          this.deps.evidence.evidence(name, fresh.since);
        }
        for (const name of this.routes.keys()) {
          const w = this.weightOf(name);
          if (w !== undefined) this.emit(name, w);
        }
      }
    }
    if (wasOn !== on) void this.deps.audit.append({ when: iso(now), who: opts.who, route: '*', action: on ? 'bypass-on' : 'bypass-off', from: null, to: null, why });
    return after;
  }

  /**
   * Applies a lever's change in the store; `then` sees the state it was made from and the result.
   * `inMemoryWhenUnsaved` (rollback only): when
   * the store cannot be written the change still applies in this process (the store's next write
   * saves it), is audited as not yet saved, and the caller gets STATE_WRITE_FAILED saying so.
   */
  private async lever(
    route: string,
    opts: LeverOptions,
    action: string,
    change: (current: RouteState, now: number, why: string) => RouteState,
    then?: (from: RouteState, after: RouteState) => void,
    inMemoryWhenUnsaved = false,
  ): Promise<RouteState> {
    const r = this.routeConfig(route);
    const before = this.deps.store.snapshot().routes[route] ?? this.seed(r);
    const now = this.deps.now();
    const why = opts.reason?.trim() || `${action} by ${opts.who}`;
    let from = before;
    let unsaved: unknown = null;
    let keptIn: string | null = null;
    const after = await this.deps.store.updateRoute(
      route,
      () => this.seed(r),
      (current) => {
        from = current;
        return change(current, now, why);
      },
      inMemoryWhenUnsaved
        ? {
            keepUnsaved: () => true,
            onUnsaved: (err: unknown, where: string | null) => {
              unsaved = err;
              keptIn = where;
            },
          }
        : {},
    );
    this.changed(from, after, this.auditEntry(opts.who, route, action, from, after, unsaved === null ? why : `${why} (${unsavedNote(keptIn)})`));
    then?.(from, after);
    if (unsaved !== null) {
      this.deps.logger?.error({ route, who: opts.who, err: storeProblem(unsaved), keptIn }, `cutover ${action}: ${route} applied in this process, but not saved`);
      throw new CutoverError(
        'CUTOVER_STATE_WRITE_FAILED',
        `${route} is ${after.state} at ${after.weight}% in this process, but ${storeProblem(unsaved)}: ${afterRestart(keptIn)}; the store's next write (at the next check) saves it.`,
      );
    }
    return after;
  }

  // ---- effects ------------------------------------------------------------------------------

  private auditEntry(who: string, route: string, action: string, before: RouteState, after: RouteState, why: string): AuditEntry {
    return { when: iso(this.deps.now()), who, route, action, from: position(before), to: position(after), why };
  }

  private changed(before: RouteState, after: RouteState, entry: AuditEntry): void {
    // The analysis starts a route's evidence log when first asked for a later `since`: ask now, so
    // the traffic between this change and the next check counts.
    if (after.since !== before.since) this.deps.evidence.evidence(after.route, after.since);
    void this.deps.audit.append(entry);
    this.deps.logger?.info({ route: after.route, who: entry.who, action: entry.action, from: entry.from, to: entry.to, why: entry.why }, `cutover ${entry.action}: ${after.route} ${before.weight}% -> ${after.weight}% (${after.state})`);
    this.publish(after);
    if (before.weight !== after.weight && !this.bypassed()) this.emit(after.route, after.weight);
  }

  private emit(route: string, weight: number): void {
    for (const l of this.listeners) {
      try {
        l(route, weight);
      } catch (err) {
        this.deps.logger?.error({ err, route }, 'a weight listener failed');
      }
    }
  }

  private publish(s: RouteState): void {
    this.deps.metrics?.stage(s.route, s.step);
    this.deps.metrics?.state(s.route, s.state);
  }

  private publishGates(route: string, check: GateCheck): void {
    for (const g of check.gates) this.deps.metrics?.gate(route, g.gate, g.verdict);
  }

  private rollbackSideEffects(route: string, reason: string, who: string, before: RouteState, after: RouteState, gates: GateResult[], detail: string): void {
    this.deps.metrics?.rollback(route, reason);
    this.deps.logger?.warn({ route, reason, who, from: before.weight, gates }, `cutover rollback: ${route} ${before.weight}% -> 0% (${reason})`);
    const url = this.settings.webhook;
    if (!url) return;
    const event: RollbackEvent = {
      event: 'rollback',
      route,
      reason,
      who,
      at: iso(after.changedAt),
      from: { step: before.step, weight: before.weight },
      to: { step: after.step, weight: after.weight },
      gates,
      detail,
    };
    void this.postWebhook(url, event);
  }

  /** Fire-and-forget: bounded in flight, with a timeout; failures are logged, never thrown. */
  private async postWebhook(url: string, event: RollbackEvent): Promise<void> {
    if (this.webhooksInFlight >= MAX_WEBHOOKS_IN_FLIGHT) {
      this.webhooksDropped++;
      this.deps.logger?.warn({ route: event.route }, 'cutover webhook dropped: too many in flight');
      return;
    }
    this.webhooksInFlight++;
    const timeout = this.settings.webhookTimeoutMs ?? 5_000;
    try {
      const res = await request(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'cutover' },
        body: JSON.stringify(event),
        signal: AbortSignal.timeout(timeout),
        headersTimeout: timeout,
        bodyTimeout: timeout,
      });
      await res.body.dump();
      if (res.statusCode >= 300) throw new Error(`answered ${res.statusCode}`);
    } catch (err) {
      this.webhookFailures++;
      // The URL may carry a secret (a Slack hook): log its origin only.
      this.deps.logger?.warn({ route: event.route, err: (err as Error).message, to: new URL(url).origin }, 'cutover rollback webhook failed');
    } finally {
      this.webhooksInFlight--;
    }
  }

  // ---- views --------------------------------------------------------------------------------

  view(): ControllerView {
    const snap = this.deps.store.snapshot();
    const routes: RouteView[] = [];
    for (const r of this.routes.values()) {
      const s = snap.routes[r.name] ?? this.seed(r);
      const last = s.history.at(-1);
      const step = this.steps[s.step];
      routes.push({
        route: r.name,
        state: s.state,
        step: s.step,
        stepValue: isPause(step) ? 'pause' : (step ?? s.weight),
        weight: s.weight,
        effectiveWeight: this.bypassed() ? 0 : s.weight,
        paused: s.paused,
        since: s.since,
        sinceIso: iso(s.since),
        passes: s.passes,
        failures: s.failures,
        gates: last?.gates ?? [],
        checkedAt: last ? iso(last.at) : null,
        verdict: last?.verdict ?? null,
        waitingFor: this.waitingFor(r),
        changedAt: iso(s.changedAt),
        changedBy: s.changedBy,
        reason: s.reason,
      });
    }
    return {
      mode: this.settings.mode,
      bypass: { ...snap.global, bypass: this.bypassed() },
      steps: this.steps.map((s) => (isPause(s) ? 'pause' : s)),
      intervalMs: this.settings.intervalMs,
      holdIntervals: this.settings.holdIntervals,
      failureThreshold: this.settings.failureThreshold,
      routes,
    };
  }

  /** What the readiness report needs, from the store, the evidence and the audit log's rollbacks. */
  async reportInput(opts: {
    configHash: string;
    fields?: (route: string) => ReportFieldInput[] | undefined;
    /** Credentials still seen on the given complete routes since they completed (epoch ms). */
    stragglers?: (complete: ReadonlyMap<string, number>) => ReportStraggler[];
  }): Promise<ReportInput> {
    const snap = this.deps.store.snapshot();
    const states = [...this.routes.values()].map((r) => snap.routes[r.name] ?? this.seed(r));
    const complete = new Map(states.filter((s) => s.state === 'complete').map((s) => [s.route, s.changedAt] as const));
    const audit = await this.deps.audit.read(AUDIT_MEMORY);
    const rollbacks: ReportRollback[] = audit.filter((e) => e.action === 'rollback').map((e) => ({ route: e.route, at: e.when, who: e.who, reason: e.why }));
    return {
      routes: states.map((s) => ({
        route: s.route,
        state: s.state,
        weight: s.weight,
        step: s.step,
        since: s.since,
        evidence: this.deps.evidence.evidence(s.route, s.since),
        // Only a check made after the last weight change speaks for the weight the route is at now.
        gates: currentGates(s),
        fields: opts.fields?.(s.route),
      })),
      rollbacks,
      stragglers: opts.stragglers?.(complete),
      configHash: opts.configHash,
      bypass: this.bypassed(),
      mode: this.settings.mode,
      now: this.deps.now(),
    };
  }
}

/**
 * The failing gate a rollback is named after. A 5xx from new is both an error and a status mismatch:
 * the error gate names the cause, so it goes first; then content, then latency.
 */
const GATE_PRIORITY = ['maxErrorRateIncrease', 'maxMismatchRate', 'maxLatencyRatio'];

/** The gates of the route's last check, if it was made after its last weight change (else none). */
function currentGates(s: RouteState): GateResult[] {
  const last = s.history.at(-1);
  return last !== undefined && last.at > s.since ? last.gates : [];
}

function decidingGate(gates: readonly GateResult[]): GateResult | undefined {
  const failing = gates.filter((g) => g.verdict === 'fail');
  const rank = (g: GateResult) => (GATE_PRIORITY.indexOf(g.gate) + GATE_PRIORITY.length + 1) % (GATE_PRIORITY.length + 1);
  return failing.sort((a, b) => rank(a) - rank(b))[0];
}

/** The controller's settings and routes from a loaded config (what the lead wires in app.ts). */
export function controllerConfig(config: Pick<Config, 'cutover' | 'routes' | 'cutoverWebhook'>): { settings: ControllerSettings; routes: ControllerRoute[] } {
  const c = config.cutover;
  return {
    settings: {
      steps: c.steps,
      intervalMs: c.interval,
      holdIntervals: c.holdIntervals,
      failureThreshold: c.failureThreshold,
      mode: c.mode,
      webhook: config.cutoverWebhook,
    },
    routes: config.routes.map((r) => ({ name: r.name, weight: r.weight, after: r.after, gates: r.gates })),
  };
}
