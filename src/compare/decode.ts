/** Content-Encoding decoding under a size cap, and which kind of body a response carries. */
import { brotliDecompressSync, gunzipSync, inflateRawSync, inflateSync } from 'node:zlib';
import type { BodyKind } from './types.js';

export type Decoded = { ok: true; body: Buffer } | { ok: false; truncated: true } | { ok: false; truncated: false; error: string };

export function headerValue(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  let v = headers[name];
  if (v === undefined) {
    // Node lower-cases names; a caller with other casing still gets the header (names are case-insensitive).
    for (const k in headers) {
      if (k.toLowerCase() === name && headers[k] !== undefined) {
        v = headers[k];
        break;
      }
    }
  }
  if (v === undefined) return undefined;
  return typeof v === 'string' ? v : v.join(', ');
}

/** `gzip, br` lists codings in the order applied, so they are undone from the last. */
export function encodingsOf(headers: Record<string, string | string[] | undefined>): string[] {
  const raw = headerValue(headers, 'content-encoding');
  if (!raw) return [];
  return raw
    .split(',')
    .map((e) => e.trim().toLowerCase())
    .filter((e) => e && e !== 'identity');
}

/** zlib stopped at its maxOutputLength: the content is longer than the cap. */
export function isTooLarge(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError;
}

/** Never mutates `body`: zlib reads it and returns new buffers. */
export function decodeBody(body: Buffer, encodings: string[], maxBytes: number): Decoded {
  // zlib rejects maxOutputLength 0; a zero cap means "nothing may be captured", i.e. truncated.
  const cap = Math.max(1, maxBytes);
  let out = body;
  for (let i = encodings.length - 1; i >= 0; i--) {
    const enc = encodings[i];
    if (out.length === 0) break;
    try {
      if (enc === 'gzip' || enc === 'x-gzip') out = gunzipSync(out, { maxOutputLength: cap });
      else if (enc === 'br') out = brotliDecompressSync(out, { maxOutputLength: cap });
      else if (enc === 'deflate') {
        // RFC 9110 deflate is zlib-wrapped, but some servers send raw deflate: accept both.
        try {
          out = inflateSync(out, { maxOutputLength: cap });
        } catch (err) {
          if (isTooLarge(err)) throw err;
          out = inflateRawSync(out, { maxOutputLength: cap });
        }
      } else return { ok: false, truncated: false, error: `unsupported content-encoding "${enc}"` };
    } catch (err) {
      if (isTooLarge(err)) return { ok: false, truncated: true };
      return { ok: false, truncated: false, error: `${enc}: ${(err as Error).message}` };
    }
  }
  if (out.length > maxBytes) return { ok: false, truncated: true };
  return { ok: true, body: out };
}

/** Kind from a Content-Type, or undefined when there is none to go by. */
export function kindFromContentType(contentType: string | undefined): Exclude<BodyKind, 'empty'> | undefined {
  if (!contentType) return undefined;
  const semi = contentType.indexOf(';');
  const media = (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
  if (!media) return undefined;
  if (media === 'application/json' || media.endsWith('+json') || media === 'text/json') return 'json';
  if (media.startsWith('text/') || media.endsWith('/xml') || media.endsWith('+xml')) return 'text';
  if (media === 'application/x-www-form-urlencoded' || media === 'application/javascript' || media === 'application/x-ndjson') return 'text';
  return 'binary';
}

/** The charset Buffer can decode for text, from a Content-Type; UTF-8 unless Latin-1 is named. */
export function charsetOf(contentType: string | undefined): 'utf8' | 'latin1' {
  const m = contentType ? /charset\s*=\s*"?([^";\s]+)/i.exec(contentType) : null;
  const cs = m?.[1].toLowerCase();
  return cs === 'iso-8859-1' || cs === 'latin1' || cs === 'us-ascii' || cs === 'windows-1252' ? 'latin1' : 'utf8';
}

/** Guess for bodies without a Content-Type: JSON if it starts like JSON, text if valid UTF-8 without control bytes. */
export function sniffKind(body: Buffer, sampleBytes = 4096): Exclude<BodyKind, 'empty'> {
  let i = 0;
  if (body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) i = 3;
  while (i < body.length && (body[i] === 0x20 || body[i] === 0x0a || body[i] === 0x0d || body[i] === 0x09)) i++;
  const c = body[i];
  if (c === 0x7b || c === 0x5b) return 'json';
  const sample = body.subarray(0, sampleBytes);
  for (let j = 0; j < sample.length; j++) {
    const b = sample[j];
    if (b === 0 || (b < 0x09) || (b > 0x0d && b < 0x20 && b !== 0x1b)) return 'binary';
  }
  // A cut multi-byte sequence at the sample's end is not evidence of binary.
  const text = sample.toString('utf8');
  const bad = text.indexOf('\ufffd');
  if (bad !== -1 && bad < text.length - 3) return 'binary';
  return 'text';
}
