/**
 * The route table: method + path template → route. Templates are compiled once, at config load;
 * matching is first match in config order. Requests that match no route fall to `other`, which
 * always goes to legacy and is never mirrored.
 */
import type { RouteRules, RouteSettings, ShadowSettings, CompareSettings } from '../config/load.js';
import type { StoreSnapshot } from '../cutover/types.js';
import type { RouteMetrics, Telemetry } from '../telemetry/metrics.js';
import { bucketOf, weightToBuckets, BUCKETS } from './hash.js';
import { ExactRatio } from './ratio.js';
import { canonicalPath, captureIsSafe } from './canonical.js';

export const OTHER_ROUTE = 'other';

type RewritePart = string | number; // literal text, or the index of a captured parameter

const PARAM_OR_STAR = /:([A-Za-z_][A-Za-z0-9_]*)|\*/g;

function escapeRegExp(text: string): string {
  return text.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}

/** Compiles `/v1/widgets/:id/*` into a regex and the ordered names of what it captures. */
export function compileTemplate(template: string): { pattern: RegExp; names: string[] } {
  const names: string[] = [];
  let source = '^';
  let last = 0;
  for (const m of template.matchAll(PARAM_OR_STAR)) {
    source += escapeRegExp(template.slice(last, m.index));
    if (m[0] === '*') {
      names.push('*');
      source += '(.*)';
    } else {
      names.push(m[1]);
      source += '([^/]+)';
    }
    last = m.index! + m[0].length;
  }
  source += `${escapeRegExp(template.slice(last))}$`;
  return { pattern: new RegExp(source), names };
}

function compileRewrite(template: string, names: string[]): RewritePart[] {
  const parts: RewritePart[] = [];
  let last = 0;
  for (const m of template.matchAll(PARAM_OR_STAR)) {
    parts.push(template.slice(last, m.index));
    parts.push(names.indexOf(m[0] === '*' ? '*' : m[1]) + 1);
    last = m.index! + m[0].length;
  }
  parts.push(template.slice(last));
  return parts.filter((p) => p !== '');
}

export class Route {
  readonly name: string;
  readonly metrics: RouteMetrics;
  readonly shadow: ShadowSettings;
  readonly compare: CompareSettings;
  /** The comparison rules compiled when the config was loaded (shared, read-only). */
  readonly rules: RouteRules;
  readonly forwardCredentials: boolean;
  readonly settings: RouteSettings | undefined;
  private readonly methods: ReadonlySet<string> | null;
  private readonly pattern: RegExp | null;
  /** Which captures are a trailing `*` (may hold "/"), by capture index - 1. */
  private readonly stars: boolean[] = [];
  private readonly rewrite: RewritePart[] | null;
  /** Live weight as a bucket count: keys hashed below it go to the new backend. */
  private newBuckets = 0;
  /** Requests without a sticky key are split by an exact counter, not by chance. */
  private readonly unkeyed = new ExactRatio(0);

  constructor(metrics: RouteMetrics, settings: RouteSettings | undefined, fallback: { shadow: ShadowSettings; compare: CompareSettings; rules: RouteRules }) {
    this.metrics = metrics;
    this.name = metrics.route;
    this.settings = settings;
    this.shadow = settings?.shadow ?? fallback.shadow;
    this.compare = settings?.compare ?? fallback.compare;
    this.rules = settings?.rules ?? fallback.rules;
    this.forwardCredentials = settings?.forwardCredentials ?? false;
    this.methods = settings?.methods ? new Set(settings.methods) : null;
    if (settings) {
      const { pattern, names } = compileTemplate(settings.path);
      this.pattern = pattern;
      this.stars = names.map((n) => n === '*');
      this.rewrite = settings.rewrite ? compileRewrite(settings.rewrite, names) : null;
      this.setWeight(settings.weight);
    } else {
      this.pattern = null;
      this.rewrite = null;
      metrics.setWeight(0);
    }
  }

  /** Whether the route's `match.methods` names `method` itself (a route without the list names none). */
  names(method: string): boolean {
    return this.methods?.has(method) ?? false;
  }

  /** The regex match of `path` when this route serves `method` on it, else null. */
  match(method: string, path: string): RegExpExecArray | null {
    if (this.pattern === null) return null;
    if (this.methods !== null && !this.methods.has(method)) return null;
    return this.pattern.exec(path);
  }

  /**
   * Whether every capture of `match` is safe to substitute into a path (see canonical.ts): a
   * request whose capture is not must be refused, or `rewrite` could build a path that escapes.
   */
  capturesSafe(match: RegExpExecArray): boolean {
    for (let i = 1; i < match.length; i++) if (!captureIsSafe(match[i], this.stars[i - 1])) return false;
    return true;
  }

  get weight(): number {
    return (this.newBuckets * 100) / BUCKETS;
  }

  /** Sets the live weight; setting the same weight again keeps the exact split's counter running. */
  setWeight(percent: number): void {
    if (this.newBuckets === weightToBuckets(percent)) {
      this.metrics.setWeight(this.weight);
      return;
    }
    this.newBuckets = weightToBuckets(percent);
    this.unkeyed.set(percent);
    this.metrics.setWeight(this.weight);
  }

  /** Whether this request's live answer comes from the new backend. */
  servesNew(stickyKey: string | undefined): boolean {
    if (this.newBuckets === 0) return false;
    if (this.newBuckets === BUCKETS) return true;
    if (stickyKey !== undefined) return bucketOf(stickyKey) < this.newBuckets;
    return this.unkeyed.next();
  }

  /** The path (and query) as the new API expects it. */
  newPath(match: RegExpExecArray | null, path: string, query: string): string {
    if (this.rewrite === null || match === null) return path + query;
    let out = '';
    for (const part of this.rewrite) out += typeof part === 'string' ? part : match[part];
    // An empty capture leaves `//` (`/v2/*/content` with `*` empty): the path the backend gets is canonical too.
    return (out.includes('//') ? (canonicalPath(out) ?? out) : out) + query;
  }
}

export interface RouteMatch {
  route: Route;
  match: RegExpExecArray | null;
  /** A route matched, but one of its captures holds a separator or dot-segment: refuse (400). */
  unsafe?: true;
}

export class RouteTable {
  readonly routes: readonly Route[];
  readonly other: Route;
  private readonly byName: ReadonlyMap<string, Route>;

  constructor(routes: readonly RouteSettings[], defaults: { shadow: ShadowSettings; compare: CompareSettings; rules: RouteRules }, telemetry: Telemetry) {
    this.routes = routes.map((r) => new Route(telemetry.route(r.name), r, defaults));
    this.other = new Route(telemetry.route(OTHER_ROUTE), undefined, defaults);
    this.byName = new Map([...this.routes, this.other].map((r) => [r.name, r]));
  }

  resolve(method: string, path: string): RouteMatch {
    for (const route of this.routes) {
      const match = route.match(method, path);
      if (match !== null) return route.capturesSafe(match) ? { route, match } : { route, match, unsafe: true };
    }
    return { route: this.other, match: null };
  }

  get(name: string): Route | undefined {
    return this.byName.get(name);
  }

  /**
   * Applies the live weights of the state store, by route name: the store's weight wins, and
   * `routes[].weight` only seeds a route the store does not know. Called at start, after every
   * store change, and on a reloaded table before it goes live.
   */
  applyWeights(state: Pick<StoreSnapshot, 'routes'>): void {
    for (const route of this.routes) {
      route.setWeight(state.routes[route.name]?.weight ?? route.settings!.weight);
    }
  }
}
