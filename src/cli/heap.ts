/**
 * The V8 heap settings (and glibc malloc's) a proxy needs, applied before the proxy starts.
 *
 * - **Initial old space, 128 MB.** With ~1 MB answers V8 runs a full collection every ~100 ms. Our
 *   reading of its traces (`--trace-incremental-marking`): the old generation's live size stays
 *   ~22 MB under a limit of ~45 MB, yet marking starts again and again, by task, by allocation limit
 *   and by external memory pressure; the memory bodies are read into (socket read buffers, 1 MB per
 *   1 MB answer, outside the JS heap) is what is allocated at that rate. Whatever the exact rule, GC
 *   helper threads take about as much CPU as the proxy itself, and clients wait on the collector's
 *   pauses. Measured (bench, 1 MB bodies, one core): 111 full collections in 12 s of pass-through on
 *   Node 20, 12 with an initial old space of 128 MB, and client p50 at 20 clients 25.7 → 17.1 ms; at
 *   a quarter of that load with every mirror compared, p50 10.8 → 3.0 ms on Node 24. The live heap is
 *   unchanged; RSS peaks rose 13–35 MB in the bench (shadow-1mb 252 MB).
 * - **Semi-space at most 16 MB.** Node 24's V8 lets the young generation grow to 128 MB (two 64 MB
 *   semi-spaces; Node 20's stop at 16 MB each), and a proxy allocating at full speed grows it all the
 *   way: 100 % shadow of 5 KB answers at 50 connections, RSS high-water mark 255 MB in 10 s and 330 MB
 *   after ten minutes. Capped at Node 20's 16 MB: 176 MB, with the same CPU per request (four
 *   interleaved runs each, median 166 µs both) and no change with 1 MB bodies.
 *
 * - **No allocation-site pretenuring** (`--no-allocation-site-pretenuring`). V8 watches where
 *   objects are allocated and, when most objects of one site have survived into the old generation
 *   at a full collection, allocates that site's later objects straight in the old generation. A
 *   mirror target that hangs keeps up to `shadow.maxInFlight` mirrors (and the request objects they
 *   hold) alive until `shadow.timeout`: with a timeout of 2 s or more a full collection sees them,
 *   and the request path's own allocation sites are tenured. From then on every request's objects
 *   are born old; they die young, but only a full collection can tell, and the young objects they
 *   point to are kept and promoted with them. Measured (5 KB answers, 50 connections, mirror target
 *   hanging, 12 s), Node 20: from the first timeouts to the end of the run ~3.1 MB promoted per
 *   scavenge against ~0.2 MB, a full collection every ~1.5 s, GC 10–20 % of the main thread; in 3
 *   runs of 4 with a 5 s timeout, 3 of 3 with 2 s, 0 of 3 with 1.1 s or 60 s (the mirrors then die
 *   before a full collection, or never). With this flag, 0 of 3 at 5 s, 26–31 ms client p99 against
 *   34–40 and ~25 % more requests served. Node 24 (the other flags here given too): 3.4 against
 *   0.1 MB per scavenge, 155–203 against 211–236 µs of CPU per request. A proxy's per-request
 *   objects never outlive their request, so the sites V8 would tenure are the ones it should not.
 * - **V8's `gc` function exposed** (`--expose-gc`), for one use: on Node 24 the read buffers of big
 *   answers set off full collections where Node 20 runs scavenges, so the proxy asks for a scavenge
 *   every 32 MiB of body bytes read (forward/reclaim.ts: +30 % req/s and −40 MB RSS with 1 MB
 *   answers on Node 24; no change on Node 20). Nothing else calls it.
 *
 * - **At most two glibc malloc arenas** (`MALLOC_ARENA_MAX=2`, read by glibc when the process
 *   starts; other C libraries ignore it). Bodies' buffers are malloc'd outside V8's heap, and each
 *   thread that allocates (the event loop, comparison workers, V8's and libuv's helpers) can get an
 *   arena of its own that keeps the memory it once held. Measured on Node 24, ~940 KB answers at
 *   100 % shadow flat out on one core (interleaved 10 s runs): RSS peak 262–267 against 271–276 MB,
 *   and with `shadow.compareQueueBytes` at its 16 MiB default 231–250 against 270–282 MB; with 5 KB
 *   answers at 50 connections, every mirror compared, 137–190 µs of CPU per request against 137–183
 *   (seven runs each: the VM's noise, no cost seen).
 * - **Freed memory kept up to 32 MiB** (`MALLOC_TRIM_THRESHOLD_=33554432`; glibc's is 128 KiB, raised
 *   only as far as twice the largest block it has mmapped). A 1 MB answer is read into ~16 fresh
 *   socket buffers, copied once into its capture, and relayed; once they are freed the free space
 *   at the top of the arena passes glibc's threshold, glibc hands it back to the kernel, and the next
 *   answer faults every page of it in again (a page fault per 4 KiB, each one a VM exit on a
 *   virtual machine). Measured with `perf` (~940 KB answers, every mirror sent, one core): 6.7 % of
 *   the proxy's samples in page faults under the kernel's copy to user memory. Kept, the pages are
 *   reused. Measured (~940 KB answers, 20 clients, proxy on one core, three interleaved 8 s runs
 *   each, Node 20): pass-through 1,764–2,084 → 1,250–1,303 µs of CPU per request, 466–529 →
 *   710–765 req/s, client p99 110–149 → 64–72 ms; 100 % shadow 2,035–2,267 → 1,331–1,442 µs and
 *   419–483 → 669–724 req/s; RSS high-water mark 172–174 → 176–181 MB (pass-through) and 224–229 →
 *   217–245 MB (shadow). 16 MiB did half as well, 8 MiB helped in one run of two, 128 MiB no better
 *   than 32. Node 24: no change past the noise either way (100 % shadow, five interleaved runs each:
 *   1,205–2,081 against 1,298–2,162 µs per request; RSS high-water mark 243–259 against 245–255 MB).
 *   Setting it also stops glibc's moving threshold, so blocks of 128 KiB and more are always mmapped
 *   and unmapped by themselves (adding `MALLOC_MMAP_THRESHOLD_` measured no better).
 *
 * These can only be set when the process starts (NODE_OPTIONS refuses `--initial-old-space-size`
 * and `--no-allocation-site-pretenuring`),
 * so where Node can replace its own process image (`process.execve`, Node ≥ 23.11) the long-running
 * commands restart themselves once with them: same PID, same stdio, same arguments. Elsewhere (Node
 * 20, 22) start node with them yourself, as `npm start` does. A flag or variable already given (on
 * the command line, in NODE_OPTIONS or in the environment) wins; `CUTOVER_NODE_TUNING=off` leaves
 * Node's and glibc's defaults alone.
 */

import { accessSync, constants, readFileSync } from 'node:fs';

export const OLD_SPACE_FLAG = '--initial-old-space-size';
export const OLD_SPACE_MB = 128;
export const SEMI_SPACE_FLAG = '--max-semi-space-size';
export const SEMI_SPACE_MB = 16;
export const EXPOSE_GC_FLAG = '--expose-gc';
export const PRETENURING_FLAG = '--no-allocation-site-pretenuring';
/** What the proxy starts with, each unless given by hand. */
export const HEAP_FLAGS: readonly string[] = [`${OLD_SPACE_FLAG}=${OLD_SPACE_MB}`, `${SEMI_SPACE_FLAG}=${SEMI_SPACE_MB}`, EXPOSE_GC_FLAG, PRETENURING_FLAG];
export const ARENA_ENV = 'MALLOC_ARENA_MAX';
export const ARENA_MAX = '2';
export const TRIM_ENV = 'MALLOC_TRIM_THRESHOLD_';
export const TRIM_BYTES = String(32 * 1024 * 1024);
/** The environment the proxy starts with, each variable unless set already. */
export const TUNING_ENV: Readonly<Record<string, string>> = Object.freeze({ [ARENA_ENV]: ARENA_MAX, [TRIM_ENV]: TRIM_BYTES });
/** Set in the environment of the restarted process: it never restarts twice. */
export const TUNED_ENV = 'CUTOVER_NODE_TUNED';
export const OPT_OUT_ENV = 'CUTOVER_NODE_TUNING';

/** The heap flags and malloc variables a process was started without. */
export interface Lacking {
  flags: string[];
  env: Record<string, string>;
}

/** `unsupported`: this Node cannot restart itself (Node 20, 22); what it lacks is said all the same. */
export type HeapSizing = { action: 'given' | 'off' } | ({ action: 'restart' | 'unsupported' } & Lacking);

type Execve = (file: string, args: string[], env: NodeJS.ProcessEnv) => never;

/**
 * A V8 flag's name as V8 reads it: dashes or underscores alike, without its value, and a boolean
 * flag's `--no-` form the same flag as its positive (`--allocation-site-pretenuring` given by hand
 * wins over ours).
 */
const flagName = (arg: string): string => arg.replace(/_/g, '-').split('=', 1)[0].replace(/^--no-/, '--');

/** The flags of HEAP_FLAGS not already given on the command line or in NODE_OPTIONS. */
function missingHeapFlags(execArgv: readonly string[], env: NodeJS.ProcessEnv): string[] {
  const given = new Set([...execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)].map(flagName));
  return HEAP_FLAGS.filter((f) => !given.has(flagName(f)));
}

/** The variables of TUNING_ENV not set in `env` (an empty value counts as set: glibc reads it so). */
function missingEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(TUNING_ENV).filter(([name]) => env[name] === undefined));
}

/** What to do about the heap's sizes (and malloc's arenas) in this process. */
export function heapSizing(execArgv: readonly string[], env: NodeJS.ProcessEnv, execve: unknown): HeapSizing {
  const flags = missingHeapFlags(execArgv, env);
  const vars = missingEnv(env);
  if (flags.length === 0 && Object.keys(vars).length === 0) return { action: 'given' };
  if (env[OPT_OUT_ENV] === 'off' || env[TUNED_ENV] !== undefined) return { action: 'off' };
  return { action: typeof execve === 'function' ? 'restart' : 'unsupported', flags, env: vars };
}

/** What a sizing lacks, as it would be typed: the variables, the flags, and both (`what`). */
function lacking(sizing: Lacking): { vars: string; flags: string; what: string } {
  const vars = Object.entries(sizing.env).map(([k, v]) => `${k}=${v}`).join(' ');
  const flags = sizing.flags.join(' ');
  return { vars, flags, what: [vars, flags].filter((x) => x !== '').join(' ') };
}

/**
 * The line a Node that cannot restart itself (20, 22) prints when started without the tuning: it
 * runs all the same, and says what to start it with (with ~1 MB answers on Node 20 the trim
 * threshold alone is ~1.5x the req/s), and how to run untuned without the line.
 */
export function untunedNotice(sizing: Lacking, version: string = process.version): string {
  const { vars, flags } = lacking(sizing);
  const command = [vars, 'node', flags, '…'].filter((x) => x !== '').join(' ');
  return `cutover: Node ${version} cannot restart itself with the tuning big answers need (Node ≥ 23.11 can), so it runs without; start it as \`${command}\` (README, "Real use"), or set ${OPT_OUT_ENV}=off to run untuned without this line\n`;
}

/** Linux's MAX_ARG_STRLEN: no one argument or environment string may be longer (with its NUL). */
const MAX_ARG_STRLEN = 32 * 4096;

/**
 * Room for an exec's file name, arguments and environment (strings with their NULs, and a pointer
 * each), as Linux counts it (fs/exec.c): a quarter of the stack's soft limit, at most 6 MiB and at
 * least 128 KiB (a stack limit under ~512 KiB refuses a little less again; Node itself does not run
 * on one that small with such an environment). On Linux with /proc unreadable (Node's permission
 * model), the 128 KiB floor; elsewhere, 256 KiB (macOS allows 1 MiB): a restart is only an
 * optimisation.
 */
export function execRoom(limits: string | null = readLimits(), platform: string = process.platform): number {
  if (limits === null) return platform === 'linux' ? 128 * 1024 : 256 * 1024;
  const stack = /^Max stack size\s+(\S+)/m.exec(limits)?.[1];
  const quarter = stack === undefined || stack === 'unlimited' ? Infinity : Number(stack) / 4;
  return Math.max(Math.min(6 * 1024 * 1024, quarter), 128 * 1024);
}

function readLimits(): string | null {
  try {
    return readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return null;
  }
}

/**
 * Why an exec of `file` with `args` and `env` would be refused, or null when it fits. It has to be
 * known before: where a failed execve could be answered with an error, Node 24 aborts the whole
 * process instead (v24.22: "process.execve failed with error code E2BIG", exit 134), so a proxy
 * started with a big environment would never start. 1 KiB is kept spare for what the count misses.
 */
export function execRefusal(file: string, args: readonly string[], env: Readonly<Record<string, string | undefined>>, room = execRoom()): string | null {
  try {
    accessSync(file, constants.X_OK);
  } catch (err) {
    return `${file} cannot be run again: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
  const strings = [file, ...args, ...Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`]))];
  let bytes = 8 * (strings.length + 2) + 1024;
  for (const text of strings) {
    const size = Buffer.byteLength(text) + 1;
    if (size > MAX_ARG_STRLEN) return `one argument or variable is over ${MAX_ARG_STRLEN} bytes`;
    bytes += size;
  }
  return bytes > room ? `the arguments and environment would take ${bytes} of the ${room} bytes the system allows` : null;
}

/** Restarts this process with the heap flags it lacks when it should and can (never returns then). */
export function sizeHeap(): void {
  const execve = (process as unknown as { execve?: Execve }).execve;
  const sizing = heapSizing(process.execArgv, process.env, execve);
  if (sizing.action === 'unsupported') process.stderr.write(untunedNotice(sizing));
  if (sizing.action !== 'restart') return;
  const args = [process.execPath, ...sizing.flags, ...process.execArgv, ...process.argv.slice(1)];
  const env = { ...process.env, ...sizing.env, [TUNED_ENV]: '1' };
  // The restart is an optimisation: one that would be refused (E2BIG, a binary replaced on disk) or
  // that Node refuses (an argument it cannot pass) runs on, untuned, and says so.
  const refusal = execRefusal(process.execPath, args, env);
  const said = (why: string): void => {
    const { what } = lacking(sizing);
    process.stderr.write(`cutover: could not restart with ${what} (${why}); running with Node's defaults\n`);
  };
  if (refusal !== null) return said(refusal);
  try {
    execve!.call(process, process.execPath, args, env);
  } catch (err) {
    said((err as Error).message);
  }
}
