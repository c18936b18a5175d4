/**
 * Which client a request belongs to, for the sticky split: a header, a cookie, the client IP or the
 * legacy credential. The extractor is chosen once from config, so the request path does no parsing
 * of the `sticky.key` setting.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { CredentialLocation } from '../config/schema.js';

export type StickyExtractor = (headers: IncomingHttpHeaders, clientIp: string, query?: string) => string | undefined;

function first(value: string | string[] | undefined): string | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  return v === '' ? undefined : v;
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim() || undefined;
  }
  return undefined;
}

/** The value of query parameter `name` in `query` ("?a=1&b=2" or "a=1&b=2"), or undefined. */
export function readQueryParam(query: string | undefined, name: string): string | undefined {
  if (!query) return undefined;
  const value = new URLSearchParams(query.startsWith('?') ? query.slice(1) : query).get(name);
  return value || undefined;
}

/** The client's legacy credential as it appears on the request, or undefined. */
export function readCredential(headers: IncomingHttpHeaders, locations: readonly CredentialLocation[], query?: string): string | undefined {
  for (const loc of locations) {
    if ('header' in loc) {
      const v = first(headers[loc.header.toLowerCase()]);
      if (v) return v;
    } else if ('bearer' in loc) {
      const v = first(headers.authorization);
      if (v && /^bearer\s/i.test(v)) return v.slice(7).trim();
    } else if ('basic' in loc) {
      const v = first(headers.authorization);
      if (v && /^basic\s/i.test(v)) return v.slice(6).trim();
    } else if ('query' in loc) {
      const v = readQueryParam(query, loc.query);
      if (v) return v;
    } else {
      const v = readCookie(first(headers.cookie), loc.cookie);
      if (v) return v;
    }
  }
  return undefined;
}

export function createStickyExtractor(key: string | undefined, credentials: readonly CredentialLocation[]): StickyExtractor | null {
  if (!key) return null;
  if (key === 'ip') return (_headers, ip) => ip;
  if (key === 'credential') return (headers, _ip, query) => readCredential(headers, credentials, query);
  const colon = key.indexOf(':');
  const kind = key.slice(0, colon);
  const name = key.slice(colon + 1);
  if (kind === 'header') {
    const lower = name.toLowerCase();
    return (headers) => first(headers[lower]);
  }
  return (headers) => readCookie(first(headers.cookie), name);
}
