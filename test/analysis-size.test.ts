import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodedBytes } from '../src/analysis/size.js';

const json = Buffer.from(JSON.stringify({ items: Array.from({ length: 4000 }, (_, i) => ({ id: i % 10, name: 'widget', tags: ['a', 'b'] })) }));

describe('decoded size of a captured answer', () => {
  it('is the captured size for an answer without content coding', () => {
    expect(decodedBytes({ headers: {}, body: json })).toBe(json.length);
    expect(decodedBytes({ headers: { 'content-encoding': 'identity' }, body: json })).toBe(json.length);
  });

  it('reads a gzip body its decoded size from the trailer, so a small capture of a big answer is big', () => {
    const gz = gzipSync(json);
    expect(gz.length).toBeLessThan(16 * 1024);
    expect(decodedBytes({ headers: { 'content-encoding': 'gzip' }, body: gz })).toBe(json.length);
    expect(decodedBytes({ headers: { 'content-encoding': 'X-Gzip' }, body: gz })).toBe(json.length);
  });

  it('assumes other codings shrank their content, never less than the capture', () => {
    const br = brotliCompressSync(json);
    const df = deflateSync(json);
    expect(decodedBytes({ headers: { 'content-encoding': 'br' }, body: br })).toBe(br.length * 8);
    expect(decodedBytes({ headers: { 'content-encoding': 'deflate' }, body: df })).toBe(df.length * 8);
    // Stacked codings, or a body that is not gzip although it says so: the assumed ratio.
    const gz = gzipSync(json);
    expect(decodedBytes({ headers: { 'content-encoding': 'gzip, br' }, body: gz })).toBe(gz.length * 8);
    expect(decodedBytes({ headers: { 'content-encoding': 'gzip' }, body: json.subarray(0, 100) })).toBe(800);
    expect(decodedBytes({ headers: { 'content-encoding': 'gzip' }, body: Buffer.alloc(0) })).toBe(0);
  });
});
