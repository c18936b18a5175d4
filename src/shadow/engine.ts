/**
 * Mirroring. Decides per request whether to mirror (safe method, exact sample, body size, room in
 * flight), sends the mirror to the *other* backend once the client's answer has been read from its
 * backend (`shadow.hold`, below), and — for a share of mirrored requests — replays the request to
 * the primary backend too (a baseline pair, to learn which fields differ between two answers of the
 * same backend: noise).
 *
 * Nothing here is awaited by the client path: `plan` is synchronous and cheap, `mirror` only
 * dispatches or holds, and the answers meet in `MirrorJob` whenever they arrive.
 *
 * Why hold: the proxy has one thread for both answers. A mirror sent with the request comes back
 * while the client's answer is still being read and written, and every chunk of it read then is
 * time the client's answer waits: with ~1 MB answers at a quarter of the proxy's capacity, client
 * p50 rose a median 57 % at 100 % shadow (bench `shadow-1mb-open`), against 22 % with the mirror
 * held until the live answer was read (README, performance). Each backend's latency is timed from
 * its own socket, so holding changes no latency figure; it changes the moment the mirror's backend
 * sees the request, by the live answer's time, at most `shadow.hold` (0: sent with the request;
 * `auto`, the default: held only on routes of large answers, where the overlap costs the client).
 */
import type { CapturedAnswerPair } from './pair.js';
import type { Skip } from '../telemetry/metrics.js';
import { CapturingExchange, dispatchOptions } from '../forward/exchange.js';
import type { UpstreamAnswer } from '../forward/capture.js';
import type { ForwardedContext } from '../forward/headers.js';
import type { OutboundMapping } from '../credentials/outbound/index.js';
import { redactTarget } from '../forward/shaping.js';
import { redactQueryText } from '../compare/redact.js';
import type { Upstream } from '../forward/upstream.js';
import { effectiveMethod, SAFE_METHODS } from './methods.js';
import { ExactRatio } from '../routing/ratio.js';
import { Admission, ShadowBreaker, type BreakerEvent, type BreakerOptions, type BreakerView } from './breaker.js';
import type { Route, RouteTable } from '../routing/table.js';

/** `plan` called without the request's headers (tests): no override header. */
const NO_HEADERS: readonly string[] = [];

export interface MirrorRequest {
  primaryIsNew: boolean;
  method: string;
  /** The request target as the client sent it (the legacy API's shape). */
  legacyPath: string;
  /** The same call in the new API's shape (`rewrite.path`). */
  newPath: string;
  rawHeaders: readonly string[];
  ctx: ForwardedContext;
  body: Buffer | null;
  /** The identity toward new mapped to the client's legacy credential, if any. */
  mapping?: OutboundMapping;
  /** The client's credential values, blanked out of the pair's diff examples (RequestCredential.secrets). */
  secrets?: () => readonly string[];
}

export interface ShadowEngineDeps {
  /** Separate pools for mirrored calls: a slow shadow backend never takes the client path's connections. */
  pools: { legacy: Upstream; new: Upstream };
  maxInFlight: number;
  timeout: number;
  /**
   * How long (ms) a mirror waits for the live answer to have been read before it is sent anyway; 0
   * sends it with the live request; `auto` (the default) holds for up to AUTO_HOLD_MS on routes
   * whose answers are large (AUTO_HOLD_FROM_BYTES), and sends the rest with the request. A held
   * mirror is not in flight: `maxInFlight` counts mirrors sent, and is checked again when a held
   * one goes (past it, it is skipped as overload).
   */
  hold?: number | 'auto';
  /** Query parameters holding a legacy credential: masked in the path a pair keeps. */
  credentialQuery: readonly string[];
  /** Receives both answers (and the baseline, if any) once all have arrived. */
  onPair: (pair: CapturedAnswerPair) => void;
  breaker?: Partial<BreakerOptions>;
  /** Told when a backend's breaker opens or closes (the proxy logs it). */
  onBreaker?: (backend: 'legacy' | 'new', event: BreakerEvent) => void;
  /** Says when the proxy's own event loop is too busy to take more mirrors (skipped as overload). */
  shed?: { admit(): boolean };
  /**
   * Room in the comparison queue, reserved when the request comes: a mirror that could not be
   * compared is not sent at all, so it is counted once (as overload), never sent and then dropped.
   * A mirror held for its live answer keeps its place meanwhile: the live answer is being captured
   * for it, and the queue's byte bound is what bounds those captures (were places taken only when
   * mirrors go, a burst of slow live answers would capture one answer per client).
   */
  comparisons?: { reserve(route: string): boolean; unreserve(route: string): void; typicalBytes(route: string): number };
  /**
   * The emergency bypass: a held mirror whose turn comes while it is on is skipped as `bypass` (the
   * bypass stops mirroring at once, not `shadow.hold` later).
   */
  bypassed?: () => boolean;
}

/**
 * `shadow.hold: auto`: a route whose compared pairs average this many bytes or more (the two
 * answers together; 64 KiB each, the size from which the capture gathers a body in one buffer) has
 * its mirrors held, up to AUTO_HOLD_MS. Below it, reading the mirror's answer while the client's
 * streams costs the client next to nothing, and both backends had better see the same moment.
 */
export const AUTO_HOLD_FROM_BYTES = 128 * 1024;
export const AUTO_HOLD_MS = 1_000;

const OVERSIZE_BREAKER: Partial<BreakerOptions> = { threshold: 1, initialMs: 1_000, maxMs: 30_000 };

/** A route's exact samplers, kept by route name so a reload keeps their counters running. */
class RouteSampling {
  readonly shadow: ExactRatio;
  readonly baseline: ExactRatio;
  /** The settings object the samplers were last checked against (one per loaded config). */
  settings: Route['shadow'];
  /**
   * Per target backend: a mirror pair whose answer ran past the capture cap cannot be compared, so
   * further mirrors of the route are skipped (`body_too_large`) for a cool-down that doubles up to
   * 30 s; one probe then checks whether answers fit again. This keeps an oversize answer from
   * costing a cut connection and a reconnect on every request.
   */
  readonly oversize: { legacy: ShadowBreaker; new: ShadowBreaker };
  /** The second (of `now`) whose baseline replays `baselines` counts (maxBaselinesPerSecond). */
  private second = -1;
  private baselines = 0;

  constructor(
    settings: Route['shadow'],
    private readonly now: () => number,
  ) {
    this.settings = settings;
    const oversize = { ...OVERSIZE_BREAKER, now };
    this.oversize = { legacy: new ShadowBreaker(oversize), new: new ShadowBreaker(oversize) };
    this.shadow = new ExactRatio(settings.percent);
    this.baseline = new ExactRatio(settings.baselinePercent);
  }

  /** Follows a reloaded config, restarting a counter only when its percent changed. */
  follow(settings: Route['shadow']): void {
    this.settings = settings;
    if (this.shadow.percent !== percentOf(settings.percent)) this.shadow.set(settings.percent);
    if (this.baseline.percent !== percentOf(settings.baselinePercent)) this.baseline.set(settings.baselinePercent);
  }

  /** Whether this mirror (of a safe method) also gets a baseline replay: the exact share, within the second's budget. */
  takeBaseline(): boolean {
    if (!this.baseline.next()) return false;
    const second = Math.floor(this.now() / 1000);
    if (second !== this.second) {
      this.second = second;
      this.baselines = 0;
    }
    if (this.baselines >= this.settings.maxBaselinesPerSecond) return false;
    this.baselines++;
    return true;
  }
}

/** A percent as an ExactRatio holds it (0.01 resolution). */
function percentOf(percent: number): number {
  return new ExactRatio(percent).percent;
}

export class ShadowEngine {
  private readonly deps: ShadowEngineDeps;
  private readonly sampling = new Map<string, RouteSampling>();
  private inFlight = 0;
  /** One breaker per backend, for mirrors sent to it. */
  readonly breakers: { legacy: ShadowBreaker; new: ShadowBreaker };

  constructor(deps: ShadowEngineDeps) {
    this.deps = deps;
    const breaker = (backend: 'legacy' | 'new'): ShadowBreaker =>
      new ShadowBreaker({ timeoutMs: deps.timeout, onChange: (event) => deps.onBreaker?.(backend, event), ...deps.breaker });
    this.breakers = { legacy: breaker('legacy'), new: breaker('new') };
  }

  /** Each backend's breaker, for the admin API: whether mirrors to it are skipped, since when and why. */
  breakerViews(): { legacy: BreakerView; new: BreakerView } {
    return { legacy: this.breakers.legacy.view('legacy'), new: this.breakers.new.view('new') };
  }

  /** Takes a reloaded route table: samplers of routes no longer configured are forgotten. */
  configure(routes: RouteTable): void {
    const keep = new Set(routes.routes.map((r) => r.name));
    for (const name of this.sampling.keys()) if (!keep.has(name)) this.sampling.delete(name);
  }

  private samplingOf(route: Route): RouteSampling {
    let sampling = this.sampling.get(route.name);
    if (sampling === undefined) {
      sampling = new RouteSampling(route.shadow, this.deps.breaker?.now ?? Date.now);
      this.sampling.set(route.name, sampling);
    } else if (sampling.settings !== route.shadow) {
      sampling.follow(route.shadow);
    }
    return sampling;
  }

  /** Mirrors in flight right now. */
  get active(): number {
    return this.inFlight;
  }

  /**
   * A job when this request is to be mirrored; else why not (counted by the live exchange once its
   * answer is whole: a request whose client left is in no count), or null for a request of no
   * configured route (never mirrored, never counted). `rawHeaders`: the request's, for the method
   * an override header names (effectiveMethod).
   */
  plan(route: Route, requestMethod: string, body: Buffer | null, primaryIsNew: boolean, rawHeaders: readonly string[] = NO_HEADERS): MirrorJob | Skip | null {
    // Requests that match no route are never mirrored: there is no rule saying it is safe.
    if (route.settings === undefined) return null;
    // Judged as the backend may read it: a GET overridden to DELETE is not a safe method to mirror.
    const method = effectiveMethod(requestMethod, rawHeaders);
    const sampling = this.samplingOf(route);
    const settings = route.shadow;
    if (!settings.unsafe && !SAFE_METHODS.has(method)) return 'unsafe_method';
    if (!sampling.shadow.next()) return 'sampled_out';
    if (body !== null && body.length > settings.maxBodyBytes) return 'body_too_large';
    const target = primaryIsNew ? 'legacy' : 'new';
    // A target known to be down is the reason, whatever else is full: said before the shedder and
    // the queue are asked (which would count it as overload, and spend their credit on it).
    if (this.breakers[target].refusing()) return 'shadow_down';
    if (this.inFlight >= this.deps.maxInFlight) return 'in_flight';
    if (this.deps.shed !== undefined && !this.deps.shed.admit()) return 'event_loop';
    const comparisons = this.deps.comparisons;
    if (comparisons !== undefined && !comparisons.reserve(route.name)) return 'comparison_queue';
    const sizeAdmission = sampling.oversize[target].allow();
    if (sizeAdmission === Admission.Refused) {
      comparisons?.unreserve(route.name);
      return 'body_too_large';
    }
    const admission = this.breakers[target].allow();
    if (admission === Admission.Refused) {
      // The size probe was not used: give it back, so the next mirror may probe.
      if (sizeAdmission === Admission.Probe) sampling.oversize[target].release();
      comparisons?.unreserve(route.name);
      return 'shadow_down';
    }
    return new MirrorJob(this, route, target, SAFE_METHODS.has(method) && sampling.takeBaseline(), admission === Admission.Probe, sizeAdmission === Admission.Probe);
  }

  /**
   * How long a mirror of `route` waits for its live answer before it goes anyway (ms; 0: not at
   * all). `auto` decides by the route's answers so far: none compared yet, not held.
   */
  holdFor(route: Route): number {
    const hold = this.deps.hold ?? 0;
    if (hold !== 'auto') return hold;
    return (this.deps.comparisons?.typicalBytes(route.name) ?? -1) >= AUTO_HOLD_FROM_BYTES ? AUTO_HOLD_MS : 0;
  }

  /** Called by a job when its mirrored call is over (the primary may still be streaming). */
  release(): void {
    this.inFlight--;
  }

  /**
   * Gives back what plan() took for a job that is never sent (the primary's dispatch threw, or its
   * turn came with no room in flight, the bypass on or the client gone): its comparison place and
   * any probe it was given, which would otherwise stay taken for good (with enough of them, every
   * later mirror would be skipped as overload, or a backend's breaker could never probe again).
   */
  abandon(job: MirrorJob): void {
    this.deps.comparisons?.unreserve(job.route.name);
    if (job.probe) this.breakers[job.target].release();
    if (job.sizeProbe) this.samplingOf(job.route).oversize[job.target].release();
  }

  /**
   * Sends a job's mirror (and baseline), taking its in-flight place. False when it does not go, its
   * places and probes given back: the bypass went on while it was held (`bypass`, counted once the
   * live answer is whole, as the request is); its client left before the live answer was whole (not
   * counted: the request is not counted either, and a cut answer is nothing to compare with, as when
   * the mirror was already sent); or `maxInFlight` mirrors are running (overload, counted the same
   * way; a mirror sent with its request passed the same check in plan(), a moment before).
   */
  dispatch(job: MirrorJob, req: MirrorRequest): boolean {
    const route = job.route;
    const bypassed = this.deps.bypassed?.() === true;
    const full = this.inFlight >= this.deps.maxInFlight;
    if (bypassed || job.clientGone || full) {
      if (!job.clientGone) job.skipped(bypassed ? 'bypass' : 'in_flight');
      this.abandon(job);
      return false;
    }
    this.inFlight++;
    const { pools, timeout } = this.deps;
    const shadowTarget = pools[job.target];
    const breaker = this.breakers[job.target];
    breaker.sent();
    // What each backend receives (credentials, markers, X-Forwarded-*) is decided by its shaping layer.
    const intent = (kind: 'mirror' | 'baseline') => ({ kind, rawHeaders: req.rawHeaders, ctx: req.ctx, forwardCredentials: route.forwardCredentials, mapping: req.mapping });
    const limit = route.compare.maxBodyBytes;
    shadowTarget.dispatcher.dispatch(
      dispatchOptions(shadowTarget, { method: req.method, path: req.primaryIsNew ? req.legacyPath : req.newPath, body: req.body, intent: intent('mirror') }),
      new CapturingExchange(shadowTarget.name, 'shadow', route.metrics, limit, timeout, (answer) => {
        // A connection broken mid-body is a failure too: a backend that resets every answer would
        // otherwise cost a new connection per mirror, forever.
        breaker.record(answer.status > 0 && answer.error === undefined, job.probe, answer.seconds * 1000);
        job.onShadow(answer);
      }, req.method === 'HEAD'),
    );
    if (job.wantsBaseline) {
      const primaryTarget = req.primaryIsNew ? pools.new : pools.legacy;
      primaryTarget.dispatcher.dispatch(
        dispatchOptions(primaryTarget, { method: req.method, path: req.primaryIsNew ? req.newPath : req.legacyPath, body: req.body, intent: intent('baseline') }),
        new CapturingExchange(primaryTarget.name, 'shadow', route.metrics, limit, timeout, job.onBaseline, req.method === 'HEAD'),
      );
    }
    return true;
  }

  complete(pair: CapturedAnswerPair): void {
    const sampling = this.sampling.get(pair.route.name);
    if (sampling !== undefined) {
      const oversize = pair.primary.truncated || pair.shadow.truncated || (pair.baseline?.truncated ?? false);
      const breaker = sampling.oversize[pair.primaryIsNew ? 'legacy' : 'new'];
      // Only a pair that got whole answers says the route fits again; failures say nothing about size.
      if (oversize || (pair.shadow.error === undefined && pair.primary.error === undefined)) breaker.record(!oversize, pair.sizeProbe ?? false);
      else if (pair.sizeProbe === true) breaker.release();
    }
    // The pair's path is kept (examples, recent errors): a credential in the query never is, neither
    // a configured one nor a parameter named like one (`access_token`, `password`).
    this.deps.onPair(pair.path.includes('?') ? { ...pair, path: redactQueryText(redactTarget(pair.path, this.deps.credentialQuery)) } : pair);
  }
}

export class MirrorJob {
  readonly route: Route;
  /** The backend the mirror goes to. */
  readonly target: 'legacy' | 'new';
  readonly wantsBaseline: boolean;
  /** This mirror is the one probe of an open circuit breaker. */
  readonly probe: boolean;
  /** This mirror is the one probe of its route's oversize cool-down. */
  readonly sizeProbe: boolean;
  private readonly engine: ShadowEngine;
  private primary: UpstreamAnswer | null = null;
  private shadow: UpstreamAnswer | null = null;
  private baseline: UpstreamAnswer | null = null;
  private request: MirrorRequest | null = null;
  private waiting: number;
  private readonly startedAt = Date.now();
  /** Set once: sent, or given back (never sent). */
  private done = false;
  /** Waiting for the live answer (shadow.hold); the timer sends it anyway when it runs out. */
  private holding: NodeJS.Timeout | null = null;

  constructor(engine: ShadowEngine, route: Route, target: 'legacy' | 'new', wantsBaseline: boolean, probe: boolean, sizeProbe: boolean) {
    this.engine = engine;
    this.route = route;
    this.target = target;
    this.wantsBaseline = wantsBaseline;
    this.probe = probe;
    this.sizeProbe = sizeProbe;
    this.waiting = wantsBaseline ? 3 : 2;
  }

  /** How much of the primary's answer the client path keeps for the comparison. */
  get captureLimit(): number {
    return this.route.compare.maxBodyBytes;
  }

  /**
   * Sends the mirror, or holds it until the live answer has been read (onPrimary), at most
   * `shadow.hold` ms. Called right after the live request was dispatched.
   */
  mirror(req: MirrorRequest): void {
    this.request = req;
    const hold = this.engine.holdFor(this.route);
    if (hold > 0 && this.primary === null) {
      this.holding = setTimeout(this.send, hold);
    } else {
      this.send();
    }
  }

  private readonly send = (): void => {
    this.holding = null;
    if (this.done) return;
    this.done = true;
    // Not sent (no room in flight): nothing more will come of this job.
    if (!this.engine.dispatch(this, this.request!)) this.waiting = Number.POSITIVE_INFINITY;
  };

  /** This job will never be sent: what plan() took goes back (once; nothing once it was sent). */
  abandon(): void {
    if (this.done) return;
    this.done = true;
    if (this.holding !== null) clearTimeout(this.holding);
    this.holding = null;
    this.engine.abandon(this);
  }

  /** Why it was not sent, when that was decided before its live answer was whole (counted then). */
  private skip: Skip | null = null;

  /**
   * Not sent, for `skip`: counted as the live request is, once its answer is whole (now, if it is),
   * and never when its client left (the request is not counted either).
   */
  skipped(skip: Skip): void {
    this.skip = skip;
    if (this.primary !== null) this.countSkip();
  }

  private countSkip(): void {
    if (this.skip !== null && !this.clientGone) this.route.metrics.skip(this.skip);
  }

  /** The client left before its answer was whole: a pair of this job could not be compared. */
  get clientGone(): boolean {
    return this.primary?.error === 'client_aborted';
  }

  readonly onPrimary = (answer: UpstreamAnswer): void => {
    this.primary = answer;
    this.countSkip();
    if (this.holding !== null) {
      clearTimeout(this.holding);
      this.holding = null;
      // Called from inside undici's parser (the live answer's end): the mirror's dispatch may run
      // another connection's parser, which undici allows one at a time. Sent once this one is done.
      queueMicrotask(this.send);
    }
    this.arrive();
  };

  readonly onShadow = (answer: UpstreamAnswer): void => {
    this.shadow = answer;
    if (!this.wantsBaseline || this.baseline !== null) this.engine.release();
    this.arrive();
  };

  readonly onBaseline = (answer: UpstreamAnswer): void => {
    this.baseline = answer;
    if (this.shadow !== null) this.engine.release();
    this.arrive();
  };

  private arrive(): void {
    if (--this.waiting > 0) return;
    const req = this.request!;
    this.engine.complete({
      route: this.route,
      method: req.method,
      path: req.legacyPath,
      primaryIsNew: req.primaryIsNew,
      primary: this.primary!,
      shadow: this.shadow!,
      baseline: this.baseline,
      sizeProbe: this.sizeProbe,
      startedAt: this.startedAt,
      secrets: req.secrets,
    });
  }
}
