/**
 * Where the CLI's admin clients (`cutover status`, `promote`, ...) find the admin API and its token:
 * `--admin URL` (default http://127.0.0.1:9090, or $CUTOVER_ADMIN_URL), and the token from
 * `--token-file F` or $CUTOVER_ADMIN_TOKEN. Here because only src/config reads files and the environment.
 */
import { readFileSync } from 'node:fs';
import { CutoverError } from '../errors.js';

export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:9090';

export interface ClientSettings {
  admin: string;
  token: string | undefined;
}

export function clientSettings(flags: { admin?: string; tokenFile?: string }): ClientSettings {
  const admin = (flags.admin ?? process.env.CUTOVER_ADMIN_URL ?? DEFAULT_ADMIN_URL).replace(/\/+$/, '');
  try {
    const url = new URL(admin);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('protocol');
  } catch {
    throw new CutoverError('CUTOVER_USAGE', `--admin "${admin}" is not an http:// or https:// URL; use e.g. ${DEFAULT_ADMIN_URL}.`);
  }
  let token: string | undefined;
  if (flags.tokenFile !== undefined) {
    try {
      token = readFileSync(flags.tokenFile, 'utf8').trim();
    } catch (err) {
      throw new CutoverError('CUTOVER_USAGE', `Cannot read the token file ${flags.tokenFile} (${(err as NodeJS.ErrnoException).code ?? 'error'}); check --token-file.`);
    }
    if (!token) throw new CutoverError('CUTOVER_USAGE', `The token file ${flags.tokenFile} is empty.`);
  } else {
    token = process.env.CUTOVER_ADMIN_TOKEN?.trim() || undefined;
  }
  return { admin, token };
}
