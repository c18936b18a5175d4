/**
 * RFC 9457 problem details, for every error the proxy or the admin API answers with itself.
 * `code` is a stable extension member scripts can match on; `detail` is one sentence for a person.
 */
import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { EventEmitter } from 'node:events';
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

/** Sockets whose problem waits for the answers due before it (a parser error may be reported again meanwhile). */
const deferred = new WeakSet<Duplex>();

type HttpSocket = Duplex & {
  _httpMessage?: (EventEmitter & { headersSent?: boolean; req?: unknown }) | null;
  parser?: { incoming?: { complete?: boolean } | null } | null;
};

/**
 * A request Node's parser refused (malformed framing, headers too large or too slow): a raw
 * problem+json 400 (431, 408) and the connection closed, since nothing after the bad bytes can be
 * trusted to be a request boundary. `onTimeout` counts a header timeout (the data port's).
 *
 * Which request the error belongs to decides when the problem is written. The parser's `incoming`
 * is the last request whose head was read:
 * - no answer due: the error is that request's, and the problem is its answer, now;
 * - the request being read broke in its body: the problem is its answer when it is the one being
 *   answered and nothing is under way; otherwise (an answer under way, or a pipelined request whose
 *   handler waits for that body) the connection is cut;
 * - an answer due to an earlier request (a pipelining client), or the request read whole (the error
 *   is in the head of a later one: bad header, too large, too slow): written now, the client would
 *   read the problem as that earlier request's answer, which the backend may have run. The answers
 *   due go out first, in order, then the problem, then the connection closes. A slow head (408) is
 *   cut instead: the parser goes on reading it, and it could yet become a request.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex, onTimeout: () => void = () => undefined): void {
  const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
  // Counted as the body's are, on the route nothing could be matched to yet, however it is answered.
  if (timeout) onTimeout();
  if (deferred.has(socket)) return;
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
  const answer = tooLarge
    ? problem(431, 'HEADERS_TOO_LARGE', 'Request header fields too large', 'The request headers are larger than the proxy accepts; send fewer or smaller headers.')
    : timeout
      ? problem(408, 'REQUEST_TIMEOUT', 'Request timeout', 'The request did not arrive in time; retry.')
      : problem(400, 'BAD_FRAMING', 'Bad request', 'The request is not valid HTTP/1.1 (framing, header syntax or chunk sizes); fix the client.');
  const pending = (socket as HttpSocket)._httpMessage;
  const reading = (socket as HttpSocket).parser?.incoming;
  if (pending == null) {
    writeRawProblem(socket, answer);
  } else if (reading?.complete !== true) {
    // The body of a request whose head was read broke: the one being answered gets the problem as
    // its answer while none is under way; any other (its handler waits for that body) is cut.
    if (pending.req === reading && pending.headersSent !== true) writeRawProblem(socket, answer);
    else socket.destroy();
  } else if (timeout) {
    // A slow head is still being parsed (only a broken one stops the parser): it could yet become a
    // request behind the problem. Cut.
    socket.destroy();
  } else {
    deferred.add(socket);
    afterAnswersDue(socket as HttpSocket, () => {
      if (!socket.destroyed && socket.writable) writeRawProblem(socket, answer);
    });
  }
}

/** Runs `then` once no answer is attached to the connection any more (each queued one is attached in turn). */
function afterAnswersDue(socket: HttpSocket, then: () => void): void {
  const pending = socket._httpMessage;
  if (pending == null) {
    then();
    return;
  }
  let done = false;
  // A queued answer is attached to the connection when the one ahead finishes: look again after that.
  const next = (): void => {
    if (done) return;
    done = true;
    setImmediate(() => afterAnswersDue(socket, then));
  };
  pending.once('finish', next);
  pending.once('close', next);
}
