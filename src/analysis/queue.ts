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

/** Routes whose pair sizes are remembered before those with nothing on the way are forgotten. */
const MAX_ROUTES = 4096;

interface RouteShare {
  reserved: number;
  typical: number;
}

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
   * Per route: its places reserved, and the running average size of its pairs, what each of its
   * places is expected to bring (-1 before its first pair). Per route, not one average: a busy route
   * of small answers would otherwise make a burst on a route of 1 MB answers look cheap, and every
   * one of those mirrors, once sent, must be taken. Before a route's first pair its size is unknown
   * and taken as 1/64 of the byte bound, so a burst at start-up (every in-flight mirror reserved
   * before any pair is back) cannot reserve far past the bound either.
   */
  private readonly routes = new Map<string, RouteShare>();
  /** Bytes the reserved places are expected to bring: the sum over routes of places x their estimate. */
  private reservedBytes = 0;
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
   * Takes a place for a pair of `route` to come; false when the queue is full by count or by bytes,
   * counting the pairs still on their way at their route's typical size (so big answers in flight
   * cannot pile up far past the byte bound).
   */
  reserve(route = ''): boolean {
    if (this.waiting + this.running + this.reserved >= this.limits.count) return false;
    if (this.held + this.reservedBytes >= this.limits.bytes) return false;
    const share = this.shareOf(route);
    share.reserved++;
    this.reserved++;
    this.reservedBytes += this.expected(share);
    return true;
  }

  unreserve(route = ''): void {
    const share = this.routes.get(route);
    if (share === undefined || share.reserved === 0) return;
    share.reserved--;
    this.reserved--;
    // Sums of averages drift: with nothing reserved, nothing is expected.
    this.reservedBytes = this.reserved === 0 ? 0 : Math.max(0, this.reservedBytes - this.expected(share));
  }

  /** The running average size of a route's compared pairs (bytes), -1 before its first pair. */
  typicalBytes(route = ''): number {
    return this.routes.get(route)?.typical ?? -1;
  }

  private expected(share: RouteShare): number {
    return share.typical < 0 ? this.limits.bytes / 64 : share.typical;
  }

  private shareOf(route: string): RouteShare {
    let share = this.routes.get(route);
    if (share === undefined) {
      // Routes come and go with reloads: past the bound, the oldest with nothing on the way is forgotten
      // (one: forgetting every idle route would send them all back to the start-up estimate).
      if (this.routes.size >= MAX_ROUTES) {
        for (const [name, s] of this.routes) {
          if (s.reserved === 0) {
            this.routes.delete(name);
            break;
          }
        }
      }
      this.routes.set(route, (share = { reserved: 0, typical: -1 }));
    }
    return share;
  }

  /** A pair that reserved its place is always taken: its size was unknown then, and it was already sent. */
  readonly submit = (pair: CapturedAnswerPair, reservedPlace = false): void => {
    const route = pair.route.name;
    if (reservedPlace) this.unreserve(route);
    else if (this.waiting + this.running + this.reserved >= this.limits.count || this.held >= this.limits.bytes) {
      this.onDrop(pair);
      return;
    }
    this.queue.push(pair);
    const bytes = pairBytes(pair);
    this.held += bytes;
    const share = this.shareOf(route);
    const before = this.expected(share);
    share.typical = share.typical < 0 ? bytes : share.typical + (bytes - share.typical) / 8;
    // The route's places still on their way are now expected at its new size.
    if (share.reserved > 0) this.reservedBytes = Math.max(0, this.reservedBytes + share.reserved * (this.expected(share) - before));
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

  /** Places reserved for mirrors to come (held for their live answer, or sent), not yet back as pairs. */
  get reservedPlaces(): number {
    return this.reserved;
  }
}
