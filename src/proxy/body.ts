/**
 * Reading request bodies with bounded time and memory. A slow or stalled client must not hold a
 * connection and its buffered bytes for ever, and many large bodies arriving at once must not
 * add up to more memory than `listen.maxBufferedBodyBytes`: the bytes of every body being read or
 * still in use are reserved in one shared budget, and given back when the response is over.
 */
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { youngReclaimer } from '../forward/reclaim.js';
import type { RejectReason } from '../telemetry/metrics.js';

/** Request-body bytes held at once across all connections. */
export class BodyBudget {
  private used = 0;
  constructor(readonly limit: number) {}

  get bytes(): number {
    return this.used;
  }

  tryReserve(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }

  release(n: number): void {
    this.used = Math.max(0, this.used - n);
  }
}

/** What one request holds of the budget; released once, when its response closes. */
export class BodyHold {
  bytes = 0;
  /** When the request's headers were read: `listen.requestTimeout` counts from here. */
  readonly started = performance.now();
  private released = false;
  constructor(private readonly budget: BodyBudget) {}

  take(n: number): boolean {
    if (this.released || !this.budget.tryReserve(n)) return false;
    this.bytes += n;
    return true;
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.budget.release(this.bytes);
    this.bytes = 0;
  }
}

/** A body the proxy refuses: the status and stable code of its problem+json answer. */
export class BodyRejectedError extends Error {
  constructor(
    readonly statusCode: 408 | 413 | 503,
    readonly code: 'REQUEST_TIMEOUT' | 'BODY_TOO_LARGE' | 'BODY_BUFFER_FULL',
    readonly reason: RejectReason | null,
    message: string,
  ) {
    super(message);
  }
}

export interface BodyLimits {
  bodyLimit: number;
  /** Budget for the whole request, counted from `hold.started`. */
  requestTimeout: number;
  bodyIdleTimeout: number;
}

/**
 * Reads `payload` into one Buffer within the limits. On failure the stream is left paused and
 * the caller answers with the error and closes the connection (what is still coming is not read).
 */
export function readBody(req: IncomingMessage, payload: Readable, hold: BodyHold, limits: BodyLimits, done: (err: Error | null, body?: Buffer) => void): void {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limits.bodyLimit) {
    done(tooLarge(limits.bodyLimit));
    return;
  }
  const chunks: Buffer[] = [];
  let received = 0;
  let finished = false;
  const finish = (err: Error | null, body?: Buffer): void => {
    if (finished) return;
    finished = true;
    clearTimeout(whole);
    clearTimeout(idle);
    payload.off('data', onData);
    payload.off('end', onEnd);
    payload.off('error', onError);
    payload.off('aborted', onAborted);
    if (err !== null) {
      payload.pause();
      chunks.length = 0;
      // Nothing of this body will be used: its bytes go back to the budget at once.
      hold.release();
    }
    done(err, body);
  };
  const timedOut = (what: string): void =>
    finish(new BodyRejectedError(408, 'REQUEST_TIMEOUT', 'body_timeout', `The request ${what}; send the body without pauses.`));
  const left = Math.max(1, limits.requestTimeout - (performance.now() - hold.started));
  const whole = setTimeout(() => timedOut(`was not received within ${limits.requestTimeout} ms`), left);
  let idle = setTimeout(() => timedOut(`body paused for more than ${limits.bodyIdleTimeout} ms`), limits.bodyIdleTimeout);
  const onData = (chunk: Buffer): void => {
    received += chunk.length;
    youngReclaimer.read(chunk.length);
    if (received > limits.bodyLimit) return finish(tooLarge(limits.bodyLimit));
    if (!hold.take(chunk.length)) {
      return finish(new BodyRejectedError(503, 'BODY_BUFFER_FULL', 'body_buffer_full', 'The proxy is holding as many request bodies as it may; retry shortly.'));
    }
    chunks.push(chunk);
    idle.refresh();
  };
  const onEnd = (): void => {
    const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, received);
    chunks.length = 0;
    finish(null, body);
  };
  // A client that goes away mid-body is a bad request (400, answered to nobody), not a proxy failure.
  const onError = (err: Error): void => finish(new ClientBodyError(err));
  const onAborted = (): void => finish(new ClientBodyError());
  idle = idle.unref();
  whole.unref();
  payload.on('data', onData);
  payload.on('end', onEnd);
  payload.on('error', onError);
  payload.on('aborted', onAborted);
}

class ClientBodyError extends Error {
  readonly statusCode = 400;
  readonly code = 'CUTOVER_CLIENT_BODY_ABORTED';
  constructor(cause?: Error) {
    super('the client aborted the request body', { cause });
  }
}

function tooLarge(limit: number): BodyRejectedError {
  return new BodyRejectedError(413, 'BODY_TOO_LARGE', 'body_too_large', `The request body is larger than the proxy accepts (${limit} bytes); send a smaller body or raise listen.bodyLimit.`);
}
