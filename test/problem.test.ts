import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { problem, writeRawProblem } from '../src/problem.js';

function written(status: number): Promise<string> {
  const socket = new PassThrough();
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => {
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    writeRawProblem(socket, problem(status, 'X', 'X', 'x'));
  });
}

describe('writeRawProblem', () => {
  it('writes the standard reason phrase for every status the raw paths answer with', async () => {
    expect((await written(504)).split('\r\n')[0]).toBe('HTTP/1.1 504 Gateway Timeout');
    expect((await written(431)).split('\r\n')[0]).toBe('HTTP/1.1 431 Request Header Fields Too Large');
    const text = await written(502);
    expect(text.split('\r\n')[0]).toBe('HTTP/1.1 502 Bad Gateway');
    expect(text).toContain('connection: close\r\n');
    expect(JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))).toMatchObject({ status: 502, code: 'X' });
  });
});
