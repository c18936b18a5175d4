/**
 * Sticky bucketing. A key is hashed into one of BUCKETS buckets with a fixed function, so every
 * process (every sidecar, every replica) puts the same client in the same bucket with no shared
 * state, and a client stays on its backend across restarts.
 */

/** 10,000 buckets give the live weight a resolution of 0.01 percent. */
export const BUCKETS = 10_000;

/**
 * FNV-1a over UTF-16 code units, then murmur3's finaliser: FNV alone spreads similar keys
 * ("client-1", "client-2") poorly in its low bits, and the modulo below reads exactly those.
 */
export function hash32(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export function bucketOf(key: string): number {
  return hash32(key) % BUCKETS;
}

/** A weight in percent (0-100, 0.01 resolution) as the number of buckets that go to the new backend. */
export function weightToBuckets(percent: number): number {
  return Math.max(0, Math.min(BUCKETS, Math.round(percent * (BUCKETS / 100))));
}
