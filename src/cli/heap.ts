/**
 * The V8 heap setting a proxy of big bodies needs, applied before the proxy starts.
 *
 * With ~1 MB answers V8 runs a full collection every ~100 ms. Our reading of its traces
 * (`--trace-incremental-marking`): the old generation's live size stays ~22 MB under a limit of
 * ~45 MB, yet marking starts again and again, by task, by allocation limit and by external memory
 * pressure; the memory bodies are read into (socket read buffers, 1 MB per 1 MB answer, outside the
 * JS heap) is what is allocated at that rate. Whatever the exact rule, GC helper threads take about as
 * much CPU as the proxy itself, and clients wait on the collector's pauses. Measured (bench, 1 MB
 * bodies, one core): 111 full collections in 12 s of pass-through on Node 20, 12 with an initial old
 * space of 128 MB, and client p50 at 20 clients 25.7 → 17.1 ms; at a quarter of that load with every
 * mirror compared, p50 10.8 → 3.0 ms on Node 24. The live heap is unchanged; RSS peaks rose 13–35 MB
 * in the bench (shadow-1mb 252 MB).
 *
 * The limit can only be set when the process starts (`--initial-old-space-size`, which NODE_OPTIONS
 * refuses), so where Node can replace its own process image (`process.execve`, Node ≥ 23.11) the
 * long-running commands restart themselves once with it: same PID, same stdio, same arguments.
 * Elsewhere (Node 20, 22) start node with the flag yourself, as `npm start` does. A flag already
 * given wins; `CUTOVER_NODE_TUNING=off` leaves Node's defaults alone.
 */

export const OLD_SPACE_FLAG = '--initial-old-space-size';
export const OLD_SPACE_MB = 128;
/** Set in the environment of the restarted process: it never restarts twice. */
export const TUNED_ENV = 'CUTOVER_NODE_TUNED';
export const OPT_OUT_ENV = 'CUTOVER_NODE_TUNING';

export type HeapSizing = 'given' | 'off' | 'unsupported' | 'restart';

type Execve = (file: string, args: string[], env: NodeJS.ProcessEnv) => never;

/** What to do about the old generation's initial size in this process. */
export function heapSizing(execArgv: readonly string[], env: NodeJS.ProcessEnv, execve: unknown): HeapSizing {
  // V8 takes its flags with dashes or underscores alike.
  if (execArgv.some((a) => a.replace(/_/g, '-').split('=', 1)[0] === OLD_SPACE_FLAG)) return 'given';
  if (env[OPT_OUT_ENV] === 'off' || env[TUNED_ENV] !== undefined) return 'off';
  return typeof execve === 'function' ? 'restart' : 'unsupported';
}

/** Restarts this process with the old-space flag when it should and can (never returns then). */
export function sizeHeap(): void {
  const execve = (process as unknown as { execve?: Execve }).execve;
  if (heapSizing(process.execArgv, process.env, execve) !== 'restart') return;
  execve!.call(process, process.execPath, [process.execPath, `${OLD_SPACE_FLAG}=${OLD_SPACE_MB}`, ...process.execArgv, ...process.argv.slice(1)], { ...process.env, [TUNED_ENV]: '1' });
  throw new Error('unreachable: process.execve returned');
}
