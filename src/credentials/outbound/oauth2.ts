/**
 * OAuth2 client credentials (RFC 6749 §4.4) toward one backend. Tokens are cached per (scope,
 * audience) until `expires_in` minus the skew; however many requests wait, one refresh is in flight
 * per pair; a failing token endpoint is retried with exponential backoff and jitter, and requests in
 * the backoff fail at once with TOKEN_UNAVAILABLE instead of piling onto the endpoint.
 *
 * The hot path is `cachedHeader()`: a Map lookup and a clock read, no promise. Only a miss awaits.
 */
import { Agent, request } from 'undici';
import type { OutboundAuthConfig } from '../../config/schema.js';
import { readSecretValue } from '../../config/credentials.js';
import type { Logger } from '../../telemetry/logger.js';
import type { TokenFetchResult } from '../../telemetry/metrics.js';
import { monotonicNow, TokenUnavailableError } from './errors.js';

export type OAuth2Config = Extract<OutboundAuthConfig, { type: 'oauth2-client-credentials' }>;
export type Header = readonly [name: string, value: string];

/** Which token: the backend's own scope/audience unless a credential mapping names others. */
export interface TokenRequest {
  scope?: string;
  audience?: string;
}

export interface OAuth2Options {
  /** Counts each call to the token endpoint (`cutover_token_fetches_total`). */
  recordFetch?: (result: TokenFetchResult) => void;
  logger?: Logger;
  /** Clock and randomness, given by tests that step through expiry and backoff. */
  now?: () => number;
  random?: () => number;
  backoff?: { initialMs?: number; maxMs?: number };
  /** Largest token response read; a bigger one is an error, not a buffer that grows. */
  maxResponseBytes?: number;
  /** Token lifetime assumed when the endpoint gives no `expires_in`. */
  defaultExpiresInMs?: number;
}

interface Slot {
  header: Header | null;
  /** When (on monotonicNow()'s clock) the cached header is no longer handed out. */
  refreshAt: number;
  inflight: Promise<Header> | null;
  failures: number;
  blockedUntil: number;
  lastError: TokenUnavailableError | null;
  /** When a 401 last made it drop its token (on the same clock), and how many drops in a row came that fast. */
  purgedAt: number;
  quickPurges: number;
}

/** Why one token fetch failed; becomes the TokenUnavailableError callers see. */
class FetchFailure {
  constructor(
    readonly message: string,
    readonly cause?: unknown,
  ) {}
}

/** Distinct (scope, audience) pairs held; mappings are bounded by config, this bounds the rest. */
const MAX_SLOTS = 1024;
/**
 * The shortest a token is used, and the least time between two drops after a 401: an identity
 * provider answering `expires_in: 0`, or a backend refusing every token (a wrong scope), must not
 * cost a token fetch per request.
 */
const MIN_LIFETIME_MS = 5_000;
/** Drops after a 401 that may follow each other faster than MIN_LIFETIME_MS (a token revoked twice in a row). */
const QUICK_PURGES = 3;
/** Tokens remembered after use, so diff examples can blank one a backend echoes (an answer may come late). */
const RECENT_TOKENS = 8;

/** A header value without its scheme (`Bearer x` → `x`; a value without one as it is). */
export function withoutScheme(value: string): string {
  const space = value.indexOf(' ');
  return space === -1 ? value : value.slice(space + 1).trim();
}

export class OAuth2ClientCredentials {
  readonly backend: string;
  private readonly config: OAuth2Config;
  private readonly slots = new Map<string, Slot>();
  private readonly dispatcher: Agent;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly maxResponseBytes: number;
  private readonly defaultExpiresInMs: number;
  private readonly recordFetch: (result: TokenFetchResult) => void;
  private readonly logger: Logger | undefined;

  constructor(backend: string, config: OAuth2Config, options: OAuth2Options = {}) {
    this.backend = backend;
    this.config = config;
    this.now = options.now ?? monotonicNow;
    this.random = options.random ?? Math.random;
    this.initialMs = options.backoff?.initialMs ?? 1_000;
    this.maxMs = options.backoff?.maxMs ?? 60_000;
    this.maxResponseBytes = options.maxResponseBytes ?? 64 * 1024;
    this.defaultExpiresInMs = options.defaultExpiresInMs ?? 300_000;
    this.recordFetch = options.recordFetch ?? (() => {});
    this.logger = options.logger;
    this.defaultKey = `${config.scope ?? ''}\n${config.audience ?? ''}`;
    this.dispatcher = new Agent({ connections: 4, connectTimeout: config.timeout, headersTimeout: config.timeout, bodyTimeout: config.timeout });
  }

  /** The cache key of the backend's own (scope, audience): most requests use it, so it is made once. */
  private readonly defaultKey: string;

  private key(req: TokenRequest | undefined): string {
    if (req === undefined || (req.scope === undefined && req.audience === undefined)) return this.defaultKey;
    return `${req.scope ?? this.config.scope ?? ''}\n${req.audience ?? this.config.audience ?? ''}`;
  }

  /** The cached header when a fresh token is held, else null (then await `headerFor`). */
  cachedHeader(req?: TokenRequest): Header | null {
    const slot = this.slots.get(this.key(req));
    if (slot === undefined || slot.header === null) return null;
    return this.now() < slot.refreshAt ? slot.header : null;
  }

  /** The header to send; fetches a token when none is cached. Rejects with TokenUnavailableError. */
  headerFor(req?: TokenRequest): Promise<Header> {
    const key = this.key(req);
    let slot = this.slots.get(key);
    if (slot === undefined) {
      if (this.slots.size >= MAX_SLOTS) this.slots.delete(this.slots.keys().next().value as string);
      slot = { header: null, refreshAt: 0, inflight: null, failures: 0, blockedUntil: 0, lastError: null, purgedAt: Number.NEGATIVE_INFINITY, quickPurges: 0 };
      this.slots.set(key, slot);
    }
    const now = this.now();
    if (slot.header !== null && now < slot.refreshAt) return Promise.resolve(slot.header);
    if (slot.inflight !== null) return slot.inflight;
    if (now < slot.blockedUntil && slot.lastError !== null) return Promise.reject(slot.lastError);
    const scope = req?.scope ?? this.config.scope;
    const audience = req?.audience ?? this.config.audience;
    const s = slot;
    const flight = this.fetchToken(scope, audience).then(
      ({ header, lifetimeMs }) => {
        s.header = header;
        this.remember(header[1]);
        s.refreshAt = this.now() + lifetimeMs;
        s.failures = 0;
        s.blockedUntil = 0;
        s.lastError = null;
        s.inflight = null;
        this.recordFetch('ok');
        return header;
      },
      (failure: FetchFailure) => {
        s.failures++;
        const base = Math.min(this.maxMs, this.initialMs * 2 ** (s.failures - 1));
        // Jitter within [base/2, base]: replicas that failed together do not retry together.
        const delay = base / 2 + this.random() * (base / 2);
        s.blockedUntil = this.now() + delay;
        s.header = null;
        s.inflight = null;
        const err = new TokenUnavailableError(this.backend, failure.message, s.blockedUntil, { cause: failure.cause });
        s.lastError = err;
        this.recordFetch('error');
        this.logger?.warn({ backend: this.backend, code: err.code, failures: s.failures, retryInMs: Math.round(delay) }, err.message);
        throw err;
      },
    );
    slot.inflight = flight;
    return flight;
  }

  /**
   * Drops the cached token (the upstream answered 401 with it). With `sent`, only when the cache
   * still holds that very header, so a token another request just refreshed is not thrown away.
   */
  purge(req?: TokenRequest, sent?: Header): void {
    const slot = this.slots.get(this.key(req));
    if (slot === undefined || slot.header === null) return;
    if (sent !== undefined && slot.header[1] !== sent[1]) return;
    // A token revoked upstream is dropped at once; one refused as soon as it is fetched, again and
    // again (a wrong scope), is dropped at most once per MIN_LIFETIME_MS after QUICK_PURGES of them.
    const now = this.now();
    const quick = now - slot.purgedAt < MIN_LIFETIME_MS;
    if (quick && slot.quickPurges >= QUICK_PURGES) return;
    slot.quickPurges = quick ? slot.quickPurges + 1 : 0;
    slot.purgedAt = now;
    slot.header = null;
    slot.refreshAt = 0;
  }

  private readonly recent: string[] = [];

  /** Bumped at each token fetched: what was worked out from the tokens held is stale. */
  version = 0;

  private remember(value: string): void {
    this.version++;
    const token = withoutScheme(value);
    if (this.recent.includes(token)) return;
    this.recent.push(token);
    if (this.recent.length > RECENT_TOKENS) this.recent.shift();
  }

  /**
   * The tokens to blank where answers are shown (never logged): the one held for `req`'s scope and
   * audience (sent on its requests, however many scopes there are), and the last ones fetched (an
   * answer may come back after its token was replaced).
   */
  recentTokens(req?: TokenRequest): readonly string[] {
    const held = this.slots.get(this.key(req))?.header;
    if (held == null) return this.recent;
    const token = withoutScheme(held[1]);
    return this.recent.includes(token) ? this.recent : [token, ...this.recent];
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  private async fetchToken(scope: string | undefined, audience: string | undefined): Promise<{ header: Header; lifetimeMs: number }> {
    const cfg = this.config;
    const where = `the ${this.backend} backend's token endpoint`;
    let secret: string;
    try {
      secret = readSecretValue({ file: cfg.clientSecretFile, env: cfg.clientSecretEnv }, `backends.${this.backend}.auth client secret`);
    } catch (err) {
      throw new FetchFailure((err as Error).message);
    }
    const form = new URLSearchParams({ grant_type: 'client_credentials' });
    if (scope) form.set('scope', scope);
    if (audience) form.set('audience', audience);
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (cfg.clientAuth === 'basic') {
      // RFC 6749 §2.3.1: id and secret are form-encoded before being joined for Basic.
      const pair = `${encodeURIComponent(cfg.clientId)}:${encodeURIComponent(secret)}`;
      headers.authorization = `Basic ${Buffer.from(pair).toString('base64')}`;
    } else {
      form.set('client_id', cfg.clientId);
      form.set('client_secret', secret);
    }
    let status: number;
    let text: string;
    try {
      const res = await request(cfg.tokenUrl, { method: 'POST', headers, body: form.toString(), dispatcher: this.dispatcher, signal: AbortSignal.timeout(cfg.timeout) });
      status = res.statusCode;
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > this.maxResponseBytes) {
          res.body.destroy();
          throw new FetchFailure(`${where} answered more than ${this.maxResponseBytes} bytes; check backends.${this.backend}.auth.tokenUrl.`);
        }
        chunks.push(chunk);
      }
      text = Buffer.concat(chunks).toString('utf8');
    } catch (err) {
      if (err instanceof FetchFailure) throw err;
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).name;
      throw new FetchFailure(`Cannot reach ${where} (${code}); the request cannot be authenticated toward ${this.backend}.`, err);
    }
    let doc: Record<string, unknown> | null = null;
    try {
      const parsed: unknown = JSON.parse(text);
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) doc = parsed as Record<string, unknown>;
    } catch {
      doc = null;
    }
    if (status !== 200) {
      // Only an RFC 6749 §5.2 error code is repeated: the rest of an error body is not ours to echo.
      const code = typeof doc?.error === 'string' && /^[a-z_]{1,64}$/.test(doc.error) ? ` (${doc.error})` : '';
      throw new FetchFailure(`${where} answered ${status}${code}; check the client id, secret and scope of backends.${this.backend}.auth.`);
    }
    const token = doc?.access_token;
    // Only what a header may carry (RFC 9110 field-value: visible ASCII, space, tab, obs-text): a
    // token Node would refuse to send would fail every request to the backend, blamed on it.
    if (typeof token !== 'string' || token === '' || !/^[\t\x20-\x7e\x80-\xff]+$/.test(token)) throw new FetchFailure(`${where} answered without a usable access_token.`);
    const type = doc?.token_type;
    if (type !== undefined && (typeof type !== 'string' || type.toLowerCase() !== 'bearer')) throw new FetchFailure(`${where} issued a token type other than Bearer, which cutover cannot send.`);
    const expiresIn = typeof doc?.expires_in === 'number' ? doc.expires_in * 1000 : typeof doc?.expires_in === 'string' && /^\d+$/.test(doc.expires_in) ? Number(doc.expires_in) * 1000 : this.defaultExpiresInMs;
    // A lifetime shorter than the skew would mean a fetch per request: keep at least half of it. A
    // token said to be expired already (`expires_in` 0 or negative) is used MIN_LIFETIME_MS (it made
    // one fetch per request); a real short lifetime is kept (new would refuse the token past it).
    const lifetimeMs = expiresIn > 0 ? Math.max(expiresIn - cfg.skew, expiresIn / 2) : MIN_LIFETIME_MS;
    this.logger?.debug({ backend: this.backend, expiresInS: Math.round(expiresIn / 1000) }, 'token fetched');
    return { header: ['authorization', `Bearer ${token}`], lifetimeMs };
  }
}
