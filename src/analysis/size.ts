/**
 * How big a pair is once decoded, estimated without decoding: what decides whether comparing it on
 * the main thread is cheap. The captured size alone would keep a 4 KB gzip of 400 KB of JSON on the
 * main thread, where its synchronous inflate and parse would stall the client's turn.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { encodingsOf } from '../compare/decode.js';
import type { CapturedAnswerPair } from '../shadow/pair.js';

/** JSON and text compress about this much or better with deflate and brotli (a lower bound where no size is written down). */
const ASSUMED_RATIO = 8;

/**
 * The decoded size of one answer's body: as captured when not encoded; a lone gzip writes it in its
 * trailer (ISIZE, RFC 1952: the size modulo 2^32 of the last member), and other codings are
 * assumed to shrink their content ASSUMED_RATIO times.
 */
export function decodedBytes(answer: { headers: IncomingHttpHeaders; body: Buffer }): number {
  const body = answer.body;
  const n = body.length;
  if (n === 0) return 0;
  const list = encodingsOf(answer.headers);
  if (list.length === 0) return n;
  if (list.length === 1 && (list[0] === 'gzip' || list[0] === 'x-gzip') && n >= 18 && body[0] === 0x1f && body[1] === 0x8b) {
    return Math.max(n, body.readUInt32LE(n - 4));
  }
  // Deflate and brotli write no size down, and a few KB of them may inflate to the capture cap:
  // their decoding and comparing belong off the main thread whatever their captured size.
  return Math.max(n * ASSUMED_RATIO, UNKNOWN_DECODED_BYTES);
}

/** What an answer whose decoded size cannot be read is taken for: past the main thread's share. */
const UNKNOWN_DECODED_BYTES = 1024 * 1024;

/** Every answer of a pair together, decoded (estimated as above). */
export function decodedPairBytes(pair: CapturedAnswerPair): number {
  return decodedBytes(pair.primary) + decodedBytes(pair.shadow) + (pair.baseline === null ? 0 : decodedBytes(pair.baseline));
}
