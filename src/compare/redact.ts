/**
 * Redaction of example values before they leave the comparison engine's callers (admin API, report,
 * logs): configured sensitive paths, credential-named fields and headers, and anything that reads
 * like a credential (Bearer/Basic values, JWTs).
 */
import { SENSITIVE, concreteKeys, flagsOf, step, type PathMatcher } from './path.js';
import type { Difference } from './types.js';

export const REDACTED = '[redacted]';

/** Words that make a name a credential wherever they appear in it, even run together (`userpassword`). */
const STRONG_WORD = /authorization|cookie|passw(or)?d|secret|token|apikey|privatekey|credential|signature/;
/** Words (or two adjacent words run together) that make a name a credential when they stand alone. */
const CREDENTIAL_WORDS = new Set(['auth', 'pwd', 'passphrase', 'session', 'sessionid', 'sessionkey', 'jwt', 'bearer', 'accesskey', 'secretkey', 'apikey', 'privatekey', 'setcookie', 'otp', 'pin', 'pincode', 'cvv', 'cvc']);
const AUTH_SCHEME = /\b(Bearer|Basic|Digest|Negotiate|Token)\s+[A-Za-z0-9._~+/=-]{6,}/gi;
const JWT = /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g;

/**
 * The words of a name, lower-case: `accessToken`, `access_token`, `access-token`, `ACCESS_TOKEN`
 * and `XMLHttpSessionId` all split at their case changes and separators.
 */
export function nameWords(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((w) => w.length > 0);
}

/**
 * Body field names whose values are credentials whatever the config says: a credential word
 * anywhere in a camelCase, snake_case or kebab-case name, case-insensitively (`accessToken`,
 * `refresh_token`, `userPassword`, `sessionId`, `x-api-key`, `clientSecret`, `privateKey`).
 */
export function isCredentialName(name: string): boolean {
  const words = nameWords(name);
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    // Plurals too: `apiKeys`, `access_keys`, `passphrases`.
    if (STRONG_WORD.test(w) || CREDENTIAL_WORDS.has(w) || CREDENTIAL_WORDS.has(singular(w))) return true;
    if (i + 1 < words.length) {
      const two = w + words[i + 1];
      if (CREDENTIAL_WORDS.has(two) || CREDENTIAL_WORDS.has(singular(two)) || STRONG_WORD.test(two)) return true;
    }
  }
  return false;
}

function singular(word: string): string {
  return word.length > 3 && word.endsWith('s') ? word.slice(0, -1) : word;
}

/** Header names whose values are credentials: the field names plus `x-…-auth…`, `x-…-key` styles. */
export function isCredentialHeader(name: string): boolean {
  return isCredentialName(name) || /^x-.*(auth|key|token|secret|signature)/i.test(name);
}

/** `"name": value` inside a text (a cut preview of a container, a text body's line, a parse error). */
const JSON_MEMBER = /"((?:[^"\\\n]|\\.)*)"(\s*:\s*)("(?:[^"\\\n]|\\.)*"?|[^\s,}\]"]+)/g;
/** `name=value` in a query string, a form or a cookie line. */
const NAME_VALUE = /(^|[?&;,\s])([A-Za-z0-9_.%-]+)=([^&;,\s"]*)/g;

/**
 * Credential-looking parts of a free text: Bearer/Basic values, JWTs, and the values of members or
 * parameters whose names are credentials (`"password": "…"`, `?access_token=…`). A value cut at the
 * end of a preview is hidden too.
 */
function scrubString(s: string, rules?: RedactRules): string {
  let out = s.replace(AUTH_SCHEME, REDACTED).replace(JWT, REDACTED);
  if (out.includes('"')) {
    const members = (text: string): string => text.replace(JSON_MEMBER, (all, name: string, sep: string) => (isSensitiveName(name, rules) ? `"${name}"${sep}"${REDACTED}"` : all));
    out = members(out);
    // A quoted excerpt (a text body's line summary) escapes its quotes: read it unescaped.
    if (out.includes('\\"')) {
      const plain = out.replace(/\\"/g, '"');
      const scrubbed = members(plain);
      if (scrubbed !== plain) out = scrubbed;
    }
  }
  if (out.includes('=')) out = out.replace(NAME_VALUE, (all, lead: string, name: string) => (isSensitiveName(safeDecode(name), rules) ? `${lead}${name}=${REDACTED}` : all));
  return out;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export interface RedactRules {
  sensitive: PathMatcher;
  /** Field and header names (lower-case) from `compare.sensitive` entries that are names, not paths. */
  sensitiveNames?: ReadonlySet<string>;
}

function isSensitiveName(name: string, rules: RedactRules | undefined): boolean {
  return isCredentialName(name) || (rules?.sensitiveNames !== undefined && rules.sensitiveNames.size > 0 && rules.sensitiveNames.has(name.toLowerCase()));
}

type Obj = Record<string, unknown>;

/**
 * Returns `value` (found at concrete path `path`) with sensitive parts replaced by "[redacted]".
 * Never mutates `value`: containers are copied as they are rewritten.
 */
export function redactValue(value: unknown, path: string, rules: RedactRules): unknown {
  if (path.startsWith('header:')) {
    const name = path.slice('header:'.length);
    return isCredentialHeader(name) || isSensitiveName(name, rules) ? (value === undefined ? undefined : REDACTED) : scrubAll(value, rules, null);
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
    if (typeof k === 'string' && isSensitiveName(k, rules)) return REDACTED;
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
  if (typeof value === 'string') return scrubString(value, rules);
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
    const hidden = isSensitiveName(k, rules) || (cs !== null && (flagsOf(m, cs) & SENSITIVE) !== 0);
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

/** Shorter values are too likely to be ordinary text ("1234") to be blanked wherever they appear. */
export const MIN_SECRET_CHARS = 6;

/**
 * The spellings a backend may echo a secret in: as sent, URL-encoded (and with `+` for spaces), and
 * JSON-escaped (a text body's quoted line, a cut container preview).
 */
export function secretSpellings(secrets: readonly string[]): string[] {
  const out = new Set<string>();
  for (const s of secrets) {
    out.add(s);
    const encoded = encodeURIComponent(s);
    out.add(encoded);
    out.add(encoded.replace(/%20/g, '+'));
    out.add(JSON.stringify(s).slice(1, -1));
  }
  return [...out];
}

/** Where `needle` (lower-case) starts in `text` at or after `from`, ignoring case; -1 when nowhere. */
function indexIgnoringCase(text: string, lower: string | null, needle: string, from: number): number {
  return lower === null ? text.indexOf(needle, from) : lower.indexOf(needle, from);
}

/**
 * `text` with every spelling blanked, ignoring case (an echo may change it); a cut preview (ending
 * in "…") also loses a trailing start of one, 8 characters or more, that the cut left behind
 * (shorter starts are too often ordinary words: "test" of `test_key_…`).
 */
export function blankSecrets(text: string, spellings: readonly string[]): string {
  let out = text;
  for (const spelling of spellings) {
    let lower: string | null = out.toLowerCase();
    // Lower-casing that changes a length (a few Unicode letters) would shift positions: exact case then.
    if (lower.length !== out.length) lower = null;
    const needle = lower === null ? spelling : spelling.toLowerCase();
    if (needle.length !== spelling.length) continue;
    let at = indexIgnoringCase(out, lower, needle, 0);
    while (at !== -1) {
      out = out.slice(0, at) + REDACTED + out.slice(at + spelling.length);
      lower = lower === null ? null : lower.slice(0, at) + REDACTED + lower.slice(at + spelling.length);
      at = indexIgnoringCase(out, lower, needle, at + REDACTED.length);
    }
  }
  if (!out.endsWith('…')) return out;
  const head = out.slice(0, -1).toLowerCase();
  for (const spelling of spellings) {
    const lower = spelling.toLowerCase();
    for (let k = Math.min(lower.length - 1, head.length); k >= 8; k--) {
      if (head.endsWith(lower.slice(0, k))) return `${out.slice(0, out.length - 1 - k)}${REDACTED}…`;
    }
  }
  return out;
}

/**
 * `value` with the request's own credential values blanked in every string and key (a backend that
 * echoes its caller's key, `{"caller": "sk_live_…"}`, under a name no rule knows). `spellings`
 * come from secretSpellings. Copy-on-write, like scrubAll; values are previews, so the walk is short.
 */
export function redactSecrets(value: unknown, spellings: readonly string[]): unknown {
  if (typeof value === 'string') return blankSecrets(value, spellings);
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v, spellings));
  const out: Obj = {};
  for (const k of Object.keys(value)) {
    Object.defineProperty(out, blankSecrets(k, spellings), { value: redactSecrets((value as Obj)[k], spellings), writable: true, enumerable: true, configurable: true });
  }
  return out;
}

/** What a query must contain somewhere for any part of it to be a credential (a cheap first look). */
const SUSPECT = /auth|pass|pwd|secret|token|key|cookie|session|jwt|bearer|credential|signature|eyJ/i;

/** A request target with credential-named query parameters (and credential-looking values) masked. */
export function redactQueryText(target: string): string {
  const q = target.indexOf('?');
  if (q === -1) return target;
  const query = target.slice(q);
  return SUSPECT.test(query) ? target.slice(0, q) + scrubString(query) : target;
}
