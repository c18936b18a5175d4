/** Raw node:net clients for the adversarial suite: bytes out exactly as written, bytes in as they came. */
import { connect } from 'node:net';

export interface RawAnswer {
  /** Everything the server sent until it closed (or the deadline passed). */
  text: string;
  /** Status of the first response, 0 when none came. */
  status: number;
  /** Status codes of every response in `text`, in order. */
  statuses: number[];
  /** Whether the server closed the connection before the deadline. */
  closed: boolean;
}

function hostPort(url: string): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port) };
}

/**
 * Writes `chunks` (strings or buffers) to a fresh connection and collects the reply until the
 * server closes it, `until` says the text is complete, or `timeoutMs` passes.
 */
export function rawExchange(url: string, chunks: string | (string | Buffer)[], options: { timeoutMs?: number; until?: (text: string) => boolean } = {}): Promise<RawAnswer> {
  const { host, port } = hostPort(url);
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let text = '';
    let closed = false;
    const finish = (): void => {
      clearTimeout(timer);
      socket.destroy();
      const statuses = [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));
      resolve({ text, status: statuses[0] ?? 0, statuses, closed });
    };
    const timer = setTimeout(finish, options.timeoutMs ?? 3_000);
    socket.on('connect', () => {
      for (const c of [chunks].flat()) socket.write(c);
    });
    socket.on('data', (d) => {
      text += d.toString('latin1');
      if (options.until?.(text)) finish();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closed = true;
      finish();
    });
  });
}

/** A complete response with a Content-Length body has arrived (one response). */
export function oneResponse(text: string): boolean {
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) return false;
  const m = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end));
  return m !== null && text.length >= end + 4 + Number(m[1]);
}
