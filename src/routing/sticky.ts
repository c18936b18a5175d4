/**
 * Which client a request belongs to, for the sticky split: a header, a cookie, the client IP or the
 * legacy credential. The extractor is chosen once from config, so the request path does no parsing
 * of the `sticky.key` setting.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { CredentialLocation } from '../config/schema.js';
import { extractCredential, readCookie } from '../credentials/extract.js';

/** `url` (the request target) is only needed for a credential carried in the query. */
export type StickyExtractor = (headers: IncomingHttpHeaders, clientIp: string, url?: string) => string | undefined;

function first(value: string | string[] | undefined): string | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  return v === '' ? undefined : v;
}

export function createStickyExtractor(key: string | undefined, credentials: readonly CredentialLocation[]): StickyExtractor | null {
  if (!key) return null;
  // One client, one key: an IPv4 address seen on a dual-stack listener as ::ffff:a.b.c.d is a.b.c.d.
  if (key === 'ip') return (_headers, ip) => (ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip);
  if (key === 'credential') return (headers, _ip, url) => extractCredential(headers, url, credentials)?.value;
  const colon = key.indexOf(':');
  const kind = key.slice(0, colon);
  const name = key.slice(colon + 1);
  if (kind === 'header') {
    const lower = name.toLowerCase();
    return (headers) => first(headers[lower]);
  }
  return (headers) => readCookie(first(headers.cookie), name);
}
