/**
 * Big JSON values already found valid, kept by their bytes. The lockstep path (lockstep.ts) spends
 * nearly all its time checking that the bytes both bodies share are valid JSON: ~1 ms for a 1 MB
 * answer whose only differences are a few fields. The same big value often comes back answer after
 * answer (a catalogue, a price list, the order lines of one order, a feature table), and a value
 * whose bytes equal ones already read is read the same way: same validity, same extent, same
 * numbers. So a value read once is recognised the next time by a native compare (~20× faster than
 * reading it), and nothing but the compare is trusted: no hash, no sample.
 *
 * A value is kept only the second time it is read (a fingerprint marks the first), so answers that
 * never repeat cost a fingerprint and no copy. Bounded by bytes. When full, a newcomer takes the
 * place of a value unused for STALE_LOOKUPS lookups, else it is not kept: with more big values in
 * turn than fit (sixteen 1 MB answers and room for eight), the ones kept keep serving, where
 * "least recently used goes" would throw out each value just before it comes back.
 * One instance per thread that compares; it is the caller's state, passed in (compare/ keeps none).
 */

/** Values smaller than this are not kept: reading them costs little, and copies of many would add up. */
export const KNOWN_MIN_BYTES = 64 * 1024;

/**
 * A value still open after this many bytes is looked up (once): a lookup costs about what reading a
 * few hundred bytes does, so smaller values are read without one.
 */
export const LOOKUP_AFTER_BYTES = 4 * 1024;

/** How many first sightings (fingerprints) are remembered. */
const SIGHTINGS = 64;

/** A kept value not seen for this many lookups may make room for a newcomer. */
export const STALE_LOOKUPS = 1024;

interface Entry {
  bytes: Buffer;
  /** How deep it nests below its own bracket (0: holds no container). */
  nesting: number;
  used: number;
}

export interface KnownSpansStats {
  hits: number;
  /** Values looked up and not known. */
  misses: number;
  entries: number;
  bytes: number;
}

export class KnownSpans {
  private readonly entries: Entry[] = [];
  private readonly sightings: string[] = [];
  private held = 0;
  private clock = 0;
  private hits = 0;
  private misses = 0;

  /** `maxBytes` bounds the copies kept (0 keeps none). */
  constructor(readonly maxBytes: number) {}

  /** Whether any value is kept (a lookup is worth making). */
  get size(): number {
    return this.entries.length;
  }

  stats(): KnownSpansStats {
    return { hits: this.hits, misses: this.misses, entries: this.entries.length, bytes: this.held };
  }

  /**
   * The offset of the bracket closing the value that opens at t, when the bytes from t are a kept
   * value's, its closing bracket lies before `past`, and opened at `depth` it nests no deeper than
   * `maxDepth`; -1 otherwise.
   */
  lookup(buf: Buffer, t: number, depth: number, past: number, maxDepth: number): number {
    this.clock++;
    const room = Math.min(past, buf.length) - t;
    const first = buf[t];
    for (const e of this.entries) {
      const len = e.bytes.length;
      if (len > room || e.bytes[0] !== first || e.bytes[len - 1] !== buf[t + len - 1] || depth + e.nesting > maxDepth) continue;
      if (buf.compare(e.bytes, 0, len, t, t + len) !== 0) continue;
      e.used = this.clock;
      this.hits++;
      return t + len - 1;
    }
    this.misses++;
    return -1;
  }

  /** A value [t, end] just read and found valid: kept if it was read before and fits. */
  offer(buf: Buffer, t: number, end: number, nesting: number): void {
    const len = end - t + 1;
    if (len < KNOWN_MIN_BYTES || len > this.maxBytes) return;
    const mark = fingerprint(buf, t, len);
    const seen = this.sightings.indexOf(mark);
    if (seen === -1) {
      if (this.sightings.length >= SIGHTINGS) this.sightings.shift();
      this.sightings.push(mark);
      return;
    }
    this.sightings.splice(seen, 1);
    while (this.held + len > this.maxBytes) if (!this.evictStale()) return;
    // A copy of its own: the body it came from goes back to the capture pool and is written over.
    const bytes = Buffer.allocUnsafeSlow(len);
    buf.copy(bytes, 0, t, end + 1);
    this.entries.push({ bytes, nesting, used: this.clock });
    this.held += len;
  }

  /** Drops the least recently used value if it is stale; false when none is. */
  private evictStale(): boolean {
    let oldest = -1;
    for (let i = 0; i < this.entries.length; i++) if (oldest === -1 || this.entries[i].used < this.entries[oldest].used) oldest = i;
    if (oldest === -1 || this.clock - this.entries[oldest].used < STALE_LOOKUPS) return false;
    const [gone] = this.entries.splice(oldest, 1);
    this.held -= gone.bytes.length;
    return true;
  }
}

/**
 * Length and a few bytes from the start, the middle and the end: enough to tell a value seen
 * before from most others. It only decides what is copied; a lookup compares every byte.
 */
function fingerprint(buf: Buffer, t: number, len: number): string {
  const mid = t + (len >> 1);
  return `${len}:${buf.toString('latin1', t, t + 24)}${buf.toString('latin1', mid, mid + 24)}${buf.toString('latin1', t + len - 24, t + len)}`;
}
