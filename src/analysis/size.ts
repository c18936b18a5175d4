/**
 * How big a pair is once decoded, estimated without decoding: what decides whether comparing it on
 * the main thread is cheap. The captured size alone would keep a 4 KB gzip of 400 KB of JSON on the
 * main thread, where its synchronous inflate and parse would stall the client's turn.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { encodingsOf, isTooLarge } from '../compare/decode.js';
import type { CapturedAnswerPair } from '../shadow/pair.js';

/** JSON and text compress about this much or better with deflate and brotli (a lower bound where no size is written down). */
const ASSUMED_RATIO = 8;

/**
 * The decoded size of one answer's body: as captured when not encoded; other codings than gzip are
 * assumed to shrink their content ASSUMED_RATIO times. A gzip writes a size in its trailer (ISIZE,
 * RFC 1952), but only its *last* member's: a body of several members (legal, and decoded whole) may
 * end with an empty one and read as 0. So a gzip that claims less than `probeBelow` (the main
 * thread's share) is decoded here up to that size to know: a few KB, where a wrong claim would put
 * up to the capture cap of inflating, parsing and diffing on the client's event loop.
 */
export function decodedBytes(answer: { headers: IncomingHttpHeaders; body: Buffer }, probeBelow = 0): number {
  const body = answer.body;
  const n = body.length;
  if (n === 0) return 0;
  const list = encodingsOf(answer.headers);
  if (list.length === 0) return n;
  if (list.length === 1 && (list[0] === 'gzip' || list[0] === 'x-gzip') && n >= 18 && body[0] === 0x1f && body[1] === 0x8b) {
    const claimed = Math.max(n, body.readUInt32LE(n - 4));
    if (claimed >= probeBelow) return claimed;
    try {
      return Math.max(n, gunzipSync(body, { maxOutputLength: probeBelow }).length);
    } catch (err) {
      // Past the share: big after all. Broken: the comparison says so (it fails as fast as this did).
      return isTooLarge(err) ? Math.max(probeBelow, UNKNOWN_DECODED_BYTES) : claimed;
    }
  }
  // Deflate and brotli write no size down, and a few KB of them may inflate to the capture cap:
  // their decoding and comparing belong off the main thread whatever their captured size.
  return Math.max(n * ASSUMED_RATIO, UNKNOWN_DECODED_BYTES);
}

/** What an answer whose decoded size cannot be read is taken for: past the main thread's share. */
const UNKNOWN_DECODED_BYTES = 1024 * 1024;

/** Every answer of a pair together, decoded (estimated as above, gzip claims under `probeBelow` checked). */
export function decodedPairBytes(pair: CapturedAnswerPair, probeBelow = 0): number {
  return decodedBytes(pair.primary, probeBelow) + decodedBytes(pair.shadow, probeBelow) + (pair.baseline === null ? 0 : decodedBytes(pair.baseline, probeBelow));
}
