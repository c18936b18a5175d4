/**
 * Upgrade (WebSocket) pass-through. Upgraded connections go to the primary backend as a raw
 * tunnel: the request head is rewritten (X-Forwarded-*, credentials) and then bytes flow both ways
 * untouched. They are never mirrored: a second live socket would double every message.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

export interface UpgradeTarget {
  origin: string;
  /** Request target as the backend expects it (base path + path + query). */
  path: string;
  /** Headers as a flat list; the proxy adds Connection/Upgrade back itself. */
  headers: string[];
  connectTimeout: number;
}

const BAD_GATEWAY = 'HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/problem+json\r\nconnection: close\r\ncontent-length: ';

function refuse(socket: Duplex, backend: string): void {
  const body = JSON.stringify({ type: 'urn:cutover:problem:upstream-unavailable', title: 'Bad gateway', status: 502, detail: `The ${backend} backend could not be reached for the upgrade; retry later.`, code: 'UPSTREAM_UNAVAILABLE', backend });
  socket.end(`${BAD_GATEWAY}${Buffer.byteLength(body)}\r\n\r\n${body}`);
}

export function tunnelUpgrade(req: IncomingMessage, client: Duplex, head: Buffer, target: UpgradeTarget, backend: string, onError: (err: Error) => void): void {
  const url = new URL(target.origin);
  const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
  const upstream: Socket =
    url.protocol === 'https:'
      ? tlsConnect({ host: url.hostname, port, servername: url.hostname })
      : netConnect({ host: url.hostname, port });
  upstream.setTimeout(target.connectTimeout, () => upstream.destroy(new Error('connect timeout')));
  let lines = `${req.method} ${target.path} HTTP/1.1\r\nhost: ${url.host}\r\nconnection: Upgrade\r\nupgrade: ${req.headers.upgrade ?? 'websocket'}\r\n`;
  for (let i = 0; i < target.headers.length; i += 2) {
    if (target.headers[i].toLowerCase() === 'host') continue;
    lines += `${target.headers[i]}: ${target.headers[i + 1]}\r\n`;
  }
  lines += '\r\n';
  let connected = false;
  upstream.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => {
    connected = true;
    upstream.setTimeout(0);
    upstream.setNoDelay(true);
    upstream.write(lines);
    if (head.length) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  });
  upstream.on('error', (err) => {
    if (!connected) refuse(client, backend);
    else client.destroy();
    onError(err);
  });
  client.on('error', () => upstream.destroy());
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
}
