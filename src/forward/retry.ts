/**
 * Sending a request again, and the one case the proxy does it by itself: a kept-alive connection
 * the backend had already closed.
 *
 * A backend closes an idle connection when its own keep-alive timeout fires (Go's IdleTimeout,
 * gunicorn's keepalive, a load balancer's idle timeout), often without saying when in a
 * `Keep-Alive: timeout=` hint. A request written to that connection just before the close is seen
 * fails with a reset or "other side closed" before a single byte of answer. Answering that with a
 * 502 makes a healthy backend look broken, sporadically, and puts a false error in the comparison.
 * nginx sends such a request again on another connection (for methods other than POST, LOCK and
 * PATCH); so does cutover, for idempotent methods (RFC 9110 §9.2.2) whose body is held in memory,
 * when the failed connection had carried an earlier request and no byte of answer came back. A
 * request that was never written at all (its idle connection was reset as it was dispatched) goes
 * again whatever its method: the backend cannot have seen it. A fresh connection that fails is the
 * backend failing, and is answered as such.
 *
 * It lives in the pool's client (undici Pool `factory`), the one place that knows which connection
 * a request went out on, and costs one small object per request: no interceptor, no second
 * controller. The caller's handler sees one start and the answer of the attempt that got one.
 */
import { Client, type Dispatcher } from 'undici';
import type { OutboundKind, ShapedDispatchOptions } from './shaping.js';

/** Methods a retry cannot repeat a side effect of (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method) || IDEMPOTENT.has(method.toUpperCase());
}

/** A body that can be sent twice: none, or bytes held in memory (the proxy buffers bodies). */
export function replayable(body: Dispatcher.DispatchOptions['body']): boolean {
  return body === null || body === undefined || typeof body === 'string' || body instanceof Uint8Array;
}

/**
 * The connection went away under the request: closed by the other side, reset, or the write hit a
 * closed socket. Not a timeout, a parse error or an abort: those say nothing about a stale connection.
 */
const BROKEN_CONNECTION = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

/**
 * Attempts per request at most. Each stale connection is closed by the failure it causes, so a
 * pool empties itself of them; the bound only keeps a backend that resets every reused connection
 * from bouncing one request around a busy pool.
 */
const MAX_ATTEMPTS = 4;

/** Where a client sends a request again, and who is told. */
export interface RetryTarget {
  /** The pool the client belongs to: it picks another connection (or opens one). */
  pool(): Dispatcher;
  /** Told of each request sent again, with the kind of call (live, mirror, baseline). */
  retried?: (kind: OutboundKind) => void;
}

/**
 * What undici's client hands a request: the handler as its pool passed it on, in undici's own
 * callback form (core/request.js calls these).
 */
interface ClientHandler {
  onConnect(abort: (err?: Error) => void, context?: unknown): void;
  onError(err: Error): void;
  onHeaders?(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean;
  onData?(chunk: Buffer): boolean;
  onComplete?(trailers: Buffer[] | null): void;
  onBodySent?(chunk: unknown): void;
  onRequestSent?(): void;
  onResponseStarted?(): void;
}

/**
 * A pool's client that knows whether a request goes out on a connection that carried one before.
 * undici writes one request at a time per connection here (pipelining 1), says 'connect' before
 * the first and 'disconnect' once a connection is gone, so a count reset at both and taken as each
 * request is written is exact. Every request but an upgrade is counted (a POST makes a connection
 * reused too); only those that may be sent again are also watched for a stale failure.
 */
export class ReuseCountingClient extends Client {
  /** Requests written on the current connection (0 between connections). */
  carried = 0;

  constructor(
    origin: string | URL,
    options: Client.Options,
    private readonly target: RetryTarget,
  ) {
    super(origin, options);
    const reset = (): void => {
      this.carried = 0;
    };
    this.on('connect', reset);
    this.on('disconnect', reset);
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if (handler instanceof StaleWatch) return super.dispatch(opts, handler.next(this) as unknown as Dispatcher.DispatchHandler);
    const given = handler as unknown as Partial<ClientHandler>;
    // A handler in the newer form (dispatched to the client directly, not through its pool), or an
    // upgrade (its connection becomes a tunnel and never comes back), is passed as it is.
    if (typeof given.onConnect !== 'function' || opts.upgrade) return super.dispatch(opts, handler);
    const retry = !replayable(opts.body) ? Retry.Never : isIdempotent(opts.method) ? Retry.Idempotent : Retry.Unsent;
    return super.dispatch(opts, new StaleWatch(this, this.target, opts, given as ClientHandler, retry) as unknown as Dispatcher.DispatchHandler);
  }
}

/** When a request may be sent again after its connection turned out stale. */
const enum Retry {
  /** Its body cannot be sent twice: never. */
  Never,
  /** Only if it was never written (a POST, a PATCH): the backend cannot have seen it. */
  Unsent,
  /** Also after it was written, before any byte of answer (an idempotent method). */
  Idempotent,
}

/**
 * One request's attempts. Each callback reaches the caller's handler unchanged, except an error
 * on a stale connection: that sends the request again through the pool. Stale is judged per
 * attempt, on that attempt's own connection:
 *   - written on a connection that carried a request before, and failed before any byte of answer
 *     (undici's message begin) with a broken connection;
 *   - or never written: failed while waiting for its client's connection, which had carried
 *     requests and broke (undici fails the requests queued on a connection reset while idle).
 * A fresh connection that fails (refused, reset during its TLS handshake) is never stale. The
 * caller holds one abort across attempts (`abort`), which ends the current one, or the request
 * itself between two.
 */
class StaleWatch implements ClientHandler {
  private written = false;
  private reused = false;
  private answered = false;
  private attempts = 1;
  private ended = false;
  /** The current attempt's abort; null between two attempts. */
  private current: ((err?: Error) => void) | null = null;
  private connected = false;

  constructor(
    private client: ReuseCountingClient,
    private readonly target: RetryTarget,
    private readonly opts: Dispatcher.DispatchOptions,
    private readonly handler: ClientHandler,
    private readonly retry: Retry,
  ) {}

  /** The next attempt goes to `client`: judged afresh. */
  next(client: ReuseCountingClient): this {
    this.client = client;
    this.written = false;
    this.reused = false;
    this.answered = false;
    return this;
  }

  private readonly abort = (err?: Error): void => {
    if (this.current !== null) this.current(err);
    else this.end(err ?? new Error('aborted'));
  };

  onConnect(abort: (err?: Error) => void): void {
    // The caller gave up while this attempt waited in the pool: it is not sent.
    if (this.ended) {
      abort(new Error('aborted'));
      return;
    }
    this.written = true;
    this.reused = this.client.carried++ > 0;
    this.current = abort;
    if (this.connected) return;
    this.connected = true;
    this.handler.onConnect(this.abort);
  }

  onResponseStarted(): void {
    // The first byte of an answer: whatever breaks now, the backend got the request.
    this.answered = true;
    this.handler.onResponseStarted?.();
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    this.answered = true;
    return this.handler.onHeaders?.(statusCode, rawHeaders, resume, statusText) ?? true;
  }

  onData(chunk: Buffer): boolean {
    return this.handler.onData?.(chunk) ?? true;
  }

  onComplete(trailers: Buffer[] | null): void {
    this.ended = true;
    this.handler.onComplete?.(trailers);
  }

  onBodySent(chunk: unknown): void {
    this.handler.onBodySent?.(chunk);
  }

  onRequestSent(): void {
    this.handler.onRequestSent?.();
  }

  /** Whether `err` ended this attempt on a stale connection, and the request may go again. */
  private stale(err: Error): boolean {
    if (this.retry === Retry.Never || this.attempts >= MAX_ATTEMPTS || !BROKEN_CONNECTION.has((err as { code?: string }).code ?? '')) return false;
    if (!this.written) return this.client.carried > 0;
    return this.retry === Retry.Idempotent && this.reused && !this.answered;
  }

  onError(err: Error): void {
    if (this.ended) return;
    if (this.stale(err)) {
      this.attempts++;
      this.current = null;
      this.target.retried?.((this.opts as Partial<ShapedDispatchOptions>).cutover?.kind ?? 'live');
      // Out of undici's error path first: the failed connection is still being torn down.
      queueMicrotask(() => {
        if (this.ended) return;
        try {
          this.target.pool().dispatch(this.opts, this as unknown as Dispatcher.DispatchHandler);
        } catch (dispatchErr) {
          this.end(dispatchErr instanceof Error ? dispatchErr : new Error(String(dispatchErr)));
        }
      });
      return;
    }
    this.end(err);
  }

  private end(err: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.current = null;
    this.handler.onError(err);
  }
}

/** A pool `factory` whose clients send a request failed by a stale connection again, through `target`. */
export function reuseCountingFactory(target: RetryTarget): (origin: URL, options: object) => Dispatcher {
  return (origin, options) => new ReuseCountingClient(origin, options as Client.Options, target);
}
