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

export class BodyCapture {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  truncated = false;
  readonly limit: number;

  constructor(limit: number) {
    this.limit = limit;
  }

  add(chunk: Buffer): void {
    if (this.truncated) return;
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
