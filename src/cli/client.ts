/**
 * Thin clients of the admin API (`cutover reload`, and the controller's levers as they arrive):
 * one HTTP call, the answer printed for a person, problem+json turned into its sentence and problems.
 */
import { readFileSync } from 'node:fs';
import { request } from 'undici';
import { CutoverError } from '../errors.js';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:9090';

export interface ClientOptions {
  admin?: string;
  tokenFile?: string;
}

/** What the admin API answered, or the reason it could not be asked. */
export interface AdminAnswer {
  status: number;
  body: Record<string, unknown>;
}

export class AdminClientError extends CutoverError {
  constructor(message: string) {
    super('CUTOVER_ADMIN_UNREACHABLE', message);
  }
}

function readToken(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new AdminClientError(`Cannot read the token file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'}); pass the admin token's file with --token-file.`);
  }
}

export async function callAdmin(method: 'GET' | 'POST', path: string, options: ClientOptions, body?: unknown): Promise<AdminAnswer> {
  const base = (options.admin ?? DEFAULT_ADMIN_URL).replace(/\/$/, '');
  const token = readToken(options.tokenFile);
  const headers: Record<string, string> = { accept: 'application/json, application/problem+json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await request(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), headersTimeout: 30_000, bodyTimeout: 30_000 });
  } catch (err) {
    throw new AdminClientError(`Cannot reach the admin API at ${base} (${(err as { code?: string }).code ?? (err as Error).message}); check --admin and that cutover is running.`);
  }
  const text = await res.body.text();
  let parsed: Record<string, unknown> = {};
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    parsed = { detail: text };
  }
  return { status: res.statusCode, body: parsed };
}

/** A problem+json answer as lines for stderr: its sentence, then each problem. */
export function describeProblem(answer: AdminAnswer): string {
  const detail = typeof answer.body.detail === 'string' ? answer.body.detail : `the admin API answered ${answer.status}`;
  const problems = Array.isArray(answer.body.problems) ? answer.body.problems.map((p) => `\n  ${String(p)}`).join('') : '';
  return `${detail}${problems}`;
}

/** `cutover reload`: 0 reloaded (or unchanged), 2 the file was refused, 1 the API could not be asked. */
export async function reloadCommand(options: ClientOptions, out: (text: string) => void, err: (text: string) => void): Promise<number> {
  const answer = await callAdmin('POST', '/api/reload', options);
  if (answer.status === 200) {
    const { status, version, hash, routes } = answer.body as { status: string; version: number; hash: string; routes: string[] };
    out(`cutover: config ${status}: version ${version}, hash ${hash}, ${routes.length} route${routes.length === 1 ? '' : 's'}\n`);
    return 0;
  }
  err(`cutover: reload refused: ${describeProblem(answer)}\n`);
  return answer.status === 401 || answer.status === 403 || answer.status >= 500 ? 1 : 2;
}
