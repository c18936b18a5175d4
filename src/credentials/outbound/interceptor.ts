/**
 * The proxy's own credential on the wire: an undici compose interceptor placed in the
 * upstream-shaping layer (forward/shaping.ts `ShapingOptions.outbound`), so live, mirrored,
 * baseline and upgrade requests to a backend all carry it.
 *
 * Per request: the header comes from `cachedHeader()` synchronously when it is at hand (static
 * value, cached token); only a miss awaits `headerFor()`, and a failure there reaches the caller's
 * handler as `onResponseError(null, TokenUnavailableError)` (the client path answers 502
 * `TOKEN_UNAVAILABLE`, a mirror is counted as an error). On a 401 from the upstream the token is
 * purged; an idempotent request whose body is a buffer (or none) is sent once more with a fresh one.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { BackendName } from '../../telemetry/metrics.js';
import type { OutboundKind, ShapedDispatchOptions } from '../../forward/shaping.js';
import { replayable } from '../../forward/retry.js';
import { retryOnceAfter, type Header, type OutboundAuth, type OutboundMapping } from './index.js';

type Controller = Dispatcher.DispatchController;
type Handler = Dispatcher.DispatchHandler;
type Dispatch = (opts: Dispatcher.DispatchOptions, handler: Handler) => boolean;

/** `opts` sent on, with `header` in place of any field of that name (no copy when there is none). */
function sendWith(dispatch: Dispatch, opts: Dispatcher.DispatchOptions, header: Header | null, handler: Handler): boolean {
  return dispatch(header === null ? opts : { ...opts, headers: withHeader(opts.headers, header) }, handler);
}

/** `headers` (a flat name/value list) with every field named like `header` replaced by it. */
function withHeader(headers: Dispatcher.DispatchOptions['headers'], header: Header): string[] {
  const [name, value] = header;
  const flat = Array.isArray(headers) ? (headers as string[]) : [];
  const out: string[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) if (flat[i].toLowerCase() !== name) out.push(flat[i], flat[i + 1]);
  out.push(name, value);
  return out;
}

/**
 * The controller the caller's handler holds across a retry: it always acts on the current attempt,
 * so an abort, pause or resume during the second attempt reaches the second request.
 */
class StableController implements Controller {
  current: Controller | null = null;
  /** Between two attempts (the 401 drained, the retry waiting for a token): an abort ends the request here. */
  between: ((reason: Error) => void) | null = null;
  private abortedWith: Error | null = null;
  get aborted(): boolean {
    return this.abortedWith !== null || (this.current?.aborted ?? false);
  }
  get paused(): boolean {
    return this.current?.paused ?? false;
  }
  get reason(): Error | null {
    return this.abortedWith ?? this.current?.reason ?? null;
  }
  abort(reason: Error): void {
    this.abortedWith = reason;
    if (this.between !== null) this.between(reason);
    else this.current?.abort(reason);
  }
  pause(): void {
    this.current?.pause();
  }
  resume(): void {
    this.current?.resume();
  }
  /** A new attempt got its socket: abort it at once when the caller already gave up. */
  attach(controller: Controller): void {
    this.current = controller;
    this.between = null;
    if (this.abortedWith !== null) controller.abort(this.abortedWith);
  }
}

/**
 * Watches one request's answers: a 401 purges the header it was sent with, and when a retry is
 * allowed the 401 is swallowed (its body drained) and the request sent again through `resend`; the
 * caller's handler then sees only the second answer, through one stable controller.
 */
class AuthRetryHandler implements Handler {
  private readonly stable = new StableController();
  private started = false;
  /** Set while the swallowed 401's body drains; the retry goes out at its end. */
  private retrying = false;
  private retried = false;
  /** The header the current attempt carries (what a 401 purges). */
  sent: Header | null = null;

  constructor(
    private readonly dispatch: Dispatch,
    private readonly opts: Dispatcher.DispatchOptions,
    private readonly inner: Handler,
    private readonly auth: OutboundAuth,
    private readonly mapping: OutboundMapping | undefined,
    private readonly canRetry: boolean,
    /** Told when the request is sent again after a 401 (`cutover_upstream_retries_total{reason="unauthorized"}`). */
    private readonly onRetry?: (kind: OutboundKind) => void,
  ) {}

  /** Sends the request with `header` (the one a 401 on this attempt purges). */
  send(header: Header | null): boolean {
    this.sent = header;
    return sendWith(this.dispatch, this.opts, header, this);
  }

  /** Whether the caller's handler was told the request's end (an error) already. */
  private ended = false;

  /** On a token cache miss (or the retry): one refresh is in flight however many requests wait on it. */
  async fetchAndSend(): Promise<void> {
    let header: Header | null;
    try {
      header = this.auth.cachedHeader(this.mapping) ?? (await this.auth.headerFor(this.mapping));
    } catch (err) {
      // Nothing was sent, so there is no controller yet; every caller's handler copes with null.
      this.onResponseError(null, err instanceof Error ? err : new Error(String(err)));
      return;
    }
    // The caller gave up while the retry waited for its token (its deadline): nothing more is sent.
    if (this.ended) return;
    this.send(header);
  }

  onRequestStart(controller: Controller, context: unknown): void {
    this.stable.attach(controller);
    if (this.started) return;
    this.started = true;
    this.inner.onRequestStart?.(this.stable, context);
  }

  onRequestUpgrade(_controller: Controller, statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.inner.onRequestUpgrade?.(this.stable, statusCode, headers, socket);
  }

  onResponseStart(_controller: Controller, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode === 401) {
      this.auth.purge(this.mapping, this.sent);
      if (this.canRetry && !this.retried) {
        this.retrying = true;
        return;
      }
    }
    this.inner.onResponseStart?.(this.stable, statusCode, headers, statusMessage);
  }

  onResponseData(_controller: Controller, chunk: Buffer): void {
    if (this.retrying) return;
    this.inner.onResponseData?.(this.stable, chunk);
  }

  onResponseEnd(_controller: Controller, trailers: IncomingHttpHeaders): void {
    if (this.retrying) {
      this.retrying = false;
      this.retried = true;
      if (this.stable.aborted) {
        this.onResponseError(null, this.stable.reason ?? new Error('aborted'));
        return;
      }
      // Until the retry has a socket, an abort (the caller's deadline) ends the request at once: it
      // must not wait for a slow token endpoint past the backend's timeout.
      this.stable.between = (reason) => this.onResponseError(null, reason);
      this.onRetry?.((this.opts as Partial<ShapedDispatchOptions>).cutover?.kind ?? 'live');
      void this.fetchAndSend();
      return;
    }
    this.inner.onResponseEnd?.(this.stable, trailers);
  }

  onResponseError(_controller: Controller | null, err: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.stable.between = null;
    this.inner.onResponseError?.(this.stable, err);
  }
}

/**
 * The interceptor for one backend. Toward `new`, the request's credential mapping (from
 * `OutboundIntent.mapping`) picks the identity; toward `legacy` only the backend's own auth applies.
 */
export function outboundAuthInterceptor(backend: BackendName, auth: OutboundAuth, retried?: (kind: OutboundKind) => void): Dispatcher.DispatcherComposeInterceptor {
  const oauth2 = auth.kind === 'oauth2-client-credentials';
  return (dispatch) => (opts, handler) => {
    const intent = (opts as Partial<ShapedDispatchOptions>).cutover;
    const mapping = backend === 'new' ? intent?.mapping : undefined;
    if (auth.kind === 'none' && mapping?.header === undefined) return dispatch(opts, handler);
    if (!oauth2) return sendWith(dispatch, opts, auth.cachedHeader(mapping), handler);
    const canRetry = intent?.kind !== 'upgrade' && retryOnceAfter(auth, opts.method, 401, false) && replayable(opts.body);
    const watch = new AuthRetryHandler(dispatch, opts, handler, auth, mapping, canRetry, retried);
    const cached = auth.cachedHeader(mapping);
    if (cached === null) {
      void watch.fetchAndSend();
      return true;
    }
    return watch.send(cached);
  };
}
