/**
 * Bodies' read buffers, reclaimed while they are young.
 *
 * Every socket read of a body (an upstream answer, or a client's request body) is a fresh
 * ArrayBuffer of up to 64 KB outside V8's heap, dead as soon as its bytes are relayed and captured:
 * ~1 GB/s of short-lived external memory with 1 MB answers. Node 20's V8 frees it with scavenges.
 * Node 24's (13.6) answers the same pressure with full mark-compacts instead, one every ~120 ms flat
 * out, while up to ~100 MB of dead buffers wait for the next one. A scavenge frees a young dead
 * buffer as cheaply as on Node 20, so this asks V8 for one (asynchronously: it runs as a task of its
 * own, never inside a read) every `everyBytes` of bodies read. Measured on Node 24 with the CLI as
 * users start it, ~940 KB answers at 100 % shadow on one core, two interleaved runs each: flat out
 * 964 and 872 against 691 and 635 req/s, client p90 29 against 54–58 ms, 0–4 full collections in
 * 10 s against 65–73, RSS peak 276–283 against 304–328 MB; at a fixed 230 req/s, client p90 4
 * against 25–27 ms and 24 % less CPU. On Node 20, and with small answers (a scavenge about every
 * second at 5 KB flat out), it changes nothing measurable.
 *
 * It needs V8's `gc` function, which `node --expose-gc` puts on the global object: the CLI starts
 * the proxy with it (cli/heap.ts, with the heap flags; `CUTOVER_NODE_TUNING=off` leaves it out).
 * Without it this only counts.
 */
type Gc = (options: { type: 'minor'; execution: 'async' }) => unknown;

/** 32 MiB: ~35 one-megabyte answers; 16, 8 and 4 MiB measured no better on Node 24 (one run each). */
export const RECLAIM_EVERY_BYTES = 32 * 1024 * 1024;

export class YoungReclaimer {
  /** Body bytes counted since start-up. */
  seen = 0;
  /** Scavenges asked of V8. */
  requested = 0;
  private sinceLast = 0;

  constructor(
    private readonly gc: Gc | undefined,
    private readonly everyBytes = RECLAIM_EVERY_BYTES,
  ) {}

  /** Whether scavenges are asked for at all (V8's `gc` is exposed). */
  get active(): boolean {
    return this.gc !== undefined;
  }

  /** `bytes` more of a body were read from a socket (a backend's answer or a client's request). */
  read(bytes: number): void {
    this.seen += bytes;
    this.sinceLast += bytes;
    if (this.sinceLast < this.everyBytes) return;
    this.sinceLast = 0;
    if (this.gc === undefined) return;
    this.requested++;
    this.gc({ type: 'minor', execution: 'async' });
  }
}

/** The process's: every upstream exchange (forward/exchange.ts) and request body (proxy/body.ts) counts what it reads. */
export const youngReclaimer = new YoungReclaimer((globalThis as { gc?: Gc }).gc);
