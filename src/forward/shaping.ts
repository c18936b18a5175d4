/**
 * The one layer that shapes every request a backend receives — live, mirrored, baseline replay
 * and upgrade alike — built the way undici composes behaviour: interceptors over the backend's
 * pool (`pool.compose(...)`). Nothing else decides what goes upstream, so a per-backend rule can
 * not be missed on one path.
 *
 * Callers dispatch *intent*, not headers: `{ method, path, body, cutover: OutboundIntent }` where
 * `path` is the canonical path and query (no base path) and the intent carries the client's raw
 * headers and what kind of call this is. The shaping interceptor turns that into the upstream
 * request:
 *   1. header hygiene (hop-by-hop both ways, fields named in Connection), X-Forwarded-*,
 *      client-IP headers dropped for untrusted peers (headers.ts);
 *   2. toward `new` (unless the route sets `forwardCredentials`): the legacy credential stripped —
 *      headers (`header`, `bearer`, `basic`, `cookie`) and query parameters (`query`);
 *   3. mirrored and baseline calls: `X-Cutover-Shadow: 1` and the prefixed Idempotency-Key;
 *   4. the backend's base path prepended.
 *
 * PER-BACKEND OUTBOUND CREDENTIALS (outbound auth, static headers, mTLS) belong here, once:
 *   - request-level auth: pass interceptors as `ShapingOptions.outbound`. They run after the
 *     shaping interceptor, so they see the final flat header list (`opts.headers` is a
 *     string[] of name/value pairs, the client's legacy credential already gone toward new) and
 *     may append or replace e.g. `authorization`. `opts.cutover.kind` says live/mirror/baseline/
 *     upgrade if a credential should differ by kind.
 *     An interceptor may finish asynchronously (e.g. `await auth.headerFor(mapping)` on a token
 *     cache miss): return `true` and call `dispatch(...)` later; on failure call
 *     the handler's `onResponseError` with the error instead (no controller exists yet; none of
 *     our handlers needs one there) — every caller's handler answers with problem+json from there.
 *   - per-request credential data (e.g. a legacy credential's mapping toward new): add a typed
 *     field to `OutboundIntent`, filled where the proxy builds the intent (proxy/server.ts `decide`,
 *     shadow/engine.ts `dispatch`); interceptors read it from `opts.cutover`.
 *   - connection-level TLS (client certificate, CA): pass it as `ShapingOptions.connect`, merged
 *     into the pool's `connect` options by `Upstream` (so every kind of call uses it).
 *   Both are given per backend through `UpstreamShaping` where app.ts builds the upstreams.
 */
import type { Dispatcher } from 'undici';
import type { CredentialLocation } from '../config/schema.js';
import type { BackendName } from '../telemetry/metrics.js';
import type { OutboundMapping } from '../credentials/outbound/index.js';
import { credentialHeaderNames, credentialQueryNames } from '../credentials/extract.js';
import { shadowHeaders, upstreamHeaders, type ForwardedContext } from './headers.js';

export type OutboundKind = 'live' | 'mirror' | 'baseline' | 'upgrade';

/** What the caller wants sent; the shaping layer decides how it looks on the wire. */
export interface OutboundIntent {
  kind: OutboundKind;
  /** The client's request headers, as Node's flat rawHeaders list. */
  rawHeaders: readonly string[];
  ctx: ForwardedContext;
  /** The route lets the client's legacy credential through to the new backend. */
  forwardCredentials: boolean;
  /** The identity toward new mapped to the client's legacy credential (credentials.mappings), if any. */
  mapping?: OutboundMapping;
}

export interface ShapedDispatchOptions extends Dispatcher.DispatchOptions {
  cutover: OutboundIntent;
}

export interface ShapingOptions {
  backend: BackendName;
  /** Path prefix of the backend URL ('' at the root). */
  basePath: string;
  /** Where clients carry their legacy credential (credentials.legacy). */
  legacyCredentials: readonly CredentialLocation[];
  /** Per-backend outbound credential interceptors, run after shaping (see the module comment). */
  outbound?: readonly Dispatcher.DispatcherComposeInterceptor[];
  /** Per-backend connection options (e.g. TLS client certificate), merged into the pool's `connect`. */
  connect?: Record<string, unknown>;
}

function paramName(pair: string): string {
  const eq = pair.indexOf('=');
  const raw = eq === -1 ? pair : pair.slice(0, eq);
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return raw;
  }
}

/**
 * `query` ("?a=1&b=2" or "") with the named parameters removed (`replacement` undefined) or their
 * values replaced; the other parameters stay byte for byte.
 */
export function rewriteQuery(query: string, names: readonly string[], replacement?: string): string {
  if (query.length < 2 || names.length === 0) return query;
  const pairs = query.slice(1).split('&');
  let changed = false;
  const out: string[] = [];
  for (const pair of pairs) {
    if (!names.includes(paramName(pair))) {
      out.push(pair);
      continue;
    }
    changed = true;
    if (replacement !== undefined) out.push(`${pair.split('=')[0]}=${replacement}`);
  }
  if (!changed) return query;
  return out.length ? `?${out.join('&')}` : '';
}

/** A path+query with query credentials masked, for anything the proxy stores or logs. */
export function redactTarget(target: string, names: readonly string[]): string {
  const q = target.indexOf('?');
  if (q === -1 || names.length === 0) return target;
  return target.slice(0, q) + rewriteQuery(target.slice(q), names, '[redacted]');
}

/** The interceptor that turns an intent into the upstream request for one backend. */
function shapingInterceptor(options: ShapingOptions): Dispatcher.DispatcherComposeInterceptor {
  const stripHeaders = credentialHeaderNames(options.legacyCredentials);
  const stripQuery = credentialQueryNames(options.legacyCredentials);
  const towardNew = options.backend === 'new';
  return (dispatch) => (opts, handler) => {
    const intent = (opts as ShapedDispatchOptions).cutover;
    if (intent === undefined) throw new Error('cutover: an upstream request was dispatched without an OutboundIntent');
    const strip = towardNew && !intent.forwardCredentials;
    const shadow = intent.kind === 'mirror' || intent.kind === 'baseline';
    const headers = (shadow ? shadowHeaders : upstreamHeaders)(intent.rawHeaders, intent.ctx, strip ? stripHeaders : null);
    let path = opts.path;
    if (strip && stripQuery.length) {
      const q = path.indexOf('?');
      if (q !== -1) path = path.slice(0, q) + rewriteQuery(path.slice(q), stripQuery);
    }
    // One copy of the caller's options (not a rest-destructure and a second spread). The intent
    // stays on them: the outbound interceptors after this one read it (undici ignores it).
    return dispatch({ ...opts, path: options.basePath + path, headers }, handler);
  };
}

/** The backend's pool with the shaping interceptor and the outbound credential slot composed on. */
export function shapeDispatcher(pool: Dispatcher, options: ShapingOptions): Dispatcher {
  // compose() wraps in order, so the last interceptor runs first: shaping goes last to see the
  // intent, and the outbound credential interceptors run after it, on the shaped request.
  return pool.compose(...(options.outbound ?? []), shapingInterceptor(options));
}
