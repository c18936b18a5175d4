/** A WebSocket client for upgrade tests: connects, optionally sends one message, and resolves with the first message it gets. */
import WebSocket from 'ws';

export async function firstWsMessage(httpUrl: string, path: string, options: { headers?: Record<string, string>; send?: string } = {}): Promise<string> {
  const ws = new WebSocket(`${httpUrl.replace('http', 'ws')}${path}`, { headers: options.headers });
  try {
    return await new Promise<string>((resolve, reject) => {
      if (options.send !== undefined) ws.on('open', () => ws.send(options.send!));
      ws.on('message', (data) => resolve(String(data)));
      ws.on('error', reject);
    });
  } finally {
    ws.close();
  }
}
