/**
 * A comparison worker's entry point (see workers.ts). It keeps each route's compiled rules, loads
 * transform modules itself by path (functions cannot cross threads), and answers every `compare`
 * message with the plain comparisons of that pair. Runs from dist/ only: `npm run build` makes it.
 */
import { readlinkSync } from 'node:fs';
import { constants, setPriority } from 'node:os';
import { pathToFileURL } from 'node:url';
import { parentPort, workerData } from 'node:worker_threads';
import { KnownSpans, RecentPairs, type CompareState } from '../compare/index.js';
import type { CompareSettings, TransformFn } from '../config/load.js';
import { comparePair, compileRouteRules, type PairInput, type PairRules } from './compare-pair.js';
import type { WorkerData, WorkerReply, WorkerRequest, WorkerThread } from './workers.js';

/**
 * Comparisons take only the CPU the proxy's own thread leaves over. On Linux a thread's nice value is
 * its own (setpriority on the calling thread), so this worker runs at the lowest priority while the
 * event loop that serves clients keeps its own: on a host with no spare core the kernel runs the
 * client path first, the comparison queue fills, and new mirrors are skipped as `overload` (counted)
 * instead of clients waiting. In a container, nice ranks threads within the container's own CPU
 * share; on a shared host, other busy processes come first too (fewer pairs compared, all counted).
 */
if (process.platform === 'linux') {
  // Only where a thread's nice value is its own: elsewhere (macOS) it would slow the event loop too.
  try {
    setPriority(constants.priority.PRIORITY_LOW);
  } catch {
    // not allowed here: normal priority
  }
}

/**
 * The kernel's id of this thread, for the pool's watchdog: it reads the thread's CPU time to tell a
 * worker stuck on a comparison from one merely starved of CPU (workers.ts). Linux only.
 */
if (process.platform === 'linux') {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (Number.isInteger(tid) && tid > 0) parentPort!.postMessage({ thread: tid } satisfies WorkerThread);
  } catch {
    // no /proc: the watchdog goes by the clock alone
  }
}

const rules = new Map<string, Promise<PairRules>>();
/**
 * This thread's big values already read (a value that comes back is recognised, not read again) and
 * each request's last pair (the next is compared through what changed).
 */
const data = workerData as WorkerData | null;
const known = new KnownSpans(data?.knownBytes ?? 0);
const recent = new RecentPairs(data?.recentBytes ?? 0);
const state: CompareState = { known, recent };

async function compile(settings: CompareSettings): Promise<PairRules> {
  if (settings.transformPath === undefined) return compileRouteRules(settings);
  const mod = (await import(pathToFileURL(settings.transformPath).href)) as { default?: unknown };
  if (typeof mod.default !== 'function') throw new Error(`transform ${settings.transformPath} has no default export function`);
  return compileRouteRules({ ...settings, transform: mod.default as TransformFn });
}

/** `key` names the rule set (one per route and loaded config); `pair.route` is the route's name. */
async function compare(id: number, key: string, pair: PairInput): Promise<void> {
  let reply: WorkerReply;
  try {
    const compiled = rules.get(key);
    if (compiled === undefined) throw new Error(`no rules for route ${pair.route}`);
    // Structured clone delivers plain Uint8Arrays; compare/ expects Buffers (same memory, no copy).
    for (const answer of [pair.primary, pair.shadow, pair.baseline]) {
      if (answer !== null) answer.body = Buffer.from(answer.body.buffer, answer.body.byteOffset, answer.body.byteLength);
    }
    reply = { id, compared: comparePair(pair, await compiled, state) };
  } catch (err) {
    reply = { id, compared: { baseline: null, main: null, failure: `compare_failed: ${(err as Error).message}` } };
  }
  // The bodies go back with the answer: the main thread captures the next answers into them
  // (forward/capture.ts). Left here they would wait for this thread's own GC, which its few
  // allocations seldom run: tens of MB of dead 1 MB bodies.
  const bodies: ArrayBuffer[] = [];
  for (const answer of [pair.primary, pair.shadow, pair.baseline]) {
    const backing = answer?.body.buffer;
    if (backing instanceof ArrayBuffer && backing.byteLength > 0 && !bodies.includes(backing)) bodies.push(backing);
  }
  reply.bodies = bodies;
  reply.spans = known.stats();
  reply.recent = recent.stats();
  parentPort!.postMessage(reply, bodies);
}

parentPort!.on('message', (msg: WorkerRequest) => {
  if (msg.type === 'rules') {
    const compiled = compile(msg.settings);
    compiled.catch(() => undefined); // reported per comparison
    rules.set(msg.route, compiled);
  } else if (msg.type === 'forget') {
    rules.delete(msg.route);
  } else {
    void compare(msg.id, msg.route, msg.pair);
  }
});
