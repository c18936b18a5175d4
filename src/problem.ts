/**
 * RFC 9457 problem details, for every error the proxy or the admin API answers with itself.
 * `code` is a stable extension member scripts can match on; `detail` is one sentence for a person.
 */
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

export const PROBLEM_TYPE = 'application/problem+json';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  [extension: string]: unknown;
}

export function problem(status: number, code: string, title: string, detail: string, extensions: Record<string, unknown> = {}): Problem {
  return { type: `urn:cutover:problem:${code.toLowerCase().replace(/_/g, '-')}`, title, status, detail, code, ...extensions };
}

/** Writes a problem to a raw response that has not sent its headers yet. */
export function sendProblem(res: ServerResponse, p: Problem): void {
  const body = JSON.stringify(p);
  res.writeHead(p.status, { 'content-type': PROBLEM_TYPE, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}

/** How long a socket answered with a raw problem may stay half-open before it is closed. */
export const RAW_CLOSE_GRACE_MS = 2_000;

/** Writes a problem as a whole HTTP/1.1 response to a raw socket (no server response exists) and closes it. */
export function writeRawProblem(socket: Duplex, p: Problem, extra: { retryAfterS?: number; allow?: string } = {}): void {
  const body = JSON.stringify(p);
  const retry = extra.retryAfterS === undefined ? '' : `retry-after: ${extra.retryAfterS}\r\n`;
  const allow = extra.allow === undefined ? '' : `allow: ${extra.allow}\r\n`;
  socket.end(
    `HTTP/1.1 ${p.status} ${STATUS_CODES[p.status] ?? 'Error'}\r\ncontent-type: ${PROBLEM_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\ncache-control: no-store\r\n${retry}${allow}connection: close\r\n\r\n${body}`,
  );
  // end() only half-closes: a client that keeps its side open would hold the socket for good (an
  // upgraded or refused socket has no HTTP timeouts left). Once the answer is out, what the client
  // still sends is read and dropped (closing on unread bytes would reset the answer away), and the
  // socket is closed after a grace period.
  socket.once('finish', () => {
    socket.resume();
    const timer = setTimeout(() => socket.destroy(), RAW_CLOSE_GRACE_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  });
}

/**
 * A request Node's parser refused (malformed framing, headers too large or too slow): a raw
 * problem+json 400 (431, 408) and the connection closed, since nothing after the bad bytes can be
 * trusted to be a request boundary. `onTimeout` counts a header timeout (the data port's).
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex, onTimeout: () => void = () => undefined): void {
  const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
  // An answer under way on this connection: a problem written now would land inside its body. And
  // with an answer due to an earlier request (a pipelining client), the client would read it as
  // that request's answer, which the backend may have run. Cut instead. A framing error in the one
  // request being read, with no other answer due, is that request's answer: 400. The parser's
  // `incoming` is the last request whose head was read: once that one is read whole, the error is
  // in the head of a later one (bad header, too large, too slow), and its answer is still due.
  const pending = (socket as Duplex & { _httpMessage?: { headersSent?: boolean; req?: unknown } | null })._httpMessage;
  const reading = (socket as Duplex & { parser?: { incoming?: { complete?: boolean } | null } | null }).parser?.incoming;
  const answering = pending != null && (pending.headersSent === true || pending.req !== reading || reading?.complete === true);
  // Headers that did not all arrive within listen.requestTimeout (a slow-header client): counted
  // as the body's are, on the route nothing could be matched to yet, whether answered or cut.
  if (timeout) onTimeout();
  if (err.code === 'ECONNRESET' || !socket.writable || answering) {
    socket.destroy();
    return;
  }
  const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
  writeRawProblem(
    socket,
    tooLarge
      ? problem(431, 'HEADERS_TOO_LARGE', 'Request header fields too large', 'The request headers are larger than the proxy accepts; send fewer or smaller headers.')
      : timeout
        ? problem(408, 'REQUEST_TIMEOUT', 'Request timeout', 'The request did not arrive in time; retry.')
        : problem(400, 'BAD_FRAMING', 'Bad request', 'The request is not valid HTTP/1.1 (framing, header syntax or chunk sizes); fix the client.'),
  );
}
