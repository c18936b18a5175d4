/** The bench's port picker: ports handed to processes it cannot ask (the cutover CLI reads them from its config). */
import net from 'node:net';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ESM module of the bench, without types
import { freePorts } from '../bench/lib/ports.mjs';

describe('freePorts', () => {
  it('gives n distinct ports, all free again once it returns', async () => {
    const ports: number[] = await freePorts(40);
    expect(new Set(ports).size).toBe(40);
    // Each can be taken by the process it is handed to.
    for (const port of ports) {
      const server = net.createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => resolve());
      });
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
