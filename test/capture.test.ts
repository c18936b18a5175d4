/**
 * The bounded copy of an answer kept for comparison. An answer that announces its length is gathered
 * in one buffer of that size as it arrives (socket chunks are let go at once instead of being held
 * until the end and joined), and that buffer may move to a comparison worker as it is.
 */
import { describe, expect, it } from 'vitest';
import { BodyCapture, ownsBacking } from '../src/forward/capture.js';

const chunks = (total: number, size: number): Buffer[] => {
  const out: Buffer[] = [];
  for (let at = 0; at < total; at += size) out.push(Buffer.alloc(Math.min(size, total - at), at / size + 1));
  return out;
};

describe('BodyCapture', () => {
  it('gathers an announced 1 MB body in one buffer of its own, not holding the socket chunks', () => {
    const parts = chunks(1_000_000, 65_536);
    const expected = Buffer.concat(parts);
    const capture = new BodyCapture(1024 * 1024);
    capture.expect(1_000_000);
    for (const part of parts) capture.add(part);
    // The chunks are the socket's: once handed over they are not the capture's to keep.
    for (const part of parts) part.fill(0);
    const body = capture.body();
    expect(body.equals(expected)).toBe(true);
    expect(capture.truncated).toBe(false);
    expect(body.byteOffset).toBe(0);
    expect(body.buffer.byteLength).toBe(1_000_000);
    expect(ownsBacking(body)).toBe(true);
  });

  it('keeps only what arrived when the body is cut short (never the unwritten rest of its buffer)', () => {
    const capture = new BodyCapture(1024 * 1024);
    capture.expect(500_000);
    capture.add(Buffer.alloc(100_000, 7));
    const body = capture.body();
    expect(body.length).toBe(100_000);
    expect(body.every((b) => b === 7)).toBe(true);
  });

  it('falls back to chunks when more arrives than announced, and still stops at the cap', () => {
    const capture = new BodyCapture(300_000);
    capture.expect(100_000);
    capture.add(Buffer.alloc(100_000, 1));
    capture.add(Buffer.alloc(100_000, 2));
    expect(capture.body().length).toBe(200_000);
    capture.add(Buffer.alloc(150_000, 3));
    expect(capture.truncated).toBe(true);
    const body = capture.body();
    expect(body.length).toBe(300_000);
    expect([body[0], body[150_000], body[299_999]]).toEqual([1, 2, 3]);
  });

  it('ignores a length past the cap or too small to matter', () => {
    const over = new BodyCapture(1000);
    over.expect(5000);
    over.add(Buffer.alloc(1500, 1));
    expect(over.truncated).toBe(true);
    expect(over.body().length).toBe(1000);
    const small = new BodyCapture(1000);
    small.expect(10);
    const chunk = Buffer.from('0123456789');
    small.add(chunk);
    // One small chunk is kept as it is: copying it would cost more than it saves.
    expect(small.body()).toBe(chunk);
  });
});
