/**
 * The client path's upstream exchange: an undici dispatch handler that streams the backend's
 * answer straight into the client's response, honours backpressure both ways, aborts the upstream
 * request when the client goes away, and keeps a bounded copy of the answer when a comparison
 * wants one. Failures before the first byte become problem+json (502, or 504 on timeout).
 */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Dispatcher } from 'undici';
import { problem, sendProblem } from '../problem.js';
import { outcomeOf, type BackendName, type Outcome, type RouteMetrics, type Role, type Skip } from '../telemetry/metrics.js';
import { BodyCapture, type UpstreamAnswer } from './capture.js';
import { downstreamHeaders, forwardedTrailers, trailerField } from './headers.js';
import { youngReclaimer } from './reclaim.js';
import { isTimeout, type Upstream } from './upstream.js';
import type { OutboundIntent, ShapedDispatchOptions } from './shaping.js';
import { TokenUnavailableError, tokenUnavailableProblem } from '../credentials/outbound/errors.js';

type Controller = Dispatcher.DispatchController;

export class ClientAbortedError extends Error {
  readonly code = 'CUTOVER_CLIENT_ABORTED';
  constructor() {
    super('the client closed the connection');
  }
}

const NO_HEADERS: IncomingHttpHeaders = {};

/** A client connection, with the counters of Node's internals the stall watch reads. */
type ClientSocket = Socket & { _bytesDispatched?: number; _handle?: { writeQueueSize?: number } | null };
export const EMPTY = Buffer.alloc(0);

export interface ExchangeRequest {
  method: string;
  /** Canonical path and query as the backend expects them (without the backend's base path). */
  path: string;
  body: Buffer | null;
  /** What the shaping layer needs to build the upstream headers (shaping.ts). */
  intent: OutboundIntent;
}

/** What to call when an exchange is over: the answer (with the captured body when capturing). */
export type OnSettled = (answer: UpstreamAnswer) => void;

/**
 * A 304 may carry the Content-Length of the representation it stands for (RFC 9110 §8.6) and never
 * has content; undici 7 still holds it to that length and fails the exchange once the head is read
 * (UND_ERR_RES_CONTENT_LENGTH_MISMATCH), after the status and headers were handed on. That is a
 * complete answer, not a broken one: the client gets its 304 and the backend is not blamed.
 */
export function isWholeNotModified(status: number, err: Error): boolean {
  return status === 304 && (err as { code?: unknown }).code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH';
}

/**
 * An exchange's deadline passed: one still queued for a pooled connection is answered now (undici
 * calls its onRequestStart later, which aborts before sending); one under way is aborted.
 */
export function expire(controller: Controller | null, err: Error, answerNow: (err: Error) => void): void {
  if (controller === null) answerNow(err);
  else controller.abort(err);
}

function elapsed(start: number): number {
  return (performance.now() - start) / 1000;
}

/**
 * The two clocks of one upstream exchange. undici calls the handler's `onRequestStart` when it hands
 * the request a socket (client-h1 `writeH1` → `request.onConnect`), so latency runs from there and
 * the time spent waiting for a pooled connection (and connecting) is measured apart: otherwise a
 * small mirror pool makes a healthy backend look slow next to the live one.
 */
export class ExchangeClock {
  private readonly dispatched = performance.now();
  private sent = 0;

  /** The request has a socket: stops the queue clock (once) and records the wait. */
  onSocket(metrics: RouteMetrics, backend: BackendName, role: Role): void {
    if (this.sent !== 0) return;
    this.sent = performance.now();
    metrics.queued(backend, role, (this.sent - this.dispatched) / 1000);
  }

  /**
   * When the request was dispatched, epoch ms on the wall clock the evidence's step starts use (the
   * evidence leaves out requests sent before a weight change). Worked out from now, not from
   * `performance.timeOrigin`: after the wall clock stepped (NTP, a resumed VM) the two disagree for
   * the rest of the process, and every answer would read as sent before its step.
   */
  startedAt(): number {
    return Date.now() - (performance.now() - this.dispatched);
  }

  /** Milliseconds since the request was dispatched. */
  sinceDispatch(): number {
    return performance.now() - this.dispatched;
  }

  /** Seconds since the request got its socket; from dispatch when it never got one (a failed connect). */
  seconds(): number {
    return elapsed(this.sent === 0 ? this.dispatched : this.sent);
  }
}

/** Builds the options `upstream.dispatcher` takes, once per call; the shaping layer adds headers and base path. */
export function dispatchOptions(upstream: Upstream, req: ExchangeRequest): ShapedDispatchOptions {
  return {
    origin: upstream.origin,
    path: req.path,
    method: req.method as Dispatcher.HttpMethod,
    body: req.body,
    cutover: req.intent,
    // undici's own pipelining flag, kept off: whether a request may be sent again after a stale
    // connection is decided by forward/retry.ts alone.
    idempotent: false,
  };
}

export class ClientExchange implements Dispatcher.DispatchHandler {
  private controller: Controller | null = null;
  private readonly clock = new ExchangeClock();
  private status = 0;
  private headers: IncomingHttpHeaders = NO_HEADERS;
  private readonly capture: BodyCapture | null;
  private settled = false;
  private clientGone = false;
  /**
   * `backends.X.timeout` counts from dispatch: time queued for a connection is spent from it too.
   * Time paused for a slow client is not (it is the client's pace, not the backend's): the deadline
   * moves on by it, and a client that takes nothing for `listen.sendTimeout` is cut as gone instead.
   */
  private deadline: NodeJS.Timeout;
  /**
   * While paused for the client: cuts a client that takes no bytes for `listen.sendTimeout`. Made at
   * the first pause and refreshed at the next ones; a look while not paused does nothing.
   */
  private stall: NodeJS.Timeout | null = null;
  /** What the kernel had taken when the stall watch last looked: more at the next look is progress. */
  private stallMark = 0;

  constructor(
    private readonly res: ServerResponse,
    private readonly upstream: Upstream,
    private readonly metrics: RouteMetrics,
    captureLimit: number,
    private readonly onSettled: OnSettled | null,
    /** listen.sendTimeout: how long the client may take no bytes of the answer. */
    private readonly sendTimeout = 60_000,
    /** Why this request is not mirrored, when it is not: counted with the request (recordLive). */
    private readonly skip: Skip | null = null,
  ) {
    this.capture = captureLimit > 0 ? new BodyCapture(captureLimit) : null;
    res.once('close', this.onClientClose);
    this.deadline = setTimeout(this.onDeadline, upstream.timeout);
    upstream.inFlight++;
  }

  private readonly onDeadline = (): void => expire(this.controller, new UpstreamDeadlineError(), (err) => this.onResponseError(null, err));

  /** The client took nothing for `listen.sendTimeout`: it is treated as gone (not the backend's failure). */
  private readonly onStall = (): void => {
    if (this.settled || this.pausedAt === 0) return;
    // Still taking bytes, only slowly ('drain' waits for the whole buffer, and the kernel wakes the
    // writer only once a good part of its own buffer is free): not stalled.
    const taken = this.taken();
    // Nothing waiting to go out on the connection (an answer queued behind one whose backend has
    // not answered yet): the client has nothing to read, so it is not the one stalling.
    if (taken > this.stallMark || !this.sending()) {
      this.stallMark = taken;
      this.stall!.refresh();
      return;
    }
    this.onClientClose();
    this.cut();
  };

  /** The connection of this answer (its own socket, or the one it is queued on). */
  private connection(): ClientSocket | null {
    return (this.res.socket ?? this.res.req?.socket ?? null) as ClientSocket | null;
  }

  /** Whether bytes wait to be taken by the client on the connection (in Node's buffer or libuv's queue). */
  private sending(): boolean {
    const socket = this.connection();
    return socket !== null && (socket.writableLength > 0 || (socket._handle?.writeQueueSize ?? 0) > 0);
  }

  /**
   * Cuts the client's connection: this answer cannot be finished. An answer queued behind another
   * (pipelining) has no socket yet: its connection is cut when it gets it, after the answers ahead.
   * Node 20 arranges that for a destroyed response; Node 24 does not, and sent the queued answer's
   * head and first bytes, then left the client waiting for the rest.
   */
  private cut(): void {
    if (this.res.socket === null && !this.res.destroyed) this.res.once('socket', (socket: Socket) => socket.destroy());
    this.res.destroy();
  }

  /**
   * Bytes of the client's connection the kernel has taken so far (handed to libuv, less what libuv
   * still holds): it only grows, and only while the client reads. An answer queued behind another
   * on a pipelined connection reads the connection: it waits while the answer ahead is taken.
   */
  private taken(): number {
    const socket = this.connection();
    return socket === null ? 0 : (socket._bytesDispatched ?? socket.bytesWritten) - (socket._handle?.writeQueueSize ?? 0);
  }

  /** Resumes the upstream read after a 'drain', outside the write that emitted it. */
  private readonly resumeUpstream = (): void => {
    if (!this.settled && this.pausedAt === 0) this.controller?.resume();
  };

  private readonly onClientClose = (): void => {
    if (this.settled) return;
    this.clientGone = true;
    this.controller?.abort(new ClientAbortedError());
  };

  /** Made on the first backpressure only: most answers fit the socket buffer and never need it. */
  private onDrain: (() => void) | null = null;
  /** The connection watched for the client leaving while this answer waits its turn (pipelining). */
  private queuedOn: Socket | null = null;
  /**
   * Time the upstream read stood paused because the client read slower than the backend sent
   * (ms): the client's pace, not the backend's, so it is taken out of the backend's latency (the
   * mirrored answer, which nobody reads slowly, is never paused: the two would not compare).
   */
  private pausedMs = 0;
  private pausedAt = 0;

  onRequestStart(controller: Controller): void {
    this.controller = controller;
    this.clock.onSocket(this.metrics, this.upstream.name, 'primary');
    if (this.clientGone) controller.abort(new ClientAbortedError());
    else if (this.settled) controller.abort(new UpstreamDeadlineError());
  }

  onResponseStart(controller: Controller, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode < 200) return;
    this.status = statusCode;
    this.headers = headers;
    this.capture?.expect(Number(headers['content-length']));
    try {
      const out = downstreamHeaders(headers);
      if (headers.trailer !== undefined) {
        const named = trailerField(headers, statusCode, this.res.req?.method, this.res.useChunkedEncodingByDefault);
        if (named !== undefined) out.trailer = named;
      }
      this.res.writeHead(statusCode, statusMessage || undefined, out);
    } catch {
      // A header Node refuses to send (invalid characters): the answer cannot be relayed as is.
      controller.abort(new Error('invalid response header'));
    }
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    youngReclaimer.read(chunk.length);
    this.capture?.add(chunk);
    if (!this.res.write(chunk)) {
      controller.pause();
      this.pausedAt = performance.now();
      clearTimeout(this.deadline);
      this.stallMark = this.taken();
      if (this.stall === null) this.stall = setTimeout(this.onStall, this.sendTimeout);
      else this.stall.refresh();
      this.onDrain ??= () => {
        this.resumed();
        if (this.settled) return;
        // The budget's rest: the time since dispatch, less the time paused for the client.
        this.deadline = setTimeout(this.onDeadline, Math.max(0, this.upstream.timeout - (this.clock.sinceDispatch() - this.pausedMs)));
        // A pipelined answer's write can emit this answer's 'drain' while undici runs another
        // connection's parser: resuming then, inside it, breaks undici's one-parser-at-a-time rule.
        queueMicrotask(this.resumeUpstream);
      };
      this.res.once('drain', this.onDrain);
      if (this.res.socket === null) this.watchQueued();
    }
  }

  /**
   * An answer queued behind an earlier one on a pipelined connection has no socket yet: when the
   * client leaves, it sees neither 'close' nor 'drain', and would wait paused until the backend's
   * timeout (then counted against the backend). Its connection's 'close' says the client left.
   */
  private watchQueued(): void {
    const socket = this.res.req?.socket ?? null;
    if (socket === null || this.queuedOn !== null) return;
    if (socket.destroyed) {
      this.onClientClose();
      return;
    }
    this.queuedOn = socket;
    socket.once('close', this.onClientClose);
  }

  private resumed(): void {
    if (this.pausedAt === 0) return;
    this.pausedMs += performance.now() - this.pausedAt;
    this.pausedAt = 0;
  }

  onResponseEnd(_controller?: Controller | null, trailers?: IncomingHttpHeaders): void {
    // The backend's trailer fields (a checksum, a status after streaming) go on to the client. Node
    // sends them with a chunked answer only, which is what an answer with trailers is.
    const pass = forwardedTrailers(trailers, this.headers.connection);
    if (pass !== null) {
      try {
        this.res.addTrailers(pass);
      } catch {
        // A field Node refuses (invalid characters): the answer goes without its trailers.
      }
    }
    this.res.end();
    this.settle(undefined);
  }

  onResponseError(_controller: Controller | null, err: Error): void {
    if (this.settled) return;
    if (isWholeNotModified(this.status, err) && !this.clientGone) {
      this.onResponseEnd();
      return;
    }
    if (err instanceof ClientAbortedError || this.clientGone) {
      // Nobody is listening any more; the upstream request is already aborted.
      this.settle(err);
      return;
    }
    if (err instanceof TokenUnavailableError && !this.res.headersSent) {
      // Nothing was sent upstream: the proxy could not get its own credential for this backend.
      const problem = tokenUnavailableProblem(err);
      this.res.setHeader('retry-after', String(problem.retryAfter));
      sendProblem(this.res, problem);
    } else if (this.res.headersSent) {
      // Mid-body failure: the only honest signal left is to cut the connection.
      this.cut();
    } else {
      const timeout = isTimeout(err);
      const backend = this.upstream.name;
      sendProblem(
        this.res,
        timeout
          ? problem(504, 'UPSTREAM_TIMEOUT', 'Upstream timeout', `The ${backend} backend did not answer within ${this.upstream.timeout} ms; retry later or raise backends.${backend}.timeout.`, { backend })
          : problem(502, 'UPSTREAM_UNAVAILABLE', 'Bad gateway', `The ${backend} backend could not be reached or broke the connection; retry later.`, { backend }),
      );
    }
    this.settle(err);
  }

  /**
   * Undoes the constructor for an exchange that was never dispatched (the dispatch threw before
   * undici took it): no deadline, no place in the backend's count, nothing reported.
   */
  discard(): void {
    if (this.release()) this.res.off('close', this.onClientClose);
  }

  /** Ends the exchange's hold on its deadline, its watch and its place in the backend's count, once. */
  private release(): boolean {
    if (this.settled) return false;
    this.settled = true;
    clearTimeout(this.deadline);
    if (this.stall !== null) clearTimeout(this.stall);
    this.queuedOn?.off('close', this.onClientClose);
    this.upstream.inFlight--;
    return true;
  }

  private settle(err: Error | undefined): void {
    if (!this.release()) return;
    this.resumed();
    const seconds = Math.max(0, this.clock.seconds() - this.pausedMs / 1000);
    const { outcome, error } = recordLive(this.metrics, this.upstream.name, this.clock, seconds, this.status, err, this.clientGone, this.skip);
    if (this.onSettled !== null) {
      this.onSettled({
        outcome,
        status: this.status,
        headers: this.headers,
        body: this.capture?.body() ?? EMPTY,
        truncated: this.capture?.truncated ?? false,
        seconds,
        error,
      });
    }
  }
}

/**
 * The end of a live exchange (a request or an upgrade), counted for its backend as `primary`; the
 * outcome, and the answer's `error` reason. A client that walks away is not the backend's failure:
 * it is not counted against it, and its reason is `client_aborted`. `skip`, why the request was not
 * mirrored, is counted with it or not at all, so `comparisons + skipped = requests` holds.
 */
export function recordLive(metrics: RouteMetrics, backend: BackendName, clock: ExchangeClock, seconds: number, status: number, err: Error | undefined, clientGone: boolean, skip: Skip | null): { outcome: Outcome; error: string | undefined } {
  const aborted = err instanceof ClientAbortedError || clientGone;
  const outcome: Outcome = err === undefined ? outcomeOf(status) : isTimeout(err) ? 'timeout' : 'error';
  if (!aborted) {
    metrics.request(backend, 'primary', outcome, seconds, clock.startedAt());
    if (skip !== null) metrics.skip(skip);
  } else if (status === 0) metrics.unanswered(backend, clock.startedAt());
  return { outcome, error: aborted ? 'client_aborted' : err === undefined ? undefined : outcome };
}

/**
 * An exchange nobody streams to: a mirrored call, or a baseline replay. The answer is only
 * captured (bounded) and handed to `onSettled`.
 */
export class CapturingExchange implements Dispatcher.DispatchHandler {
  private readonly clock = new ExchangeClock();
  private status = 0;
  private headers: IncomingHttpHeaders = NO_HEADERS;
  private readonly capture: BodyCapture;
  private settled = false;
  private controller: Controller | null = null;
  private readonly deadline: NodeJS.Timeout;

  constructor(
    private readonly backend: BackendName,
    private readonly role: Role,
    private readonly metrics: RouteMetrics,
    captureLimit: number,
    /**
     * Hard budget for the whole exchange, from dispatch: a mirror still waiting for a pooled
     * connection, or a backend that drips bytes forever, ends here and frees its mirror slot.
     */
    deadlineMs: number,
    private readonly onSettled: OnSettled,
    /** A HEAD request: its answer's Content-Length announces a body that never comes. */
    private readonly head = false,
  ) {
    this.capture = new BodyCapture(captureLimit);
    this.deadline = setTimeout(this.onDeadline, deadlineMs);
    this.deadline.unref();
  }

  private readonly onDeadline = (): void => expire(this.controller, new DeadlineError(), (err) => this.settle(err));

  onRequestStart(controller: Controller): void {
    this.controller = controller;
    this.clock.onSocket(this.metrics, this.backend, this.role);
    if (this.settled) controller.abort(new DeadlineError());
  }

  onResponseStart(controller: Controller, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return;
    this.status = statusCode;
    this.headers = headers;
    // An announced length past the cap is known to be truncated now: reading any of it is waste.
    // Not for an answer without a body (HEAD, 204, 304), whose Content-Length is the resource's.
    if (this.head || statusCode === 204 || statusCode === 304) return;
    const length = Number(headers['content-length']);
    if (length > this.capture.limit) {
      this.capture.truncated = true;
      this.settle(undefined);
      controller.abort(new TruncatedError());
    } else this.capture.expect(length);
  }

  onResponseData(controller: Controller, chunk: Buffer): void {
    youngReclaimer.read(chunk.length);
    if (this.settled) return;
    this.capture.add(chunk);
    // Past the cap nothing more is kept, so reading on would only burn a connection and CPU.
    if (this.capture.truncated) {
      this.settle(undefined);
      controller.abort(new TruncatedError());
    }
  }

  onResponseEnd(): void {
    this.settle(undefined);
  }

  onResponseError(_controller: Controller, err: Error): void {
    this.settle(isWholeNotModified(this.status, err) ? undefined : err);
  }

  private settle(err: Error | undefined): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.deadline);
    const seconds = this.clock.seconds();
    const outcome = err === undefined ? outcomeOf(this.status) : err instanceof DeadlineError || isTimeout(err) ? 'timeout' : 'error';
    this.metrics.request(this.backend, this.role, outcome, seconds);
    this.onSettled({
      outcome,
      status: this.status,
      headers: this.headers,
      body: this.capture.body(),
      truncated: this.capture.truncated,
      seconds,
      error: err === undefined ? undefined : outcome,
    });
  }
}

export class UpstreamDeadlineError extends Error {
  readonly code = 'CUTOVER_UPSTREAM_DEADLINE';
  constructor() {
    super('the backend did not answer within its timeout, queue time included');
  }
}

class DeadlineError extends Error {
  readonly code = 'CUTOVER_SHADOW_DEADLINE';
  constructor() {
    super('the mirrored call ran past its deadline');
  }
}

class TruncatedError extends Error {
  readonly code = 'CUTOVER_CAPTURE_FULL';
  constructor() {
    super('the captured body reached its cap');
  }
}
