/**
 * The comparison queue: completed pairs wait here and are compared later, never on the stack of the
 * code that completed them (the client path). Bounded by count; what does not fit is handed to
 * `onDrop` to be counted.
 */
import type { CapturedAnswerPair } from '../shadow/pair.js';

export class ComparisonQueue {
  private queue: CapturedAnswerPair[] = [];
  private scheduled = false;

  constructor(
    private readonly limit: number,
    private readonly process: (pair: CapturedAnswerPair) => void,
    private readonly onDrop: (pair: CapturedAnswerPair) => void,
  ) {}

  readonly submit = (pair: CapturedAnswerPair): void => {
    if (this.queue.length >= this.limit) {
      this.onDrop(pair);
      return;
    }
    this.queue.push(pair);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.drain);
    }
  };

  private readonly drain = (): void => {
    this.scheduled = false;
    const batch = this.queue;
    this.queue = [];
    for (const pair of batch) this.process(pair);
  };

  /** Pairs queued and not yet compared. */
  get pending(): number {
    return this.queue.length;
  }
}
