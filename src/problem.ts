/**
 * RFC 9457 problem details, for every error the proxy or the admin API answers with itself.
 * `code` is a stable extension member scripts can match on; `detail` is one sentence for a person.
 */
import type { ServerResponse } from 'node:http';

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
