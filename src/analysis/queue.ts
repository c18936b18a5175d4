/**
 * The comparison queue: completed pairs wait here and are compared later, never on the stack of the
 * code that completed them (the client path). Bounded by count and by the bytes of the answers it
 * holds (queued or being compared). The shadow engine reserves a place before it sends a mirror
 * (`reserve`), so a sent mirror always has room here; a pair that arrives unreserved and does not
 * fit is handed to `onDrop` to be counted.
 *
 * The drain is time-boxed: it runs for at most `sliceMs` per event-loop turn, then yields with
 * setImmediate, so client I/O gets its turn between slices even when the queue is long.
 */
import type { CapturedAnswerPair } from '../shadow/pair.js';

export interface QueueLimits {
  count: number;
  bytes: number;
  /** Main-thread budget of one drain slice, in milliseconds. */
  sliceMs: number;
}

/** Either done on the spot, or a promise of being done (a comparison worker). */
export type Processor = (pair: CapturedAnswerPair) => void | Promise<unknown>;

export function pairBytes(pair: CapturedAnswerPair): number {
  return pair.primary.body.length + pair.shadow.body.length + (pair.baseline?.body.length ?? 0);
}

export class ComparisonQueue {
  private queue: CapturedAnswerPair[] = [];
  private head = 0;
  private scheduled = false;
  private reserved = 0;
  /** Pairs handed to an asynchronous processor and not yet done. */
  private running = 0;
  /** Bytes of answers queued or being compared. */
  private held = 0;
  /**
   * Running average size of a pair: what each reserved place is expected to bring. Before the first
   * pair it is unknown and taken as 1/64 of the byte bound, so a burst at start-up (every in-flight
   * mirror reserved before any pair is back) cannot reserve past the bound either.
   */
  private typicalPair = -1;
  /** How many asynchronous comparisons may run at once (set by the owner of the workers). */
  maxRunning = Number.POSITIVE_INFINITY;

  constructor(
    private readonly limits: QueueLimits,
    private readonly process: Processor,
    private readonly onDrop: (pair: CapturedAnswerPair) => void,
    /**
     * A processor that threw or rejected (a bug: comparisons catch their own errors). The pair's
     * place and bytes are given back all the same and the drain goes on: a throw here would escape
     * the event loop's callback and stop the process, a rejection go unhandled.
     */
    private readonly onFail: (pair: CapturedAnswerPair, err: unknown) => void = () => undefined,
  ) {}

  private get waiting(): number {
    return this.queue.length - this.head;
  }

  /**
   * Takes a place for a pair to come; false when the queue is full by count or by bytes, counting
   * the pairs still on their way at the typical size (so big answers in flight cannot pile up far
   * past the byte bound).
   */
  reserve(): boolean {
    if (this.waiting + this.running + this.reserved >= this.limits.count) return false;
    const typical = this.typicalPair < 0 ? this.limits.bytes / 64 : this.typicalPair;
    if (this.held + this.reserved * typical >= this.limits.bytes) return false;
    this.reserved++;
    return true;
  }

  unreserve(): void {
    if (this.reserved > 0) this.reserved--;
  }

  /** A pair that reserved its place is always taken: its size was unknown then, and it was already sent. */
  readonly submit = (pair: CapturedAnswerPair, reservedPlace = false): void => {
    if (reservedPlace) this.unreserve();
    else if (this.waiting + this.running + this.reserved >= this.limits.count || this.held >= this.limits.bytes) {
      this.onDrop(pair);
      return;
    }
    this.queue.push(pair);
    const bytes = pairBytes(pair);
    this.held += bytes;
    this.typicalPair = this.typicalPair < 0 ? bytes : this.typicalPair + (bytes - this.typicalPair) / 8;
    this.schedule();
  };

  private schedule(): void {
    if (this.scheduled || this.waiting === 0 || this.running >= this.maxRunning) return;
    this.scheduled = true;
    setImmediate(this.drain);
  }

  private readonly drain = (): void => {
    this.scheduled = false;
    const start = performance.now();
    while (this.waiting > 0 && this.running < this.maxRunning) {
      const pair = this.queue[this.head];
      this.queue[this.head++] = undefined as unknown as CapturedAnswerPair; // let it be collected
      const bytes = pairBytes(pair);
      let done: void | Promise<unknown>;
      try {
        done = this.process(pair);
      } catch (err) {
        done = undefined;
        this.onFail(pair, err);
      }
      if (done === undefined) this.held -= bytes;
      else {
        this.running++;
        done
          .catch((err: unknown) => this.onFail(pair, err))
          .finally(() => {
            this.running--;
            this.held -= bytes;
            this.schedule();
          });
      }
      if (performance.now() - start >= this.limits.sliceMs) break;
    }
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    this.schedule();
  };

  /** Pairs queued and not yet compared. */
  get pending(): number {
    return this.waiting + this.running;
  }
}
