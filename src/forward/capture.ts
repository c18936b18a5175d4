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

/**
 * Big capture buffers, used again. Each mirrored 1 MB answer used to allocate two fresh 1 MB
 * buffers (the primary's copy and the mirror's): hundreds of MB a second of external memory at load,
 * which makes V8 run full collections every few dozen milliseconds (seconds of GC helper CPU per ten
 * seconds in the 1 MB bench) and the kernel map and fault in fresh pages. Bodies that a comparison
 * worker sends back (workers.ts) come here and are handed out again for the next answer of their
 * size class. Classes are eight per power of two (at most 1/8 larger than asked); the pool is
 * bounded by count and bytes and takes only buffers of an exact class size, which only
 * `BodyCapture` makes.
 */
export class CaptureBuffers {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private bytes = 0;
  private count = 0;
  /** Buffers handed out again instead of allocated (for tests and the curious). */
  reused = 0;

  /**
   * 16 MiB: sixteen 1 MB bodies. 32 MiB measured no better in the 1 MB bench (share of mirrors
   * compared, CPU per request; two runs each, within their noise) and held ~15 MB more at peak,
   * which the kept big values of the comparison workers (compare/known.ts) now use.
   */
  constructor(
    private readonly maxBytes = 16 * 1024 * 1024,
    private readonly maxCount = 64,
  ) {}

  /** The class a body of `length` bytes is given a buffer of. */
  static classOf(length: number): number {
    const step = 2 ** Math.max(0, Math.floor(Math.log2(length)) - 3);
    return Math.ceil(length / step) * step;
  }

  /** A buffer of at least `length` bytes (its class size): one given back, else a fresh one. */
  take(length: number): Buffer {
    const size = CaptureBuffers.classOf(length);
    const ab = this.free.get(size)?.pop();
    if (ab === undefined) return Buffer.allocUnsafeSlow(size);
    this.bytes -= size;
    this.count--;
    this.reused++;
    return Buffer.from(ab, 0, size);
  }

  /** Takes back a buffer nobody uses any more (moved back from a worker); dropped when full or of no class. */
  give(ab: ArrayBuffer): void {
    const size = ab.byteLength;
    if (size < WHOLE_FROM || CaptureBuffers.classOf(size) !== size) return;
    if (this.bytes + size > this.maxBytes || this.count >= this.maxCount) return;
    let list = this.free.get(size);
    if (list === undefined) this.free.set(size, (list = []));
    list.push(ab);
    this.bytes += size;
    this.count++;
  }

  /** Bytes held for reuse. */
  get held(): number {
    return this.bytes;
  }
}

/** The process's pool: captures on the main thread take from it, returned worker bodies fill it. */
export const captureBuffers = new CaptureBuffers();

export class BodyCapture {
  private readonly chunks: Buffer[] = [];
  /** The body's own buffer when its length was announced (`expect`): chunks are copied in and let go at once. */
  private whole: Buffer | null = null;
  /** The announced length `whole` will be taken for at the first byte (a HEAD or a 304 never sends one). */
  private announced = 0;
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
    if (this.size === 0 && this.whole === null && length >= WHOLE_FROM && length <= this.limit) this.announced = length;
  }

  add(chunk: Buffer): void {
    if (this.truncated) return;
    if (this.announced !== 0 && chunk.length > 0) {
      this.whole = captureBuffers.take(this.announced).subarray(0, this.announced);
      this.announced = 0;
    }
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
      // Its buffer is the capture's alone (it may be a little longer than the body: its size class).
      OWNED.add(whole.buffer);
      // Cut short: never the unwritten rest.
      return this.size < whole.length ? whole.subarray(0, this.size) : whole;
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
