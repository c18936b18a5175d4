/** Clients for upgrade tests. */
import http from 'node:http';
import WebSocket from 'ws';

/** A WebSocket client: connects, optionally sends one message, and resolves with the first message it gets. */
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

/** A raw upgrade request (`upgrade: websocket`): resolves with the 101, or with the status and body of any other answer. */
export function upgradeRequest(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { headers: { connection: 'upgrade', upgrade: 'websocket', ...headers }, agent: false });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode!, body: '' });
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
