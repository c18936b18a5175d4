/**
 * A pool of comparison workers: the CPU of decoding (zlib included), normalising and diffing leaves
 * the proxy's event loop. The main thread sends a pair's answers with their bodies *transferred*
 * (moved, not copied, when the capture owns its memory) and gets plain comparisons back, which it
 * applies to the window (`RouteAnalysis.record`), with the body buffers moved back for the next
 * captures (`captureBuffers`). Workers run at the lowest priority (compare-worker.ts).
 *
 * Rules go to a worker as settings, once per loaded config (keyed by the settings object of the
 * snapshot the request started on), just before the first comparison that needs them; the worker
 * compiles them and imports transform modules by path itself. Messages to one worker are ordered,
 * so the rules are always there before the comparison.
 *
 * The worker is the compiled `dist/analysis/compare-worker.js`. Under vitest this module runs from
 * `src/` (TypeScript a Worker cannot load), so it points at the dist/ build next to it, which
 * `npm test` builds first; without that file the pool reports itself unavailable and the analysis
 * compares on the main thread.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { KnownSpansStats, RecentPairsStats } from '../compare/index.js';
import type { CompareSettings } from '../config/load.js';
import { captureBuffers, ownsBacking } from '../forward/capture.js';
import { hash32 } from '../routing/hash.js';
import type { Compared, PairAnswer, PairInput } from './compare-pair.js';

export type WorkerRequest =
  | { type: 'rules'; route: string; settings: CompareSettings }
  | { type: 'forget'; route: string }
  | { type: 'compare'; id: number; route: string; pair: PairInput };

/** What a worker is started with. */
export interface WorkerData {
  knownBytes: number;
  recentBytes: number;
}

export interface WorkerReply {
  id: number;
  compared: Compared;
  /** The pair's body buffers, moved back to be captured into again. */
  bodies?: ArrayBuffer[];
  /** The worker's big values kept, after this comparison. */
  spans?: KnownSpansStats;
  /** The worker's recent pairs, after this comparison. */
  recent?: RecentPairsStats;
}

/** A worker's first message on Linux: its thread's kernel id (its CPU time is read from /proc). */
export interface WorkerThread {
  thread: number;
}

/** Comparisons handed to one worker at a time: enough to keep it busy, few enough to stay bounded. */
const PER_WORKER = 16;
/**
 * A worker that dies is replaced, up to this many times within RESTART_WINDOW_MS; one that dies more
 * often than that is taken for a crash loop, and the pool gives up (the main thread compares).
 * Counted within a window, not over the process's life: a few crashes over weeks must not end
 * the isolation for good.
 */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 10 * 60_000;
/**
 * A worker with comparisons waiting that has answered none for this long is stuck (a 940 KB pair
 * takes ~2 ms; the diff's step budget ends any comparison well within a second): it is replaced and
 * its comparisons answered as failed. Left alone, it would hold its places in the queue for good,
 * and with them every later mirror (skipped as overload).
 *
 * On Linux, not when it was starved: workers run at the lowest priority, so on a host whose cores
 * the event loop keeps busy a worker may get ~1.5 % of one; a comparison needing 160 ms of CPU then
 * takes seconds, and was taken for stuck and thrown away (proved with the limit at 400 ms on one
 * busy core). The kernel's schedstat of the worker's thread tells them apart, over at least half a
 * limit from the watchdog's first look after its last answer (silentWorker): a stuck worker either
 * ran most of it (spinning) or was runnable less than half of it and is asleep now (blocked: a
 * transform in a read that never returns); a starved one waited for a CPU, or is in the run queue
 * now (the kernel counts that wait only when it next runs). A starved
 * worker is left to finish (new mirrors are skipped as overload meanwhile, counted); one silent
 * for STARVED_LIMITS limits is replaced whatever its times.
 */
export const COMPARE_LIMIT_MS = 10_000;
const STARVED_LIMITS = 30;

/** What the watchdog reads of a worker's thread. */
export interface ThreadTimes {
  /** ms on a CPU, and ms runnable (on a CPU or waiting for one), as the kernel's schedstat last counted them. */
  ran: number;
  runnable: number;
  /** In the run queue now (state R): the kernel adds its wait to `runnable` only when it next gets a CPU. */
  queued: boolean;
}

/** Thread `tid`'s times; null where unreadable. */
function threadTimes(tid: number): ThreadTimes | null {
  try {
    const [ran, waited] = readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ').map(Number);
    // All zeros: a kernel that keeps no such statistics (a thread that posted its id has run).
    if (!Number.isFinite(ran) || !Number.isFinite(waited) || ran + waited === 0) return null;
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    return { ran: ran / 1e6, runnable: (ran + waited) / 1e6, queued: stat.charAt(stat.lastIndexOf(')') + 2) === 'R' };
  } catch {
    return null;
  }
}

/**
 * What the watchdog does with a worker that has comparisons and has answered none for `silentMs`:
 * `mark` is its times at the watchdog's first look since then, and when (`at`); `times` now.
 */
export function silentWorker(silentMs: number, limitMs: number, mark: (ThreadTimes & { at: number }) | null, times: ThreadTimes | null, now: number): 'wait' | 'replace' {
  if (silentMs <= limitMs) return 'wait';
  if (silentMs > limitMs * STARVED_LIMITS) return 'replace';
  // Without its times (not Linux, not yet known), the clock alone decides, as it always did.
  if (times === null || mark === null) return 'replace';
  // Judged over half a limit of its times at least: a look made late (the event loop held past
  // the limit in one stretch) would otherwise judge a window of nothing.
  const window = now - mark.at;
  if (window < limitMs / 2) return 'wait';
  // Spinning: it had the CPU most of the window.
  if (times.ran - mark.ran >= window / 2) return 'replace';
  // Starved: waiting for a CPU now (its wait is not counted yet), or it was, most of the window.
  if (times.queued) return 'wait';
  // Blocked: neither running nor waiting for a CPU most of the window (a call that never returns).
  return times.runnable - mark.runnable < window / 2 ? 'replace' : 'wait';
}

export function workerFile(): URL | null {
  const here = new URL('./compare-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  const dist = new URL(here.href.replace(/\/src\/analysis\/compare-worker\.js$/, '/dist/analysis/compare-worker.js'));
  return existsSync(fileURLToPath(dist)) ? dist : null;
}

interface Slot {
  worker: Worker;
  pending: Map<number, (compared: Compared) => void>;
  /** When the worker last answered, or was given work while idle: how long it has been on its current comparison. */
  progress: number;
  /** Rule keys this worker has compiled. */
  rules: Set<string>;
  /** The worker's big values kept (compare/known.ts), as of its last answer. */
  spans: KnownSpansStats | null;
  /** The worker's recent pairs (compare/recent.ts), as of its last answer. */
  recent: RecentPairsStats | null;
  /** Answers its comparisons as failed and replaces the worker (the watchdog found it stuck). */
  stuck: () => void;
  /** The worker thread's kernel id (Linux), to read its CPU time; null: the clock alone decides. */
  tid: number | null;
  /** The worker's times (threadTimes) at the watchdog's first look since its `progress`, when that was (`at`), and that progress. */
  mark: (ThreadTimes & { at: number; progress: number }) | null;
}

/** Rule keys live as long as the settings object (a config snapshot) they were made for. */
const ruleKeys = new WeakMap<CompareSettings, string>();
let nextRuleKey = 1;

function ruleKey(settings: CompareSettings): string {
  let key = ruleKeys.get(settings);
  if (key === undefined) {
    key = `r${nextRuleKey++}`;
    ruleKeys.set(settings, key);
  }
  return key;
}

/** Rule sets a worker keeps before it forgets the oldest (reloads make new ones). */
const MAX_RULES_PER_WORKER = 256;

/** Functions cannot cross threads: the worker loads the transform again from `transformPath`. */
function portable(settings: CompareSettings): CompareSettings {
  const { transform: _fn, ...rest } = settings;
  return rest;
}

export class ComparePool {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  /** When workers died and were replaced (performance.now()), within the restart window. */
  private readonly restarts: number[] = [];
  private closed = false;

  private started = false;
  /** Replaces a worker that has answered nothing for `limitMs` while comparisons wait on it. */
  private watchdog: NodeJS.Timeout | null = null;

  /**
   * `knownBytes`: the bytes of big values the workers keep (compare/known.ts); `recentBytes`: of
   * recent pairs (compare/recent.ts); each split between them.
   */
  constructor(
    private readonly workers: number,
    private readonly file: URL,
    private readonly knownBytes = 0,
    private readonly recentBytes = 0,
    private readonly limitMs = COMPARE_LIMIT_MS,
    private readonly restartWindowMs = RESTART_WINDOW_MS,
  ) {}

  /** Whether a worker that died may be replaced (the restart budget of the window), counting it if so. */
  private mayRestart(): boolean {
    const now = performance.now();
    while (this.restarts.length > 0 && now - this.restarts[0] > this.restartWindowMs) this.restarts.shift();
    if (this.restarts.length >= MAX_RESTARTS) return false;
    this.restarts.push(now);
    return true;
  }

  /** How many comparisons the pool takes at once. */
  get capacity(): number {
    return this.workers * PER_WORKER;
  }

  /** False once workers kept dying and the pool gave up (the analysis then compares on its own thread). */
  get usable(): boolean {
    return !this.closed && (!this.started || this.slots.length > 0);
  }

  /**
   * Workers start with the first comparison that needs one: a proxy whose answers are all small
   * (compared on the main thread) never pays for their threads and memory.
   */
  private start(): void {
    if (this.started) return;
    this.started = true;
    for (let i = 0; i < this.workers; i++) this.slots.push(this.spawn());
    // The look waits for the loop's next check phase: the workers' replies that arrived meanwhile
    // (the loop held by other work) are read first, so an answer is never judged as silence.
    this.watchdog = setInterval(() => setImmediate(this.watch), Math.min(1_000, Math.max(10, this.limitMs / 4)));
    this.watchdog.unref();
  }

  private readonly watch = (): void => {
    const now = performance.now();
    for (const slot of [...this.slots]) {
      if (slot.pending.size === 0) continue;
      const times = slot.tid === null ? null : threadTimes(slot.tid);
      // The first look since its last answer: its times are counted from here.
      if (slot.mark?.progress !== slot.progress && times !== null) slot.mark = { ...times, at: now, progress: slot.progress };
      const mark = slot.mark?.progress === slot.progress ? slot.mark : null;
      if (silentWorker(now - slot.progress, this.limitMs, mark, times, now) === 'replace') slot.stuck();
    }
  };

  private spawn(): Slot {
    const worker = new Worker(this.file, { workerData: { knownBytes: Math.floor(this.knownBytes / this.workers), recentBytes: Math.floor(this.recentBytes / this.workers) } satisfies WorkerData });
    // The pool must never keep a stopping proxy alive.
    worker.unref();
    const slot: Slot = { worker, pending: new Map(), progress: 0, rules: new Set(), spans: null, recent: null, stuck: () => undefined, tid: null, mark: null };
    worker.on('message', (message: WorkerReply | WorkerThread) => {
      if ('thread' in message) {
        slot.tid = message.thread;
        return;
      }
      const reply = message;
      if (reply.bodies !== undefined) for (const body of reply.bodies) captureBuffers.give(body);
      if (reply.spans !== undefined) slot.spans = reply.spans;
      if (reply.recent !== undefined) slot.recent = reply.recent;
      const done = slot.pending.get(reply.id);
      slot.pending.delete(reply.id);
      slot.progress = performance.now();
      done?.(reply.compared);
    });
    const fail = (why: string, stuck = false): void => {
      const idx = this.slots.indexOf(slot);
      if (idx === -1) return;
      this.slots.splice(idx, 1);
      for (const done of slot.pending.values()) done({ baseline: null, main: null, failure: `compare_failed: ${why}` });
      slot.pending.clear();
      // A stuck worker is replaced without counting against the restarts: giving up would move the
      // comparisons, and whatever got stuck, onto the main thread.
      if (!this.closed && (stuck || this.mayRestart())) this.slots.push(this.spawn());
    };
    /** A worker still running but no longer trusted: its comparisons answered, it replaced and stopped. */
    const retire = (why: string, stuck: boolean): void => {
      fail(why, stuck);
      void worker.terminate();
    };
    slot.stuck = () => retire(`no answer from the comparison worker within ${this.limitMs} ms`, true);
    worker.on('error', (err) => fail(`comparison worker failed: ${err.message}`));
    // A reply that cannot be read leaves its comparison unanswered.
    worker.on('messageerror', (err) => retire(`a reply from the comparison worker could not be read: ${err.message}`, false));
    worker.on('exit', () => fail('comparison worker exited'));
    return slot;
  }

  /** Compares one pair in a worker, under `settings` (the route's, in the snapshot the request started on). */
  compare(pair: PairInput, settings: CompareSettings): Promise<Compared> {
    this.start();
    let best: Slot | null = null;
    for (const slot of this.slots) if (best === null || slot.pending.size < best.pending.size) best = slot;
    if (best === null) return Promise.resolve({ baseline: null, main: null, failure: 'compare_failed: no comparison worker' });
    // A path keeps to one worker while that one is at most one comparison busier than the least busy:
    // the big values its answers repeat are then kept by one worker (compare/known.ts), not by each.
    const home = this.slots[hash32(pair.path) % this.slots.length];
    if (home.pending.size <= best.pending.size + 1) best = home;
    const id = this.nextId++;
    const key = ruleKey(settings);
    if (!best.rules.has(key)) {
      if (best.rules.size >= MAX_RULES_PER_WORKER) {
        const oldest = best.rules.values().next().value as string;
        best.rules.delete(oldest);
        best.worker.postMessage({ type: 'forget', route: oldest } satisfies WorkerRequest);
      }
      best.rules.add(key);
      best.worker.postMessage({ type: 'rules', route: key, settings: portable(settings) } satisfies WorkerRequest);
    }
    const transfer: ArrayBuffer[] = [];
    const message: WorkerRequest = {
      type: 'compare',
      id,
      route: key,
      pair: { ...pair, primary: movable(pair.primary, transfer), shadow: movable(pair.shadow, transfer), baseline: pair.baseline === null ? null : movable(pair.baseline, transfer) },
    };
    const slot = best;
    return new Promise((resolve) => {
      if (slot.pending.size === 0) slot.progress = performance.now();
      slot.pending.set(id, resolve);
      slot.worker.postMessage(message, transfer);
    });
  }

  /** Each live worker's big values kept (compare/known.ts), as of its last answer; null before one. */
  spans(): (KnownSpansStats | null)[] {
    return this.slots.map((s) => s.spans);
  }

  /** Each worker's recent pairs as of its last answer (null before one). */
  recentPairs(): (RecentPairsStats | null)[] {
    return this.slots.map((s) => s.recent);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.watchdog !== null) clearInterval(this.watchdog);
    const slots = this.slots.splice(0);
    // Their workers' 'exit' finds no slot any more: comparisons still waiting are answered here, or
    // the queue would count them running (and hold their bytes) for good.
    for (const slot of slots) {
      for (const done of slot.pending.values()) done({ baseline: null, main: null, failure: 'compare_failed: the comparison pool closed' });
      slot.pending.clear();
    }
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}

/**
 * The answer with a body the worker may take: the captured Buffer itself when the capture owns its
 * memory (it is moved, and reads as empty here afterwards), else one copy into fresh memory (a
 * single-chunk body may still be queued on the client's socket, so it must not move).
 */
function movable(answer: PairAnswer, transfer: ArrayBuffer[]): PairAnswer {
  const body = answer.body;
  // A fresh empty body: an empty view would still clone the whole of whatever memory it views.
  if (body.length === 0) return { status: answer.status, headers: answer.headers, body: Buffer.alloc(0), truncated: answer.truncated, error: answer.error };
  let owned: Uint8Array;
  if (ownsBacking(body) && body.buffer instanceof ArrayBuffer && !transfer.includes(body.buffer)) owned = body;
  else owned = new Uint8Array(body);
  transfer.push(owned.buffer as ArrayBuffer);
  // Structured clone turns a Buffer into a plain Uint8Array; compare/ reads bytes either way.
  return { status: answer.status, headers: answer.headers, body: owned as Buffer, truncated: answer.truncated, error: answer.error };
}
