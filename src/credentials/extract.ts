/**
 * The one reader of a client's legacy credential, for the inventory, revocation, mapping and the
 * sticky split (`sticky.key: credential`). Locations are tried in config order; the first one
 * present wins. Works on parsed headers (`req.headers`) or on `rawHeaders`, so the proxy can call
 * it with whichever it already holds.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { CredentialScheme } from '../telemetry/metrics.js';

/**
 * A credential location. `header`, `bearer` and `cookie` are in the schema today; `query` and
 * `basic` are read here already, so the schema only has to admit them.
 */
export type LegacyLocation = { header: string } | { bearer: true } | { cookie: string } | { query: string } | { basic: true };

export interface ExtractedCredential {
  scheme: CredentialScheme;
  /** The secret itself: fingerprint it and drop it, never store, log or return it. */
  value: string;
}

export type HeaderSource = IncomingHttpHeaders | readonly string[];

/** First non-empty value of a header (lower-case `name`) from parsed or raw headers. */
export function headerValue(headers: HeaderSource, name: string): string | undefined {
  if (isRaw(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) {
      const n = headers[i];
      if (n.length === name.length && n.toLowerCase() === name && headers[i + 1] !== '') return headers[i + 1];
    }
    return undefined;
  }
  const v = headers[name];
  const first = Array.isArray(v) ? v[0] : v;
  return first === '' ? undefined : first;
}

/** Every non-empty value of a header (lower-case `name`): each line of raw headers, or Node's joined value. */
function headerValues(headers: HeaderSource, name: string): string[] {
  if (!isRaw(headers)) {
    const v = headers[name];
    return (Array.isArray(v) ? v : v === undefined ? [] : [v]).filter((x) => x !== '');
  }
  const out: string[] = [];
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const n = headers[i];
    if (n.length === name.length && n.toLowerCase() === name && headers[i + 1] !== '') out.push(headers[i + 1]);
  }
  return out;
}

/** The Cookie field as a backend reads it: every `Cookie` line, joined (RFC 6265 §5.4). */
function cookieHeader(headers: HeaderSource): string | undefined {
  const lines = headerValues(headers, 'cookie');
  return lines.length <= 1 ? lines[0] : lines.join('; ');
}

function isRaw(headers: HeaderSource): headers is readonly string[] {
  return Array.isArray(headers);
}

/** Calls `each` with the value (trimmed) of every cookie named `name` in a Cookie field, in order, until it returns true. */
function eachCookie(header: string, name: string, each: (value: string) => boolean | void): void {
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name && each(part.slice(eq + 1).trim()) === true) return;
  }
}

/** The first cookie named `name` (undefined when absent or empty). */
export function readCookie(header: string | undefined, name: string): string | undefined {
  let value: string | undefined;
  if (header) eachCookie(header, name, (v) => ((value = v || undefined), true));
  return value;
}

function readQuery(url: string | undefined, name: string): string | undefined {
  if (!url) return undefined;
  const q = url.indexOf('?');
  if (q === -1) return undefined;
  const params = new URLSearchParams(url.slice(q + 1));
  return params.get(name) || undefined;
}

/** The `user:password` of an `Authorization: Basic` header (RFC 7617), or undefined. */
function readBasic(authorization: string | undefined): string | undefined {
  if (!authorization || !/^basic\s/i.test(authorization)) return undefined;
  const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
  return decoded.includes(':') ? decoded : undefined;
}

function readBearer(authorization: string | undefined): string | undefined {
  if (!authorization || !/^bearer\s/i.test(authorization)) return undefined;
  return authorization.slice(7).trim() || undefined;
}

/** The header (lower-case) a location carries its credential in; undefined for a query parameter. */
function locationHeader(loc: LegacyLocation): string | undefined {
  if ('header' in loc) return loc.header.toLowerCase();
  if ('bearer' in loc || 'basic' in loc) return 'authorization';
  if ('cookie' in loc) return 'cookie';
  return undefined;
}

/** Header names that carry a legacy credential (lower-case): what is stripped toward new. */
export function credentialHeaderNames(locations: readonly LegacyLocation[]): Set<string> {
  const names = new Set<string>();
  for (const loc of locations) {
    const name = locationHeader(loc);
    if (name !== undefined) names.add(name);
  }
  return names;
}

/** Query parameter names that carry a legacy credential: stripped toward new, masked in anything stored. */
export function credentialQueryNames(locations: readonly LegacyLocation[]): string[] {
  return locations.flatMap((loc) => ('query' in loc ? [loc.query] : []));
}

/** The client's legacy credential and where it was found, or null. `url` is the request target (path and query). */
export function extractCredential(headers: HeaderSource, url: string | undefined, locations: readonly LegacyLocation[]): ExtractedCredential | null {
  for (const loc of locations) {
    let value: string | undefined;
    let scheme: CredentialScheme;
    if ('header' in loc) {
      scheme = 'header';
      value = headerValue(headers, locationHeader(loc)!);
    } else if ('bearer' in loc) {
      scheme = 'bearer';
      value = readBearer(headerValue(headers, locationHeader(loc)!));
    } else if ('cookie' in loc) {
      scheme = 'cookie';
      value = readCookie(cookieHeader(headers), loc.cookie);
    } else if ('query' in loc) {
      scheme = 'query';
      value = readQuery(url, loc.query);
    } else {
      scheme = 'basic';
      value = readBasic(headerValue(headers, locationHeader(loc)!));
    }
    if (value) return { scheme, value };
  }
  return null;
}

/**
 * Every value a backend might take for the client's legacy credential, in each location and in
 * each spelling it may read: each header line, every repeat of a query parameter or cookie, a cookie
 * value unquoted and percent-decoded, a bearer token's first word. Revocation must hold for each of
 * them, not only for the first one found (a client could otherwise put a revoked key behind a decoy).
 */
export function credentialCandidates(headers: HeaderSource, url: string | undefined, locations: readonly LegacyLocation[]): string[] {
  const out = new Set<string>();
  const add = (v: string | undefined): void => {
    if (v) out.add(v);
  };
  for (const loc of locations) {
    if ('query' in loc) {
      const q = url?.indexOf('?') ?? -1;
      // Parsed only when the name can be in it, spelled plain or percent-encoded.
      if (q !== -1 && (url!.includes(loc.query) || url!.includes('%'))) for (const v of new URLSearchParams(url!.slice(q + 1)).getAll(loc.query)) add(v);
      continue;
    }
    for (const line of headerValues(headers, locationHeader(loc)!)) {
      if ('cookie' in loc && !line.includes(loc.cookie)) continue;
      if ('header' in loc) add(line);
      else if ('basic' in loc) add(readBasic(line));
      else if ('bearer' in loc) {
        const token = readBearer(line);
        add(token);
        add(token?.split(/\s+/, 1)[0]);
      } else {
        eachCookie(line, loc.cookie, (raw) => {
          const unquoted = raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1) : raw;
          add(raw);
          add(unquoted);
          try {
            add(decodeURIComponent(unquoted));
          } catch {
            // not percent-encoded: the spellings above stand
          }
        });
      }
    }
  }
  return [...out];
}
