/**
 * Shedding mirrors before the client feels it. The proxy has one event loop: when it is late
 * (event-loop delay) clients already wait, and when it is nearly always busy (utilisation) they are
 * about to. Mirrors are the work that can be given up, so the shadow engine asks `admit()` before
 * each one and skips it (reason `overload`) while the loop is in trouble.
 *
 * - Delay over `eventLoopDelay` (the worst delay seen in the last sample): every new mirror is
 *   skipped, until a sample comes back under the bound.
 * - Utilisation over `utilisation` alone: every other mirror is skipped. A proxy at full load is
 *   always busy; halving its mirrors gives the clients room while half the evidence still arrives
 *   (skipping them all would turn "isolation" into "no shadow at all").
 *
 * Sampled on an unref'd timer, so `admit()` costs one comparison on the hot path.
 */
import { monitorEventLoopDelay, performance, type EventLoopUtilization, type IntervalHistogram } from 'node:perf_hooks';

export interface ShedBounds {
  /** Milliseconds of event-loop delay past which every new mirror is skipped (0 turns it off). */
  eventLoopDelay: number;
  /** Share of time the loop is busy (0–1) past which every other mirror is skipped (1 turns it off). */
  utilisation: number;
}

export const DEFAULT_SHED: ShedBounds = { eventLoopDelay: 50, utilisation: 0.95 };

const SAMPLE_MS = 100;

export class LoadShedder {
  private readonly bounds: ShedBounds;
  private readonly delay: IntervalHistogram;
  private readonly timer: NodeJS.Timeout;
  private elu: EventLoopUtilization;
  /** 0: all mirrors admitted; 1: every other one; 2: none. */
  private level = 0;
  private toggle = false;
  /** The last sample's figures, for logs and tests. */
  lastDelayMs = 0;
  lastUtilisation = 0;

  constructor(bounds: Partial<ShedBounds> = {}) {
    this.bounds = { ...DEFAULT_SHED, ...bounds };
    this.delay = monitorEventLoopDelay({ resolution: 10 });
    this.delay.enable();
    this.elu = performance.eventLoopUtilization();
    this.timer = setInterval(this.sample, SAMPLE_MS);
    this.timer.unref();
  }

  private readonly sample = (): void => {
    // The histogram counts from when the timer was due, so its max is how late the loop ran.
    this.lastDelayMs = this.delay.max / 1e6;
    this.delay.reset();
    const now = performance.eventLoopUtilization();
    this.lastUtilisation = performance.eventLoopUtilization(now, this.elu).utilization;
    this.elu = now;
    const { eventLoopDelay, utilisation } = this.bounds;
    if (eventLoopDelay > 0 && this.lastDelayMs > eventLoopDelay) this.level = 2;
    else if (utilisation < 1 && this.lastUtilisation > utilisation) this.level = 1;
    else this.level = 0;
  };

  /** Whether a new mirror may be sent now. */
  admit(): boolean {
    if (this.level === 0) return true;
    if (this.level === 2) return false;
    this.toggle = !this.toggle;
    return this.toggle;
  }

  close(): void {
    clearInterval(this.timer);
    this.delay.disable();
  }
}
