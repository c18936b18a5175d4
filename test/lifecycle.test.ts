import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { startBackend, waitFor } from './helpers/backend.js';
import { baseConfig, spawnProxy } from './helpers/proxy.js';

describe('graceful shutdown', () => {
  it('finishes an in-flight slow request after SIGTERM, refuses new connections, exits 0', async () => {
    let arrived = false;
    const legacy = await startBackend((_req, res) => {
      arrived = true;
      setTimeout(() => res.end('slow but complete'), 700);
    });
    const p = await spawnProxy(baseConfig(legacy.url, legacy.url, { listen: { host: '127.0.0.1', port: 0, drainTimeout: '10s' } }));
    try {
      const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
        http
          .get(`${p.dataUrl}/slow`, { agent: false }, (res) => {
            let body = '';
            res.on('data', (c) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode!, body }));
          })
          .on('error', reject);
      });
      await waitFor(() => arrived, 5_000, 'the request to reach the backend');
      p.child.kill('SIGTERM');
      const { status, body } = await answer;
      expect(status).toBe(200);
      expect(body).toBe('slow but complete');
      expect(await p.exited).toBe(0);
      const refused = await new Promise<boolean>((resolve) => {
        http.get(`${p.dataUrl}/after`, { agent: false }, () => resolve(false)).on('error', () => resolve(true));
      });
      expect(refused).toBe(true);
    } finally {
      await p.stop();
      await legacy.close();
    }
  });

  it('cuts requests still running at the drain deadline and still exits 0', async () => {
    const legacy = await startBackend(() => undefined /* never answers */);
    const p = await spawnProxy(baseConfig(legacy.url, legacy.url, { listen: { host: '127.0.0.1', port: 0, drainTimeout: '300ms' } }));
    try {
      const outcome = new Promise<string>((resolve) => {
        http.get(`${p.dataUrl}/stuck`, { agent: false }, () => resolve('answered')).on('error', () => resolve('cut'));
      });
      await waitFor(() => legacy.received.length > 0, 5_000, 'the request to reach the backend');
      p.child.kill('SIGTERM');
      expect(await p.exited).toBe(0);
      expect(await outcome).toBe('cut');
    } finally {
      await p.stop();
      await legacy.close();
    }
  });
});
