/**
 * What a legacy credential may do, from `credentials.revoked`, `credentials.mappings` and
 * `credentials.requireMapping`: pure decisions over a fingerprint, built once per config snapshot
 * (a reload builds a new policy, which is how revocation is hot-reloaded).
 */
import type { CredentialsConfig } from '../config/schema.js';
import { readSecretValue } from '../config/credentials.js';
import { problem, type Problem } from '../problem.js';
import type { OutboundMapping } from './outbound/index.js';

/** `allowed`: new may serve it; `legacy_only`: served by legacy, never given new's identity; `revoked`: answer 401. */
export type NewPathDecision = 'allowed' | 'legacy_only' | 'revoked';

export class CredentialPolicy {
  private readonly revoked: ReadonlySet<string>;
  private readonly mappings: ReadonlyMap<string, OutboundMapping>;
  private readonly requireMapping: boolean;

  constructor(config: Pick<CredentialsConfig, 'revoked' | 'mappings' | 'requireMapping'>) {
    this.revoked = new Set(config.revoked);
    this.requireMapping = config.requireMapping;
    const mappings = new Map<string, OutboundMapping>();
    config.mappings.forEach((m, i) => {
      const mapping: OutboundMapping = {};
      if (m.scope) mapping.scope = m.scope;
      if (m.audience) mapping.audience = m.audience;
      if (m.header) mapping.header = [m.header.name.toLowerCase(), readSecretValue({ file: m.header.valueFile, env: m.header.valueEnv }, `credentials.mappings[${i}].header value`)];
      mappings.set(m.fingerprint, mapping);
    });
    this.mappings = mappings;
  }

  /** Whether any credential is revoked at all (else no other spelling of one needs a fingerprint). */
  get revokes(): boolean {
    return this.revoked.size > 0;
  }

  isRevoked(fingerprint: string | null): boolean {
    return fingerprint !== null && this.revoked.has(fingerprint);
  }

  /** The identity toward new for this credential, or undefined (the backend's own auth applies). */
  mappingFor(fingerprint: string | null): OutboundMapping | undefined {
    return fingerprint === null ? undefined : this.mappings.get(fingerprint);
  }

  /**
   * Whether the new backend may serve this request. With `requireMapping`, a request without a
   * mapped credential (or without any credential) stays on legacy: new's identity is never lent to
   * a client nobody mapped.
   */
  decideNewPath(fingerprint: string | null): NewPathDecision {
    if (this.isRevoked(fingerprint)) return 'revoked';
    if (this.requireMapping && this.mappingFor(fingerprint) === undefined) return 'legacy_only';
    return 'allowed';
  }
}

/** The 401 answered for a revoked credential (count it as rejected, reason `revoked`). */
export function revokedProblem(): Problem {
  return problem(401, 'REVOKED', 'Unauthorized', 'This credential has been revoked; ask the API owner for a new one.');
}
