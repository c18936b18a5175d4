/**
 * Redaction of example values before they leave the comparison engine's callers (admin API, report,
 * logs): configured sensitive paths, credential-named fields and headers, and anything that reads
 * like a credential (Bearer/Basic values, JWTs).
 */
import { SENSITIVE, concreteKeys, flagsOf, step, type PathMatcher } from './path.js';
import type { Difference } from './types.js';

export const REDACTED = '[redacted]';

const CREDENTIAL_NAME = /(^|[-_.])(authorization|cookie|set-cookie|password|passwd|secret|token|api[-_]?key|apikey|session|private[-_]?key|client[-_]?secret|credentials?|signature)$/i;
const AUTH_SCHEME = /\b(Bearer|Basic|Digest|Negotiate|Token)\s+[A-Za-z0-9._~+/=-]{6,}/gi;
const JWT = /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g;

/** Body field names whose values are credentials whatever the config says. */
export function isCredentialName(name: string): boolean {
  return CREDENTIAL_NAME.test(name);
}

/** Header names whose values are credentials: the field names plus `x-…-auth…`, `x-…-key` styles. */
export function isCredentialHeader(name: string): boolean {
  return CREDENTIAL_NAME.test(name) || /^x-.*(auth|key|token|secret|signature)/i.test(name);
}

function scrubString(s: string): string {
  return s.replace(AUTH_SCHEME, REDACTED).replace(JWT, REDACTED);
}

export interface RedactRules {
  sensitive: PathMatcher;
}

type Obj = Record<string, unknown>;

/**
 * Returns `value` (found at concrete path `path`) with sensitive parts replaced by "[redacted]".
 * Never mutates `value`: containers are copied as they are rewritten.
 */
export function redactValue(value: unknown, path: string, rules: RedactRules): unknown {
  if (path.startsWith('header:')) {
    const name = path.slice('header:'.length);
    return isCredentialHeader(name) ? (value === undefined ? undefined : REDACTED) : scrubAll(value, rules, null);
  }
  if (!path.startsWith('$')) return scrubAll(value, rules, null);
  const keys = concreteKeys(path);
  const m = rules.sensitive;
  if (!keys) {
    // A shortened path of a very deep body: no way to tell, so hide it if any rule could apply.
    return m.rules.length ? REDACTED : scrubAll(value, rules, null);
  }
  let state = m.initial;
  if (flagsOf(m, state) & SENSITIVE) return REDACTED;
  for (const k of keys) {
    if (typeof k === 'string' && isCredentialName(k)) return REDACTED;
    state = step(m, state, k);
    if (flagsOf(m, state) & SENSITIVE) return REDACTED;
  }
  // A cut preview of a container cannot be walked: hide it when a rule still reaches below.
  if (typeof value === 'string' && state.length !== 0 && isCutPreview(value)) return REDACTED;
  return scrubAll(value, rules, state);
}

function isCutPreview(s: string): boolean {
  return (s.startsWith('{') || s.startsWith('[')) && s.endsWith('…');
}

/** Copy-on-write walk; values are previews (≤ ~200 characters), so recursion depth is bounded. */
function scrubAll(value: unknown, rules: RedactRules, state: readonly number[] | null): unknown {
  if (typeof value === 'string') return scrubString(value);
  if (typeof value !== 'object' || value === null) return value;
  const m = rules.sensitive;
  if (Array.isArray(value)) {
    return value.map((v, i) => {
      const cs = state ? step(m, state, i) : null;
      return cs && flagsOf(m, cs) & SENSITIVE ? REDACTED : scrubAll(v, rules, cs);
    });
  }
  const out: Obj = {};
  for (const k of Object.keys(value)) {
    const cs = state ? step(m, state, k) : null;
    const v = (value as Obj)[k];
    const hidden = isCredentialName(k) || (cs !== null && (flagsOf(m, cs) & SENSITIVE) !== 0);
    Object.defineProperty(out, k, { value: hidden ? REDACTED : scrubAll(v, rules, cs), writable: true, enumerable: true, configurable: true });
  }
  return out;
}

export function redactDifference(diff: Difference, rules: RedactRules): Difference {
  const out: Difference = { field: diff.field, path: diff.path, kind: diff.kind };
  if ('legacy' in diff) out.legacy = redactValue(diff.legacy, diff.path, rules);
  if ('candidate' in diff) out.candidate = redactValue(diff.candidate, diff.path, rules);
  return out;
}
