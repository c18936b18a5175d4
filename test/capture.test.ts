/**
 * The bounded copy of an answer kept for comparison. An answer that announces its length is gathered
 * in one buffer of that size as it arrives (socket chunks are let go at once instead of being held
 * until the end and joined), and that buffer may move to a comparison worker as it is.
 */
import { describe, expect, it } from 'vitest';
import { BodyCapture, CaptureBuffers, captureBuffers, ownsBacking } from '../src/forward/capture.js';

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
    // Its buffer is of the body's size class (reused for the next answer of about that size).
    expect(body.buffer.byteLength).toBe(CaptureBuffers.classOf(1_000_000));
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

  it('takes no buffer for an announced length that never comes (a HEAD, a 304, a cut after the head)', () => {
    const given = new BodyCapture(4 * 1024 * 1024);
    given.expect(900_000);
    given.add(Buffer.alloc(900_000, 1));
    captureBuffers.give(given.body().buffer as ArrayBuffer);
    const held = captureBuffers.held;
    const reused = captureBuffers.reused;
    const head = new BodyCapture(4 * 1024 * 1024);
    head.expect(900_000);
    const body = head.body();
    expect(body.length).toBe(0);
    // Nothing taken from the pool, and the empty body views no memory of an earlier answer.
    expect(captureBuffers.held).toBe(held);
    expect(captureBuffers.reused).toBe(reused);
    expect(body.buffer.byteLength).toBe(0);
  });

  it('takes its buffer from the pool when one of its class was given back', () => {
    const first = new BodyCapture(4 * 1024 * 1024);
    first.expect(900_000);
    first.add(Buffer.alloc(900_000, 1));
    const body = first.body();
    const before = captureBuffers.reused;
    captureBuffers.give(body.buffer as ArrayBuffer);
    const second = new BodyCapture(4 * 1024 * 1024);
    second.expect(910_000);
    const next = Buffer.alloc(910_000, 2);
    second.add(next);
    expect(captureBuffers.reused).toBe(before + 1);
    const again = second.body();
    expect(again.length).toBe(910_000);
    expect(again.equals(next)).toBe(true);
  });
});

describe('CaptureBuffers', () => {
  it('rounds a length up to its class: eight per power of two, never more than 1/8 over', () => {
    for (const length of [65_536, 65_537, 100_000, 940_000, 1_000_000, 1_048_576, 3_000_001]) {
      const size = CaptureBuffers.classOf(length);
      expect(size).toBeGreaterThanOrEqual(length);
      expect(size).toBeLessThanOrEqual(length * 1.125 + 1);
      expect(CaptureBuffers.classOf(size)).toBe(size);
    }
  });

  it('hands a buffer given back out again, keeps only class-sized ones, and stays within its bounds', () => {
    const pool = new CaptureBuffers(3 * 1024 * 1024, 2);
    const a = pool.take(1_000_000);
    expect(a.length).toBe(CaptureBuffers.classOf(1_000_000));
    pool.give(a.buffer as ArrayBuffer);
    expect(pool.held).toBe(a.length);
    const b = pool.take(999_000);
    expect(pool.reused).toBe(1);
    expect(b.buffer).toBe(a.buffer);
    expect(pool.held).toBe(0);
    // Not a class size (a copy made elsewhere), or too small to matter: not kept.
    pool.give(new ArrayBuffer(1_000_000));
    pool.give(new ArrayBuffer(4096));
    expect(pool.held).toBe(0);
    // Bounded by count (2) and bytes (3 MiB).
    for (let i = 0; i < 4; i++) pool.give(new ArrayBuffer(CaptureBuffers.classOf(1_000_000)));
    expect(pool.held).toBe(2 * CaptureBuffers.classOf(1_000_000));
    pool.give(new ArrayBuffer(CaptureBuffers.classOf(2_000_000)));
    expect(pool.held).toBe(2 * CaptureBuffers.classOf(1_000_000));
  });
});
