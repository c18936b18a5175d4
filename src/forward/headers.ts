/**
 * Header hygiene in both directions (RFC 9110 §7.6.1) and the X-Forwarded-* family.
 *
 * Request headers are read from `rawHeaders` (a flat name/value list) and written as a flat list,
 * which undici accepts as is: duplicates and the client's casing survive, and Node never has to
 * build its joined `headers` object for this.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/** Hop-by-hop fields, plus `expect` (undici rejects it; the proxy answers 100-continue itself). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade', 'trailer', 'expect', 'proxy-authorization', 'proxy-authenticate']);

/**
 * Fields a trailer must not carry (RFC 9110 §6.5.1: framing, routing, controls, content
 * metadata), or that are the connection's own: never passed on from a backend's trailer section.
 */
const NOT_IN_TRAILERS = new Set([...HOP_BY_HOP, 'content-length', 'content-type', 'content-encoding', 'content-range', 'host', 'cache-control', 'expires', 'date', 'location', 'retry-after', 'vary', 'set-cookie', 'www-authenticate', 'authorization', 'age', 'warning']);

/**
 * The answer's `Trailer` field (the names of the trailer fields it ends with), to pass on when the
 * client's answer is chunked, the only framing that carries trailers: Node refuses the field on any
 * other (a HEAD, a 204 or 304, a length, a client below HTTP/1.1: `chunkedByDefault` is Node's own
 * `useChunkedEncodingByDefault` for the request) and the answer would fail.
 */
export function trailerField(headers: IncomingHttpHeaders, status: number, method: string | undefined, chunkedByDefault: boolean): string | undefined {
  const named = headers.trailer;
  if (named === undefined || !chunkedByDefault || method === 'HEAD' || status === 204 || status === 304 || headers['content-length'] !== undefined) return undefined;
  return named;
}

/**
 * The trailer fields to pass on to the client, or null when there are none: not those a trailer
 * must not carry, nor those the answer's `Connection` names (hop-by-hop, like its header fields).
 */
export function forwardedTrailers(trailers: IncomingHttpHeaders | undefined, connection: string | string[] | undefined): OutgoingHttpHeaders | null {
  let out: OutgoingHttpHeaders | null = null;
  let named: Set<string> | null | undefined;
  for (const name in trailers) {
    if (NOT_IN_TRAILERS.has(name)) continue;
    named ??= connectionTokens(connection);
    if (named !== null && named.has(name)) continue;
    (out ??= {})[name] = trailers[name];
  }
  return out;
}

/** Whether a TE field value accepts trailer fields (its `trailers` member). */
function acceptsTrailers(value: string): boolean {
  for (const member of value.split(',')) if (member.trim().toLowerCase() === 'trailers') return true;
  return false;
}

/** Headers the proxy sets itself on the upstream request. */
// x-cutover-shadow is ours: a client must not be able to mark its live request as a shadow one.
const REPLACED = new Set(['host', 'content-length', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-cutover-shadow']);

/**
 * Headers that claim who the client is or how it reached us. From an untrusted peer they are
 * the client's own words, so they are dropped; a trusted proxy's are passed on.
 */
// X-Original-URL, X-Rewrite-URL and their kin name the path a front proxy saw (IIS, older Symfony and
// Zend route by them; auth middleware behind nginx, Traefik or Envoy reads the others): from a client,
// they would have the backend serve or authorise a path the route table never judged.
const CLIENT_CLAIMS = new Set([
  'forwarded',
  'x-real-ip',
  'true-client-ip',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-client-ip',
  'cf-connecting-ip',
  'x-original-url',
  'x-rewrite-url',
  'x-original-uri',
  'x-forwarded-uri',
  'x-envoy-original-path',
]);

function connectionTokens(value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null;
  // What nearly every peer sends (`keep-alive`, `close`) names nothing: answered without splitting.
  if (typeof value === 'string' && value.length <= 10) {
    const lower = value.toLowerCase();
    if (lower === 'keep-alive' || lower === 'close') return null;
  }
  const text = Array.isArray(value) ? value.join(',') : value;
  const tokens = new Set<string>();
  for (const t of text.split(',')) {
    const token = t.trim().toLowerCase();
    if (token && token !== 'close' && token !== 'keep-alive') tokens.add(token);
  }
  return tokens.size ? tokens : null;
}

/** Which peers may pass X-Forwarded-* on to us (their values are appended to, not overwritten). */
export class TrustedProxies {
  private readonly list = new BlockList();
  readonly empty: boolean;

  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const [addr, prefix] = entry.split('/');
      const family = isIPv6(addr) ? 'ipv6' : 'ipv4';
      if (!isIPv4(addr) && !isIPv6(addr)) throw new Error(`listen.trustedProxies: "${entry}" is not an IP address or CIDR`);
      if (prefix === undefined) this.list.addAddress(addr, family);
      else this.list.addSubnet(addr, Number(prefix), family);
    }
    this.empty = entries.length === 0;
  }

  has(ip: string): boolean {
    if (this.empty || !ip) return false;
    if (ip.startsWith('::ffff:') && isIPv4(ip.slice(7))) ip = ip.slice(7);
    return this.list.check(ip, isIPv6(ip) ? 'ipv6' : 'ipv4');
  }
}

/**
 * The client's address: the TCP peer, or — when the peer is a trusted proxy — X-Forwarded-For read
 * right to left, skipping trusted proxies. Reading from the right matters: an appending load
 * balancer puts what it saw last, while everything to the left is whatever the client wrote.
 */
export function clientAddress(ctx: { peer: string; peerTrusted: boolean }, xff: string | string[] | undefined, trusted: TrustedProxies): string {
  if (!ctx.peerTrusted || xff === undefined) return ctx.peer;
  const hops = (Array.isArray(xff) ? xff.join(',') : xff).split(',');
  let leftmost = ctx.peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i].trim();
    if (!hop) continue;
    if (!trusted.has(hop)) return hop;
    leftmost = hop;
  }
  return leftmost;
}

export interface ForwardedContext {
  /** The TCP peer's address. */
  peer: string;
  peerTrusted: boolean;
  /** The Host the client asked for. */
  host: string | undefined;
  proto: 'http' | 'https';
  /** Send the client's Host upstream rather than the backend's own. */
  preserveHost: boolean;
}

/**
 * The upstream request's headers as a flat [name, value, ...] list: hop-by-hop fields and the
 * fields named in Connection removed, credentials stripped when asked, X-Forwarded-* set.
 */
export function upstreamHeaders(raw: readonly string[], ctx: ForwardedContext, strip: ReadonlySet<string> | null): string[] {
  let named: Set<string> | null = null;
  let xff: string | undefined;
  let xfProto: string | undefined;
  let xfHost: string | undefined;
  let trailers = false;
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) {
      // The client takes trailer fields, and the proxy passes them on: the backend may send them.
      if (lower === 'te') trailers ||= acceptsTrailers(raw[i + 1]);
      else if (lower === 'connection') {
        // Every Connection field counts: a second one must not un-name what the first named.
        const tokens = connectionTokens(raw[i + 1]);
        if (tokens !== null) named = named === null ? tokens : new Set([...named, ...tokens]);
      }
      continue;
    }
    if (REPLACED.has(lower)) {
      if (ctx.peerTrusted) {
        if (lower === 'x-forwarded-for') xff = xff === undefined ? raw[i + 1] : `${xff}, ${raw[i + 1]}`;
        else if (lower === 'x-forwarded-proto') xfProto ??= raw[i + 1];
        else if (lower === 'x-forwarded-host') xfHost ??= raw[i + 1];
      }
      continue;
    }
    if (strip !== null && strip.has(lower)) continue;
    if (!ctx.peerTrusted && CLIENT_CLAIMS.has(lower)) continue;
    out.push(name, raw[i + 1]);
  }
  if (named !== null) {
    // Rare: a client naming extra hop-by-hop fields in Connection. Filter them in a second pass.
    for (let i = out.length - 2; i >= 0; i -= 2) if (named.has(out[i].toLowerCase())) out.splice(i, 2);
  }
  out.push('x-forwarded-for', xff === undefined ? ctx.peer : `${xff}, ${ctx.peer}`);
  out.push('x-forwarded-proto', xfProto ?? ctx.proto);
  if (xfHost !== undefined || ctx.host !== undefined) out.push('x-forwarded-host', (xfHost ?? ctx.host)!);
  if (ctx.preserveHost && ctx.host !== undefined) out.push('host', ctx.host);
  if (trailers) out.push('te', 'trailers');
  return out;
}

/** The response headers for the client: the upstream's, minus hop-by-hop fields. */
export function downstreamHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = connectionTokens(headers.connection);
  const out: OutgoingHttpHeaders = {};
  for (const name in headers) {
    if (HOP_BY_HOP.has(name) || (named !== null && named.has(name))) continue;
    out[name] = headers[name];
  }
  return out;
}

/** Prefix that keeps a mirrored write's Idempotency-Key apart from the real write's. */
export const SHADOW_IDEMPOTENCY_PREFIX = 'cutover-shadow-';

/**
 * Headers of a mirrored request: as `upstreamHeaders`, plus `X-Cutover-Shadow: 1` so the backend
 * can suppress side effects, and a namespaced Idempotency-Key so a downstream shared by both
 * backends cannot deduplicate the real write against its shadow (or the other way round).
 */
export function shadowHeaders(raw: readonly string[], ctx: ForwardedContext, strip: ReadonlySet<string> | null): string[] {
  const out = upstreamHeaders(raw, ctx, strip);
  for (let i = 0; i < out.length; i += 2) {
    if (out[i].length === 15 && out[i].toLowerCase() === 'idempotency-key') out[i + 1] = SHADOW_IDEMPOTENCY_PREFIX + out[i + 1];
  }
  out.push('x-cutover-shadow', '1');
  return out;
}
