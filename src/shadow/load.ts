/**
 * Shedding mirrors before the client feels it. The proxy has one event loop: when it is late
 * (event-loop delay) clients already wait, and when it is nearly always busy (utilisation) they are
 * about to. Mirrors are the work that can be given up, so the shadow engine asks `admit()` before
 * each one and skips it (reason `overload`) while the loop is in trouble.
 *
 * - Delay over `eventLoopDelay` (the worst delay seen in a 100 ms sample) in two samples in a row:
 *   every new mirror is skipped until a sample comes back under the bound. One hiccup (a GC pause,
 *   the OS running something else for a moment) sheds nothing; a loop late for 200 ms is one clients
 *   feel, and mirrors are the work that can go.
 * - Utilisation over `utilisation` in two samples in a row: the share of mirrors admitted steps down
 *   by 10% per sample, to half at most, and back up by 10% per sample once it is under the bound. A
 *   proxy at full load is always busy; fewer mirrors give the clients room while at least half of
 *   the evidence still arrives (skipping them all would turn "isolation" into "no shadow at all").
 *   One busy sample alone (a GC, the first requests' compilation) steps nothing down: with the
 *   admission credit empty, a step down costs the very next mirror.
 *
 * Sampled on an unref'd timer, so `admit()` costs one comparison on the hot path.
 */
import { monitorEventLoopDelay, performance, type EventLoopUtilization, type IntervalHistogram } from 'node:perf_hooks';

export interface ShedBounds {
  /** Milliseconds of event-loop delay (two samples in a row) past which every new mirror is skipped (0 turns it off). */
  eventLoopDelay: number;
  /** Share of time the loop is busy (0–1) past which fewer mirrors are sent, down to half (1 turns it off). */
  utilisation: number;
}

export const DEFAULT_SHED: ShedBounds = { eventLoopDelay: 50, utilisation: 0.95 };

const SAMPLE_MS = 100;

export class LoadShedder {
  private readonly bounds: ShedBounds;
  private readonly delay: IntervalHistogram;
  private readonly timer: NodeJS.Timeout;
  private elu: EventLoopUtilization;
  /** Samples in a row with the loop late past the bound. */
  private lateSamples = 0;
  /** Samples in a row with the loop busy past the bound. */
  private busySamples = 0;
  /** Share of new mirrors admitted (exact, by credit): 1 normally, down to 0.5 under utilisation. */
  private share = 1;
  private late = false;
  private credit = 0;
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

  private lastRun = performance.now();

  private readonly sample = (): void => {
    // How late this very timer ran is the delay every timer and socket saw; the histogram adds the
    // stalls between two samples that did not straddle this timer's due time.
    const now = performance.now();
    const ownLateness = now - this.lastRun - SAMPLE_MS;
    this.lastRun = now;
    this.lastDelayMs = Math.max(ownLateness, this.delay.max / 1e6);
    this.delay.reset();
    const elu = performance.eventLoopUtilization();
    this.lastUtilisation = performance.eventLoopUtilization(elu, this.elu).utilization;
    this.elu = elu;
    const { eventLoopDelay, utilisation } = this.bounds;
    this.lateSamples = eventLoopDelay > 0 && this.lastDelayMs > eventLoopDelay ? this.lateSamples + 1 : 0;
    this.late = this.lateSamples >= 2;
    const busy = utilisation < 1 && this.lastUtilisation > utilisation;
    this.busySamples = busy ? this.busySamples + 1 : 0;
    // Down from the second busy sample in a row, held by a first, up when not busy. Kept in whole
    // tenths, so it returns to exactly 1.
    const step = this.busySamples >= 2 ? -0.1 : busy ? 0 : 0.1;
    this.share = Math.round(Math.min(1, Math.max(0.5, this.share + step)) * 10) / 10;
  };

  /** Whether a new mirror may be sent now. */
  admit(): boolean {
    if (this.late) return false;
    if (this.share >= 1) return true;
    this.credit += this.share;
    if (this.credit < 1) return false;
    this.credit -= 1;
    return true;
  }

  /**
   * Forgets what was measured so far: called once the proxy serves, so the busy start-up (modules
   * loading, the store read, listeners opening) is not taken for load and the first mirrors shed.
   */
  restart(): void {
    this.delay.reset();
    this.elu = performance.eventLoopUtilization();
    this.lastRun = performance.now();
    this.lateSamples = 0;
    this.busySamples = 0;
    this.late = false;
    this.share = 1;
    this.credit = 0;
    this.timer.refresh();
  }

  close(): void {
    clearInterval(this.timer);
    this.delay.disable();
  }
}
