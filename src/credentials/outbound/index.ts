/**
 * The proxy's own credential toward one backend (`backends.X.auth`), as one object the upstream
 * shaping layer asks per request:
 *
 *   const header = auth.cachedHeader(mapping) ?? (await auth.headerFor(mapping));   // only a miss awaits
 *   ... send with header; on a 401 answer: auth.purge(mapping, header), and if
 *   retryOnceAfter(method, status, retried) send once more with a fresh header.
 *
 * `mapping` is a legacy credential's own identity toward new (see credentials/policy.ts).
 */
import type { BackendConfig, OutboundAuthConfig } from '../../config/schema.js';
import { readSecretValue } from '../../config/credentials.js';
import type { Telemetry } from '../../telemetry/metrics.js';
import { OAuth2ClientCredentials, withoutScheme, type Header, type OAuth2Options, type TokenRequest } from './oauth2.js';
import { isIdempotent } from '../../forward/retry.js';

export { OAuth2ClientCredentials, type Header, type TokenRequest } from './oauth2.js';
export { TokenUnavailableError, tokenUnavailableProblem } from './errors.js';
export { connectOptionsFor, type ConnectOptions } from './tls.js';

/** What a credential mapping asks for toward new: a static header, or its own OAuth2 scope/audience. */
export interface OutboundMapping extends TokenRequest {
  header?: Header;
}

export interface OutboundAuth {
  readonly kind: OutboundAuthConfig['type'];
  /** The header to add, synchronously, when it is at hand (static, or a cached token); else null. */
  cachedHeader(mapping?: OutboundMapping): Header | null;
  /** The header to add (null: none). Rejects with TokenUnavailableError (answer 502, `tokenUnavailableProblem`). */
  headerFor(mapping?: OutboundMapping): Promise<Header | null>;
  /** The upstream answered 401 with `sent`: forget that token so the next call fetches one. */
  purge(mapping?: OutboundMapping, sent?: Header | null): void;
  /**
   * The credential values it sends for `mapping` (a static value, the mapping's own header, the
   * token held for its scope and the last ones fetched): blanked wherever answers are shown.
   */
  secrets(mapping?: OutboundMapping): readonly string[];
  /** Changes when `secrets()` (without a mapping) may have: a token was fetched. */
  readonly version: number;
  close(): Promise<void>;
}

/** A header value as a backend may echo it: whole, and without its scheme (`Bearer x` → `x`). */
export function headerSecrets(value: string): string[] {
  const bare = withoutScheme(value);
  return bare === value ? [value] : [value, bare];
}

class NoAuth implements OutboundAuth {
  readonly kind = 'none' as const;
  cachedHeader(mapping?: OutboundMapping): Header | null {
    return mapping?.header ?? null;
  }
  headerFor(mapping?: OutboundMapping): Promise<Header | null> {
    return Promise.resolve(mapping?.header ?? null);
  }
  purge(): void {}
  secrets(mapping?: OutboundMapping): readonly string[] {
    return mapping?.header ? headerSecrets(mapping.header[1]) : [];
  }
  readonly version = 0;
  async close(): Promise<void> {}
}

class StaticAuth implements OutboundAuth {
  readonly kind = 'static' as const;
  private readonly header: Header;
  constructor(backend: string, config: Extract<OutboundAuthConfig, { type: 'static' }>) {
    this.header = [config.header.toLowerCase(), readSecretValue({ file: config.valueFile, env: config.valueEnv }, `backends.${backend}.auth value`)];
  }
  cachedHeader(mapping?: OutboundMapping): Header {
    return mapping?.header ?? this.header;
  }
  headerFor(mapping?: OutboundMapping): Promise<Header> {
    return Promise.resolve(this.cachedHeader(mapping));
  }
  purge(): void {}
  secrets(mapping?: OutboundMapping): readonly string[] {
    return headerSecrets(this.cachedHeader(mapping)[1]);
  }
  readonly version = 0;
  async close(): Promise<void> {}
}

class OAuth2Auth implements OutboundAuth {
  readonly kind = 'oauth2-client-credentials' as const;
  constructor(readonly client: OAuth2ClientCredentials) {}
  cachedHeader(mapping?: OutboundMapping): Header | null {
    return mapping?.header ?? this.client.cachedHeader(mapping);
  }
  headerFor(mapping?: OutboundMapping): Promise<Header | null> {
    return mapping?.header ? Promise.resolve(mapping.header) : this.client.headerFor(mapping);
  }
  purge(mapping?: OutboundMapping, sent?: Header | null): void {
    if (mapping?.header) return;
    this.client.purge(mapping, sent ?? undefined);
  }
  secrets(mapping?: OutboundMapping): readonly string[] {
    return mapping?.header ? headerSecrets(mapping.header[1]) : this.client.recentTokens(mapping);
  }
  get version(): number {
    return this.client.version;
  }
  close(): Promise<void> {
    return this.client.close();
  }
}

/**
 * Builds a backend's outbound auth from its config. Static values are read now (a missing one is a
 * start-up error); OAuth2 secrets are read at each token fetch, so a rotated secret file is used.
 * With `telemetry`, an OAuth2 backend's `cutover_token_fetches_total` series exist from the start.
 */
export function createOutboundAuth(name: string, backend: Pick<BackendConfig, 'auth'>, options: OAuth2Options & { telemetry?: Telemetry } = {}): OutboundAuth {
  const auth = backend.auth;
  switch (auth.type) {
    case 'none':
      return new NoAuth();
    case 'static':
      return new StaticAuth(name, auth);
    case 'oauth2-client-credentials':
      return new OAuth2Auth(new OAuth2ClientCredentials(name, auth, { ...options, recordFetch: options.recordFetch ?? options.telemetry?.credentials.tokenFetches(name) }));
  }
}

/**
 * Whether to send a request once more after the upstream's answer: only a 401 (the token was purged
 * and a fresh one can be had), only an idempotent method, only once, and only for OAuth2 (a static
 * credential would be refused again).
 */
export function retryOnceAfter(auth: Pick<OutboundAuth, 'kind'>, method: string, status: number, alreadyRetried: boolean): boolean {
  return !alreadyRetried && status === 401 && auth.kind === 'oauth2-client-credentials' && isIdempotent(method);
}

