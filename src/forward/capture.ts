/**
 * A bounded copy of a response, kept for comparison. Past `limit` bytes the rest is counted but
 * not kept, and the copy is marked truncated: a 10 MB answer costs at most `limit` bytes of memory.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { Outcome } from '../telemetry/metrics.js';

export interface UpstreamAnswer {
  outcome: Outcome;
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
  truncated: boolean;
  /** Seconds from the moment the request got a pooled connection to the end of the body (or the failure). */
  seconds: number;
  /** Set when the exchange failed: a short, internal-free reason. */
  error?: string;
}

/** Announced bodies from this size on are copied into one buffer as they arrive (below, one chunk is usual). */
const WHOLE_FROM = 64 * 1024;

export class BodyCapture {
  private readonly chunks: Buffer[] = [];
  /** The body's own buffer when its length was announced (`expect`): chunks are copied in and let go at once. */
  private whole: Buffer | null = null;
  private size = 0;
  truncated = false;
  readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  /**
   * The answer's `content-length`, when it is within the cap: a big body is then gathered in one
   * buffer of that size instead of keeping every socket chunk until the end and joining them (which
   * held the body twice at its peak). undici refuses a body longer than announced.
   */
  expect(length: number): void {
    if (this.size === 0 && this.whole === null && length >= WHOLE_FROM && length <= this.limit) this.whole = Buffer.allocUnsafeSlow(length);
  }

  add(chunk: Buffer): void {
    if (this.truncated) return;
    const whole = this.whole;
    if (whole !== null) {
      if (this.size + chunk.length <= whole.length) {
        chunk.copy(whole, this.size);
        this.size += chunk.length;
        return;
      }
      // Longer than announced after all: back to a list of chunks.
      this.chunks.push(whole.subarray(0, this.size));
      this.whole = null;
    }
    const room = this.limit - this.size;
    if (chunk.length > room) {
      this.truncated = true;
      if (room > 0) {
        this.chunks.push(Buffer.from(chunk.subarray(0, room)));
        this.size += room;
      }
      return;
    }
    // undici hands out views of the socket's read chunks, which are never reused: keeping them is safe.
    this.chunks.push(chunk);
    this.size += chunk.length;
  }

  body(): Buffer {
    const whole = this.whole;
    if (whole !== null) {
      if (this.size < whole.length) return whole.subarray(0, this.size); // cut short: never the unwritten rest
      OWNED.add(whole.buffer);
      return whole;
    }
    if (this.chunks.length === 1) return this.chunks[0];
    const body = Buffer.concat(this.chunks, this.size);
    // Only a fresh, unpooled copy may be moved to a comparison worker without copying it again.
    if (body.byteOffset === 0 && body.byteLength === body.buffer.byteLength) OWNED.add(body.buffer);
    return body;
  }
}

/** Backing stores made by `BodyCapture` alone: nothing else (a socket, Buffer's pool) shares them. */
const OWNED = new WeakSet<ArrayBufferLike>();

/** Whether `body` may be transferred to a worker (its memory then leaves this thread). */
export function ownsBacking(body: Buffer): boolean {
  return OWNED.has(body.buffer);
}
