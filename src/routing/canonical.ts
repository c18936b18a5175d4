/**
 * The one canonical form of a request target. Routing matches it, `rewrite` builds from it, and it
 * is what *both* backends receive, so no spelling of a path can route one way and resolve another
 * way behind the proxy (`/v1/widget%73/1`, `//v1/...`, `/v1/live/%2e%2e/internal`).
 *
 * - Absolute-form (`GET http://host/path`) is reduced to origin-form; its authority becomes the Host.
 * - Percent-encoding is normalised: unreserved characters (RFC 3986 §2.3) are decoded, everything
 *   else stays encoded with upper-case hex. `%2F` and `%5C` stay encoded (decoding them would make
 *   new separators), and a raw `\` is encoded as `%5C` because some servers treat it as `/`.
 * - Dot-segments are resolved (RFC 3986 §5.2.4, after decoding, so `%2e%2e` counts) and runs of
 *   `/` collapse to one.
 *
 * Route captures are checked separately (`captureIsSafe`): a `:param` may not hold `/`, `%2F`,
 * `%5C` or a dot-segment; a trailing `*` may hold `/` but none of the others.
 */

export interface RequestTarget {
  /** Canonical origin-form path, always starting with "/". */
  path: string;
  /** The query with its "?" (or ""), byte for byte as sent. */
  query: string;
  /** The authority of an absolute-form target, which replaces the Host header. */
  authority?: string;
}

export type TargetProblem = { problem: 'BAD_PATH' | 'BAD_HOST'; detail: string };

const HEX = '0123456789ABCDEF';
/** A character `normaliseEncoding` would change: a `%`, a `\`, a control, space or non-ASCII character. */
const NEEDS_NORMALISING = /[%\\\x00-\x20\x7f-\uffff]/;
/**
 * The overlong UTF-8 spellings of ".", "/" and "\\" (2 to 6 bytes; as normalised: upper-case hex).
 * Only these: Latin-1 or cp1252 text may hold the same lead bytes ("À©", "voilà…").
 */
const OVERLONG = /%C0%A[EF]|%C1%9C|%E0%80%A[EF]|%E0%81%9C|%F0%80%80%A[EF]|%F0%80%81%9C|%F8%80%80%80%A[EF]|%F8%80%80%81%9C|%FC%80%80%80%80%A[EF]|%FC%80%80%80%81%9C/;
/** A capture that may not be substituted: an encoded separator, or a `.`/`..` segment. */
const UNSAFE_CAPTURE = /%2F|%5C|(?:^|\/)\.\.?(?:;[^/]*)?(?:\/|$)/i;

/** Whether the byte is an unreserved character (RFC 3986 §2.3): A-Z a-z 0-9 - . _ ~ */
function isUnreserved(b: number): boolean {
  return (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || (b >= 48 && b <= 57) || b === 45 || b === 46 || b === 95 || b === 126;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** Percent-encoding normalised as described above; null when a `%` is not followed by two hex digits. */
function normaliseEncoding(raw: string): string | null {
  // The usual path has nothing to change: no string is rebuilt for it.
  if (!NEEDS_NORMALISING.test(raw)) return raw;
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 37 /* % */) {
      const hi = hexValue(raw.charCodeAt(i + 1));
      const lo = hexValue(raw.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return null;
      const byte = hi * 16 + lo;
      out += isUnreserved(byte) ? String.fromCharCode(byte) : `%${HEX[hi]}${HEX[lo]}`;
      i += 2;
    } else if (c === 92 /* \ */) {
      out += '%5C';
    } else if (c <= 0x20 || c >= 0x7f) {
      out += `%${HEX[(c >> 4) & 15]}${HEX[c & 15]}`;
    } else {
      out += raw[i];
    }
  }
  // Overlong UTF-8 (`%C0%AE` for ".", `%C0%AF` for "/"): never valid, and a lenient decoder behind
  // the proxy reads it as the separator or dot it spells, past the path checks here: refused.
  return OVERLONG.test(out) ? null : out;
}

/** The segment without its `;` parameters when it is `.` or `..` before them, else as it is. */
function dotSegment(segment: string, semi: number): string {
  const head = segment.slice(0, semi);
  return head === '.' || head === '..' ? head : segment;
}

/** Dot-segments resolved and empty segments dropped; a trailing "/" is kept. */
function resolveSegments(path: string): string {
  // Without an empty or dot-segment there is nothing to resolve: the path is already its result.
  if (!path.includes('//') && !path.includes('/.')) return path;
  const parts = path.split('/');
  const out: string[] = [];
  let trailing = false;
  for (let i = 1; i < parts.length; i++) {
    // `..;x` and `.;x` are dot-segments to Tomcat, Jetty and Spring, which drop a segment's
    // parameters before resolving: resolved (parameters dropped) here too, or the backend would.
    const semi = parts[i].indexOf(';');
    const seg = semi === 1 || semi === 2 ? dotSegment(parts[i], semi) : parts[i];
    const last = i === parts.length - 1;
    if (seg === '..') {
      out.pop();
      trailing = last;
    } else if (seg === '.' || seg === '') {
      trailing = last && (out.length > 0 || seg === '.');
    } else {
      out.push(seg);
      trailing = false;
    }
  }
  if (out.length === 0) return '/';
  return `/${out.join('/')}${trailing ? '/' : ''}`;
}

/** The canonical form of an origin-form path (no query), or null when it cannot be read. */
export function canonicalPath(raw: string): string | null {
  if (!raw.startsWith('/')) return null;
  const normalised = normaliseEncoding(raw);
  if (normalised === null) return null;
  return resolveSegments(normalised);
}

// reg-name / IPv4 / [IPv6], then an optional port (RFC 3986 §3.2.2).
const AUTHORITY = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::\d{1,5})?$/;

/** Whether `value` is a plausible Host header / authority (no userinfo, path or spaces). */
export function validAuthority(value: string): boolean {
  return AUTHORITY.test(value);
}

/**
 * The canonical target of a request, or a problem. `url` is the request-target as sent; `hosts`
 * are the values of every Host header field on the request.
 */
export function canonicalTarget(url: string, hosts: readonly string[]): RequestTarget | TargetProblem {
  if (hosts.length > 1) return { problem: 'BAD_HOST', detail: 'The request has more than one Host header; send exactly one.' };
  if (hosts.length === 1 && !validAuthority(hosts[0])) return { problem: 'BAD_HOST', detail: 'The Host header is not a valid authority; send host or host:port.' };
  let target = url;
  let authority: string | undefined;
  if (!target.startsWith('/')) {
    const m = /^https?:\/\/([^/?#]*)/i.exec(target);
    if (m === null) return { problem: 'BAD_PATH', detail: 'The request target must be a path starting with "/" or an absolute http(s) URL.' };
    authority = m[1];
    if (!validAuthority(authority)) return { problem: 'BAD_HOST', detail: 'The authority of the absolute request target is not valid; send host or host:port.' };
    target = target.slice(m[0].length);
    if (!target.startsWith('/')) target = `/${target}`;
  }
  const hash = target.indexOf('#');
  if (hash !== -1) target = target.slice(0, hash);
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  const path = canonicalPath(rawPath);
  if (path === null) return { problem: 'BAD_PATH', detail: 'The request path has a malformed percent-encoding; encode "%" as %25.' };
  return { path, query: q === -1 ? '' : target.slice(q), authority };
}

export function isTargetProblem(t: RequestTarget | TargetProblem): t is TargetProblem {
  return 'problem' in t;
}

/**
 * Whether a route capture may be substituted into another path: never an encoded separator or a
 * dot-segment; a `/` only in a trailing `*`.
 */
export function captureIsSafe(value: string, star: boolean): boolean {
  if (!star && value.includes('/')) return false;
  return !UNSAFE_CAPTURE.test(value);
}
