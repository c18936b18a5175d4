/**
 * The credential side of the proxy, built once from config: the fingerprint key, the policy
 * (revocation, mappings), the inventory and each backend's outbound auth. The proxy asks it once
 * per request (`inspect`), the upstream-shaping layer asks `outbound[backend]` for the header to
 * add, and the answer is told to the inventory (`inventory.record`) when its status is known.
 */
import { loadFingerprintKey, type FingerprintKey } from '../config/credentials.js';
import type { Config } from '../config/load.js';
import { MIN_SECRET_CHARS } from '../compare/redact.js';
import type { StateStore } from '../cutover/types.js';
import type { Logger } from '../telemetry/logger.js';
import type { BackendName, CredentialScheme, Telemetry } from '../telemetry/metrics.js';
import { credentialCandidates, extractCredential, type HeaderSource, type LegacyLocation } from './extract.js';
import { createFingerprinter, type Fingerprinter } from './fingerprint.js';
import { CredentialInventory } from './inventory.js';
import { createOutboundAuth, type OutboundAuth, type OutboundMapping } from './outbound/index.js';
import { CredentialPolicy, type NewPathDecision } from './policy.js';

/** What the proxy knows about one request's legacy credential. Holds no secret. */
export interface RequestCredential {
  /** null: the request carries no legacy credential. */
  fingerprint: string | null;
  scheme: CredentialScheme | null;
  /** `revoked`: answer `revokedProblem()`; `legacy_only`: do not send it (live or mirrored) to new. */
  decision: NewPathDecision;
  /** The identity to use toward new for this credential (pass to `outbound.new.headerFor`). */
  mapping: OutboundMapping | undefined;
}

function secretsIn(headers: HeaderSource, url: string | undefined, locations: readonly LegacyLocation[]): readonly string[] {
  const out = new Set<string>();
  for (const value of credentialCandidates(headers, url, locations)) {
    out.add(value);
    // The password of `user:password`, and the user when the password is empty or short: then the
    // user is the key (`sk_live_…:` at Stripe, `apikey:X` at Freshdesk); otherwise it is a name
    // (`orders:…`) that must not be blanked from every field holding it.
    const colon = value.indexOf(':');
    if (colon !== -1) {
      const password = value.slice(colon + 1);
      out.add(password);
      if (password.length < MIN_SECRET_CHARS) out.add(value.slice(0, colon));
    }
  }
  return [...out].filter((s) => s.length >= MIN_SECRET_CHARS);
}

export interface CredentialsDeps {
  store?: StateStore;
  telemetry?: Telemetry;
  logger?: Logger;
  /** Whether a missing fingerprint key file may be created (false with a shared fleet store). */
  createKey?: boolean;
}

export class Credentials {
  readonly inventory: CredentialInventory;
  readonly outbound: Readonly<Record<BackendName, OutboundAuth>>;
  /** Where the fingerprint key came from; `ephemeral` deserves a warning at start. */
  readonly keyOrigin: FingerprintKey['origin'];
  private readonly fingerprint: Fingerprinter;
  private policy: CredentialPolicy;
  private locations: readonly LegacyLocation[];

  private constructor(config: Config, deps: CredentialsDeps) {
    const key = loadFingerprintKey(config.credentials, { create: deps.createKey });
    this.keyOrigin = key.origin;
    this.fingerprint = createFingerprinter(key.key);
    this.policy = new CredentialPolicy(config.credentials);
    this.locations = config.credentials.legacy;
    const { maxCredentials, maxRoutesPerCredential } = config.credentials.inventory;
    this.inventory = new CredentialInventory({ store: deps.store, telemetry: deps.telemetry, logger: deps.logger, maxCredentials, maxRoutesPerCredential });
    const options = { telemetry: deps.telemetry, logger: deps.logger };
    this.outbound = { legacy: createOutboundAuth('legacy', config.backends.legacy, options), new: createOutboundAuth('new', config.backends.new, options) };
  }

  /** Builds everything and restores the inventory from the store. */
  static async create(config: Config, deps: CredentialsDeps = {}): Promise<Credentials> {
    const credentials = new Credentials(config, deps);
    await credentials.inventory.load();
    if (credentials.keyOrigin === 'ephemeral') {
      deps.logger?.warn('credentials.fingerprintKeyFile is not set: fingerprints change at each restart; set it so the inventory and revocations stay valid');
    } else if (credentials.keyOrigin === 'created') {
      // A key made now cannot be the one earlier fingerprints were made with: a lost key file (a
      // volume not mounted, a new container) silently re-admits every revoked key.
      const earlier = [
        config.credentials.revoked.length > 0 ? `credentials.revoked (${config.credentials.revoked.length})` : '',
        config.credentials.mappings.length > 0 ? `credentials.mappings (${config.credentials.mappings.length})` : '',
        credentials.inventory.list().credentials.length > 0 ? 'the stored credential inventory' : '',
      ].filter(Boolean);
      if (earlier.length > 0) {
        deps.logger?.error(`credentials.fingerprintKeyFile did not exist and was created now, but ${earlier.join(', ')} hold fingerprints made with another key: they match nothing (revoked keys are served). Restore the key file they were made with, or make them again with \`cutover fingerprint\``);
      }
    }
    return credentials;
  }

  /**
   * Once per request, synchronously: where its credential is, its fingerprint and what it may do.
   * `url` is the canonical target forwarded (its query without a fragment), never the raw one.
   */
  inspect(headers: HeaderSource, url: string | undefined): RequestCredential {
    const found = extractCredential(headers, url, this.locations);
    const fingerprint = found === null ? null : this.fingerprint(found.value);
    let decision = this.policy.decideNewPath(fingerprint);
    // Any other value the request carries where a backend may read a credential is held to the
    // revocations too (a revoked key behind a decoy, in a second line, quoted or encoded).
    if (decision !== 'revoked' && this.policy.revokes) {
      for (const value of credentialCandidates(headers, url, this.locations)) {
        if (this.revokedSpelling(value, found?.value)) {
          decision = 'revoked';
          break;
        }
      }
    }
    // A key legacy refuses is never lent new's own identity: legacy answers it (and keeps refusing).
    if (decision === 'allowed' && fingerprint !== null && this.inventory.legacyRejected(fingerprint)) decision = 'legacy_only';
    return { fingerprint, scheme: found?.scheme ?? null, decision, mapping: this.policy.mappingFor(fingerprint) };
  }

  /**
   * Whether `value` is a revoked credential, or either half of it as `user:password`: an API taking
   * a key as a Basic user or password (`K:` at Stripe, `u:K`, `K:X` at Freshdesk) takes a revoked one
   * that way. `judged` (the credential `inspect` found) was looked up already.
   */
  private revokedSpelling(value: string, judged: string | undefined): boolean {
    if (this.revokedValue(value, judged)) return true;
    const colon = value.indexOf(':');
    return colon !== -1 && (this.revokedValue(value.slice(0, colon), judged) || this.revokedValue(value.slice(colon + 1), judged));
  }

  private revokedValue(value: string, judged: string | undefined): boolean {
    return value !== judged && this.policy.isRevoked(this.fingerprint(value));
  }

  /**
   * The values a request carries where a backend may read its credential, in every spelling a
   * backend may read them (a decoy's neighbour, a cookie unquoted or decoded, both halves of Basic's
   * `user:password`), at least MIN_SECRET_CHARS long: examples and the access log blank them out.
   * Never logged or kept apart.
   */
  secretsIn(headers: HeaderSource, url: string | undefined): readonly string[] {
    return secretsIn(headers, url, this.locations);
  }

  /**
   * `secretsIn` for a mirrored pair (none with `headers` null: the request carries no credential),
   * with the proxy's own (`outboundSecrets`), worked out on first call (only a pair with differences
   * asks) and kept; the request's headers are let go once read, so a pair waiting in the comparison
   * queue does not hold them. Made only for a request that is mirrored: `inspect` allocates nothing.
   */
  secretsLater(headers: HeaderSource | null, url: string | undefined, mapping?: OutboundMapping): () => readonly string[] {
    // Most mirrored requests carry no credential and no mapping: one function for all of them.
    if (headers === null && mapping === undefined) return this.ownSecretsLater;
    let cached: readonly string[] | undefined;
    let source: HeaderSource | null = headers;
    let target = url;
    return () => {
      if (cached === undefined) {
        const own = this.outboundSecrets(mapping);
        const client = source === null ? [] : this.secretsIn(source, target);
        cached = client.length === 0 ? own : own.length === 0 ? client : [...new Set([...client, ...own])];
        source = null;
        target = undefined;
      }
      return cached;
    };
  }

  private readonly ownSecretsLater = (): readonly string[] => this.outboundSecrets();

  /** `outboundSecrets()` without a mapping, and the token versions it was worked out at. */
  private ownSecrets: { legacy: number; new: number; secrets: readonly string[] } | null = null;

  /**
   * The proxy's own credential values toward the backends for a request with `mapping`: static
   * values, the mapping's header, the tokens held and fetched last. A backend that echoes the
   * credential it got (an error text, a debug field) would otherwise show them in diff examples and
   * the report to any viewer. Without a mapping (most requests) one shared array, made again only
   * when a token was fetched.
   */
  outboundSecrets(mapping?: OutboundMapping): readonly string[] {
    const { legacy, new: next } = this.outbound;
    if (mapping === undefined) {
      const own = this.ownSecrets;
      if (own !== null && own.legacy === legacy.version && own.new === next.version) return own.secrets;
    }
    const all = [...legacy.secrets(), ...next.secrets(mapping)];
    const secrets = Object.freeze([...new Set(all)].filter((v) => v.length >= MIN_SECRET_CHARS));
    if (mapping === undefined) this.ownSecrets = { legacy: legacy.version, new: next.version, secrets };
    return secrets;
  }

  /** Throws what `reload` would (a mapping's secret that cannot be read), changing nothing. */
  check(config: Config): void {
    void new CredentialPolicy(config.credentials);
  }

  /**
   * A config reload: new revocations and mappings apply to the next request. Outbound auth, TLS and
   * the legacy credential locations are restart-only (config/restart.ts): they stay as started.
   */
  reload(config: Config): void {
    this.policy = new CredentialPolicy(config.credentials);
    this.locations = config.credentials.legacy;
  }

  async close(): Promise<void> {
    await this.inventory.close();
    await Promise.all([this.outbound.legacy.close(), this.outbound.new.close()]);
  }
}

export { revokedProblem, type NewPathDecision } from './policy.js';
export { retryOnceAfter, tokenUnavailableProblem, TokenUnavailableError, connectOptionsFor, type OutboundAuth, type OutboundMapping, type Header } from './outbound/index.js';
export { CredentialInventory, type CredentialSighting } from './inventory.js';
