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

  it('decodes a gzip that claims to be small, up to the main thread\'s share: its trailer gives only the last member\'s size', () => {
    const share = 16 * 1024;
    // Two members (RFC 1952 §2.2): the whole JSON, then an empty one whose trailer says 0.
    const twoMembers = Buffer.concat([gzipSync(json), gzipSync(Buffer.alloc(0))]);
    expect(twoMembers.readUInt32LE(twoMembers.length - 4)).toBe(0);
    expect(decodedBytes({ headers: { 'content-encoding': 'gzip' }, body: twoMembers }, share)).toBeGreaterThanOrEqual(share);
    // A small answer is read its real size, one claiming big is taken at its word (it goes to a worker anyway).
    const small = Buffer.from('{"ok":true,"items":[1,2,3]}');
    const smallTwo = Buffer.concat([gzipSync(small.subarray(0, 10)), gzipSync(small.subarray(10))]);
    // (never less than what was captured: a tiny gzip is bigger than its content)
    expect(decodedBytes({ headers: { 'content-encoding': 'gzip' }, body: smallTwo }, share)).toBe(Math.max(smallTwo.length, small.length));
    expect(decodedBytes({ headers: { 'content-encoding': 'gzip' }, body: gzipSync(json) }, share)).toBe(json.length);
  });

  it('takes other codings for big (a few KB may inflate to the cap): their pairs are compared off the main thread', () => {
    const br = brotliCompressSync(json);
    const df = deflateSync(json);
    const MB = 1024 * 1024;
    expect(decodedBytes({ headers: { 'content-encoding': 'br' }, body: br })).toBe(MB);
    expect(decodedBytes({ headers: { 'content-encoding': 'deflate' }, body: df })).toBe(MB);
    // Stacked codings, or a body that is not gzip although it says so: unknown too.
    const gz = gzipSync(json);
    expect(decodedBytes({ headers: { 'content-encoding': 'gzip, br' }, body: gz })).toBe(MB);
    expect(decodedBytes({ headers: { 'content-encoding': 'gzip' }, body: json.subarray(0, 100) })).toBe(MB);
    // Past the cap's size, the assumed ratio.
    const big = Buffer.alloc(256 * 1024, 1);
    expect(decodedBytes({ headers: { 'content-encoding': 'br' }, body: big })).toBe(big.length * 8);
    expect(decodedBytes({ headers: { 'content-encoding': 'gzip' }, body: Buffer.alloc(0) })).toBe(0);
  });
});
