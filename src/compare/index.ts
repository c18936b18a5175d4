/**
 * The comparison engine: pure functions from two captured responses and a route's compiled rules to
 * a list of differences. No I/O, clock, logging or module state, so it can run in a worker as is.
 *
 * Pipeline: status and headers → byte-equal fast path → decode → body kind → (JSON) parse, mappings,
 * transform, typed walk | (text) line summary | (binary) digest.
 */
import { boundName } from './bound.js';
import type { CompareSettings, TransformFn } from '../config/load.js';
import { charsetOf, decodeBody, encodingsOf, headerValue, kindFromContentType, sniffKind } from './decode.js';
import { isUtf8 } from 'node:buffer';
import { MAX_DIFFERENCES, TooComplexError, diffJson, diffNumberTexts, preview, type WalkContext } from './json.js';
import type { KnownSpans } from './known.js';
import { lockstepJson } from './lockstep.js';
import type { RecentPairs } from './recent.js';
import { applyMappings, compileMapping, type CompiledMapping } from './mappings.js';
import { IGNORE, SENSITIVE, UNORDERED, buildMatcher, parsePath, renderKey, type PathMatcher, type Segment } from './path.js';
import { blankSecrets, REDACTED, redactDifference as redactWith, redactSecrets, redactValue as redactValueWith, secretSpellings } from './redact.js';
import { digest, textSummary } from './text.js';
import type { BodyKind, Captured, CompareContext, Comparison, Difference } from './types.js';

export type { BodyKind, Captured, CompareContext, Comparison, DiffKind, Difference, FieldRates, NoiseThresholds } from './types.js';
export { DEFAULT_NOISE_THRESHOLDS, isRealDifference } from './noise.js';
export { isDynamicKey, PathSyntaxError } from './path.js';
export { MAX_DIFFERENCES } from './json.js';
export { blankSecrets, MIN_SECRET_CHARS, REDACTED, secretSpellings } from './redact.js';
export { boundName, MAX_KEY_CHARS, MAX_PATH_CHARS } from './bound.js';
export { KnownSpans, type KnownSpansStats } from './known.js';
export { RecentPairs, type RecentPairsStats } from './recent.js';

/**
 * What a thread that compares keeps between comparisons, to save time and never to change an
 * answer: big JSON values already read (known.ts) and each request's last pair (recent.ts).
 */
export interface CompareState {
  known?: KnownSpans;
  recent?: RecentPairs;
}

/** Precomputed matchers of one route; build once with compileRules and share freely (read-only). */
export interface CompiledRules {
  readonly headers: readonly string[];
  readonly allHeaders: boolean;
  readonly ignoreHeaders: ReadonlySet<string>;
  readonly body: PathMatcher;
  readonly sensitive: PathMatcher;
  /** `compare.sensitive` entries that are names (no leading "$"), lower-case: redacted wherever they appear. */
  readonly sensitiveNames: ReadonlySet<string>;
  readonly tolerance: { readonly absolute: number; readonly relative: number };
  readonly mappings: readonly CompiledMapping[];
  readonly transform?: TransformFn;
  readonly transformName: string;
  readonly maxBodyBytes: number;
  /** `strict`: `1` vs `1.0` is a `number_format` difference; `lenient`: it is equal. */
  readonly numberFormat: 'strict' | 'lenient';
  /** `implied`: a JSON Content-Type without charset means UTF-8, so `; charset=utf-8` changes nothing. */
  readonly jsonCharset: 'implied' | 'strict';
}

/**
 * With `headers: ["*"]` these are left out: they describe the transfer, not the answer, or change on
 * every call. Naming one explicitly still compares it.
 */
const NOT_IN_STAR = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-connection', 'content-length', 'content-encoding', 'date']);

function parseAll(list: readonly string[], where: string): Segment[][] {
  return list.map((p, i) => parsePath(p, `${where}[${i}]`));
}

/**
 * The rules for a baseline pair (two answers of one backend): the same compiled matchers, without the
 * mapping or transform that turn new's contract into legacy's.
 */
export function baselineRules(shadow: CompiledRules): CompiledRules {
  return Object.freeze({ ...shadow, mappings: [], transform: undefined, transformName: 'transform' });
}

/** A route's rules for the two comparisons of a pair. */
export interface RouteRules {
  shadow: CompiledRules;
  /** For baseline pairs: both answers come from one backend, so no mapping or transform applies. */
  baseline: CompiledRules;
}

/** The baseline rules share the compiled matchers; they only leave out the mapping and transform. */
export function routeRules(shadow: CompiledRules): RouteRules {
  return { shadow, baseline: baselineRules(shadow) };
}

/** Throws PathSyntaxError (code CUTOVER_BAD_COMPARE_PATH) naming the rule that does not parse. */
export function compileRules(settings: CompareSettings): CompiledRules {
  const ignoreHeaders = new Set(settings.ignoreHeaders.map((h) => h.toLowerCase()));
  const listed = [...new Set(settings.headers.map((h) => h.toLowerCase()))];
  const { absolute, relative } = settings.tolerance;
  if (!(absolute >= 0) || !(relative >= 0)) throw new RangeError('compare.tolerance: absolute and relative must be numbers >= 0');
  const ignore = parseAll(settings.ignore, 'compare.ignore');
  const unordered = parseAll(settings.unordered, 'compare.unordered');
  const sensitive = parseAll(settings.sensitive.filter((p) => p.startsWith('$')), 'compare.sensitive');
  const sensitiveNames = new Set(settings.sensitive.filter((p) => !p.startsWith('$')).map((n) => n.toLowerCase()));
  const bodyRules = [...ignore.map((segments) => ({ segments, flag: IGNORE })), ...unordered.map((segments) => ({ segments, flag: UNORDERED }))];
  const transform = settings.transform;
  return Object.freeze({
    headers: listed.filter((h) => h !== '*' && !ignoreHeaders.has(h)),
    allHeaders: listed.includes('*'),
    ignoreHeaders,
    body: buildMatcher(bodyRules),
    sensitive: buildMatcher(sensitive.map((segments) => ({ segments, flag: SENSITIVE }))),
    sensitiveNames,
    tolerance: { absolute, relative },
    mappings: settings.mappings.map(compileMapping),
    transform,
    transformName: settings.transformPath ?? (transform?.name || 'transform'),
    maxBodyBytes: settings.maxBodyBytes,
    numberFormat: settings.numberFormat ?? 'strict',
    jsonCharset: settings.jsonCharset ?? 'implied',
  });
}

/**
 * A media type by meaning: type, subtype and parameter names are case-insensitive, parameter order
 * does not matter, quotes around a value are syntax, and a charset value is case-insensitive. With
 * `jsonCharset: implied`, `charset=utf-8` on a JSON type is dropped: JSON is UTF-8 (RFC 8259), so
 * saying so changes nothing.
 */
export function normaliseContentType(v: string, jsonCharset: 'implied' | 'strict' = 'implied'): string {
  const parts = v.split(';');
  const media = parts[0].trim().toLowerCase();
  const params: string[] = [];
  for (let i = 1; i < parts.length; i++) {
    const p = parts[i].trim();
    if (!p) continue;
    const eq = p.indexOf('=');
    const name = (eq === -1 ? p : p.slice(0, eq)).trim().toLowerCase();
    let value = eq === -1 ? '' : p.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    if (name === 'charset') {
      value = value.toLowerCase();
      if (jsonCharset === 'implied' && (value === 'utf-8' || value === 'utf8') && kindFromContentType(media) === 'json') continue;
    }
    params.push(`${name}=${value}`);
  }
  params.sort();
  return params.length ? `${media};${params.join(';')}` : media;
}

function compareHeader(name: string, l: Captured['headers'], c: Captured['headers'], rules: CompiledRules, out: Difference[]): void {
  const lv = headerValue(l, name);
  const cv = headerValue(c, name);
  if (lv === cv) return;
  const field = `header:${boundName(name)}`;
  if (cv === undefined) out.push({ field, path: field, kind: 'missing', legacy: preview(lv) });
  else if (lv === undefined) out.push({ field, path: field, kind: 'extra', candidate: preview(cv) });
  else if (name !== 'content-type' || normaliseContentType(lv, rules.jsonCharset) !== normaliseContentType(cv, rules.jsonCharset)) {
    out.push({ field, path: field, kind: 'header', legacy: preview(lv), candidate: preview(cv) });
  }
}

function compareHeaders(l: Captured['headers'], c: Captured['headers'], rules: CompiledRules, out: Difference[]): void {
  for (const name of rules.headers) compareHeader(name, l, c, rules, out);
  if (!rules.allHeaders) return;
  const seen = new Set(rules.headers);
  for (const side of [l, c]) {
    for (const raw of Object.keys(side)) {
      const name = raw.toLowerCase();
      if (seen.has(name) || NOT_IN_STAR.has(name) || rules.ignoreHeaders.has(name) || side[raw] === undefined) continue;
      seen.add(name);
      compareHeader(name, l, c, rules, out);
    }
  }
}

function fastKind(body: Buffer, contentType: string | undefined): BodyKind {
  if (body.length === 0) return 'empty';
  return kindFromContentType(contentType) ?? sniffKind(body, 256);
}

function done(differences: Difference[], bodyKind: BodyKind, capped = false): Comparison {
  const c: Comparison = { result: differences.length ? 'mismatch' : 'match', differences, bodyKind };
  if (capped) c.differencesCapped = true;
  return c;
}

/**
 * The body could not be compared. Differences already found still make a mismatch (they are real
 * evidence); otherwise the comparison is an error, so it counts neither as match nor mismatch.
 */
function bodyUnavailable(differences: Difference[], bodyKind: BodyKind, error: string): Comparison {
  return { result: differences.length ? 'mismatch' : 'error', differences, error, bodyKind };
}

function sideDiff(kind: 'missing' | 'extra' | 'type' | 'value', legacy: unknown, candidate: unknown): Difference {
  const d: Difference = { field: '$', path: '$', kind };
  if (kind !== 'extra') d.legacy = legacy;
  if (kind !== 'missing') d.candidate = candidate;
  return d;
}

/**
 * V8's parse error without the excerpt of the body it quotes (Node 22 and later: `Unexpected token
 * 'x', "…" is not valid JSON`), which could carry a secret into an example; the position stays.
 */
function parseErrorHead(message: string): string {
  const head = message.split(/, "|"/, 1)[0].trim();
  const at = /at position \d+/.exec(message)?.[0];
  return at !== undefined && !head.includes(at) ? `${head} (${at})` : head;
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (err) {
    return { ok: false, error: `invalid JSON: ${parseErrorHead((err as Error).message)}` };
  }
}

/** `state` is the calling thread's CompareState: optional, it only saves time, never changes the answer. */
export function compareResponses(legacy: Captured, candidate: Captured, rules: CompiledRules, ctx: CompareContext, state?: CompareState): Comparison {
  const differences: Difference[] = [];
  const contentType = headerValue(legacy.headers, 'content-type') ?? headerValue(candidate.headers, 'content-type');
  if (legacy.status !== candidate.status) {
    // Different statuses are different answers (an error page against a resource, 404 against 200):
    // the headers and bodies then differ as a consequence, and listing a dozen "missing" fields would
    // bury the one difference that matters.
    differences.push({ field: 'status', path: 'status', kind: 'status', legacy: legacy.status, candidate: candidate.status });
    return done(differences, kindFromContentType(contentType) ?? 'binary');
  }
  compareHeaders(legacy.headers, candidate.headers, rules, differences);

  // Fast path: identical bytes under the identical coding are the same answer, whatever the rules.
  if (
    !legacy.truncated &&
    !candidate.truncated &&
    legacy.headers['content-encoding'] === candidate.headers['content-encoding'] &&
    legacy.body.length === candidate.body.length &&
    legacy.body.equals(candidate.body)
  ) {
    return done(differences, fastKind(legacy.body, contentType));
  }
  const declared = kindFromContentType(contentType);
  if (legacy.truncated || candidate.truncated) return bodyUnavailable(differences, declared ?? 'binary', 'body_truncated');

  const l = decodeBody(legacy.body, encodingsOf(legacy.headers), rules.maxBodyBytes);
  const c = decodeBody(candidate.body, encodingsOf(candidate.headers), rules.maxBodyBytes);
  for (const [side, d] of [
    ['legacy', l],
    ['new', c],
  ] as const) {
    if (d.ok) continue;
    if (d.truncated) return bodyUnavailable(differences, declared ?? 'binary', 'body_truncated');
    return bodyUnavailable(differences, declared ?? 'binary', `decode_failed: ${side} body: ${d.error}`);
  }
  if (!l.ok || !c.ok) return bodyUnavailable(differences, 'binary', 'decode_failed');
  const lb = l.body;
  const cb = c.body;
  if (lb.length === 0 && cb.length === 0) return done(differences, 'empty');
  const kind = declared ?? sniffKind(lb.length ? lb : cb);

  try {
    if (kind === 'json') return compareJson(lb, cb, contentType, differences, rules, ctx, state);
    if (kind === 'text') return compareText(lb, cb, contentType, differences);
    if (!lb.equals(cb)) differences.push(emptiness(lb, cb) ?? sideDiff('value', digest(lb), digest(cb)));
    return done(differences, 'binary');
  } catch (err) {
    // Pure code can still meet bodies it cannot afford; the caller gets an answer, never a throw.
    const message = err instanceof TooComplexError ? err.message : `compare_failed: ${(err as Error).message}`;
    return { result: 'error', differences, error: message, bodyKind: kind };
  }
}

/** One side sent a body and the other none: that is the whole difference. */
function emptiness(lb: Buffer, cb: Buffer): Difference | undefined {
  if (lb.length && !cb.length) return sideDiff('missing', `${lb.length} bytes`, undefined);
  if (!lb.length && cb.length) return sideDiff('extra', undefined, `${cb.length} bytes`);
  return undefined;
}

/**
 * Bodies that are not valid UTF-8 are read byte for byte (Latin-1 maps each byte to one character),
 * on both sides: decoding invalid bytes to U+FFFD would make different bodies look equal.
 */
function textCharset(lb: Buffer, cb: Buffer, contentType: string | undefined): 'utf8' | 'latin1' {
  const charset = charsetOf(contentType);
  return charset === 'utf8' && (!isUtf8(lb) || !isUtf8(cb)) ? 'latin1' : charset;
}

function toText(body: Buffer, charset: 'utf8' | 'latin1'): string {
  // A UTF-8 BOM is framing, not content; JSON.parse rejects it.
  const start = charset === 'utf8' && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0;
  return body.toString(charset, start);
}

function compareText(lb: Buffer, cb: Buffer, contentType: string | undefined, differences: Difference[]): Comparison {
  if (lb.equals(cb)) return done(differences, 'text');
  const empty = emptiness(lb, cb);
  if (empty) {
    differences.push(empty);
    return done(differences, 'text');
  }
  const charset = textCharset(lb, cb, contentType);
  const a = toText(lb, charset);
  const b = toText(cb, charset);
  if (a !== b) {
    const s = textSummary(a, b);
    differences.push(sideDiff('value', s.legacy, s.candidate));
  }
  return done(differences, 'text');
}

function compareJson(lb: Buffer, cb: Buffer, contentType: string | undefined, differences: Difference[], rules: CompiledRules, ctx: CompareContext, state: CompareState | undefined): Comparison {
  const empty = emptiness(lb, cb);
  if (empty) {
    differences.push(empty);
    return done(differences, 'json');
  }
  const before = differences.length;
  const plain = rules.mappings.length === 0 && !rules.transform;
  // The request's last pair, when this one differs from it only in a few members' values
  // (recent.ts). Kept pairs are valid UTF-8 and what changed is checked: the bodies need not be
  // read for it here.
  const recent = plain && charsetOf(contentType) === 'utf8' ? state?.recent : undefined;
  const key = recent?.keyOf(rules, ctx.method, ctx.path);
  if (key !== undefined && recent!.reuse(key, lb, cb, rules, differences)) return done(differences, 'json');
  const charset = textCharset(lb, cb, contentType);
  /**
   * The answer, kept for the request's next pair when it was read as UTF-8, not cut at the cap, and
   * not added to by the number-text pass (which reads the whole bodies: its differences belong to no
   * member, and a later pair's walk may find something else and never run it).
   */
  const answer = (capped: boolean, texts: boolean): Comparison => {
    if (!capped && !texts && key !== undefined && charset === 'utf8') recent!.remember(key, lb, cb, differences.slice(before));
    return done(differences, 'json', capped);
  };
  // Mostly equal bodies: parse and walk only the container their differences lie in.
  if (charset === 'utf8' && plain) {
    const fast = lockstepJson(lb, cb, rules, differences, state?.known);
    if (fast) return answer(fast.capped || differences.length > MAX_DIFFERENCES, fast.texts);
  }
  const lt = toText(lb, charset);
  const ct = toText(cb, charset);
  const lp = parseJson(lt);
  const cp = parseJson(ct);
  if (!lp.ok && !cp.ok) return compareText(lb, cb, contentType, differences);
  if (!lp.ok || !cp.ok) {
    differences.push(sideDiff('type', lp.ok ? preview(lp.value) : lp.error, cp.ok ? preview(cp.value) : cp.error));
    return done(differences, 'json');
  }
  let legacyValue = lp.value;
  let candidateValue = applyMappings(cp.value, rules.mappings);
  if (rules.transform) {
    try {
      const r = rules.transform(legacyValue, candidateValue, ctx) as unknown;
      if (typeof r !== 'object' || r === null || !('legacy' in r)) throw new Error('it must return { legacy, candidate }');
      const out = r as { legacy: unknown; candidate?: unknown; new?: unknown };
      legacyValue = out.legacy;
      // The config schema's comment names the field `new`; accept both spellings.
      candidateValue = 'candidate' in out ? out.candidate : out.new;
    } catch (err) {
      return { result: 'error', differences, error: `transform_failed: transform ${rules.transformName} threw: ${(err as Error)?.message ?? String(err)}`, bodyKind: 'json' };
    }
  }
  const walk: WalkContext = { m: rules.body, tolerance: rules.tolerance, out: differences, capped: false, work: 0 };
  diffJson(legacyValue, candidateValue, walk);
  const walked = differences.length;
  // The number texts are read only where they can change the answer: the parsed bodies are equal
  // although the bytes differ (the verdict would otherwise be a false "match"), or the walk met an
  // equal number a float may have rounded (beyond ±2^53, infinite). This keeps the common mismatch
  // at the cost of the parse; see docs/compare.md, "Numbers".
  if (!walk.capped && (differences.length === before || walk.wideNumbers === true)) {
    diffNumberTexts(lt, ct, legacyValue, candidateValue, walk, rules.numberFormat === 'strict');
  }
  return answer(walk.capped || differences.length > MAX_DIFFERENCES, differences.length > walked);
}

/**
 * Replaces values at sensitive paths and credential-looking values by "[redacted]", and with
 * `secrets` (the request's own credential values) every place they appear; returns a copy.
 */
export function redactDifference(diff: Difference, rules: CompiledRules, secrets?: readonly string[]): Difference {
  const out = redactWith(diff, rules);
  if (secrets === undefined || secrets.length === 0) return out;
  const spellings = secretSpellings(secrets);
  const segments = keySegments(secrets);
  out.field = blankKeys(out.field, segments);
  out.path = blankKeys(out.path, segments);
  if ('legacy' in out) out.legacy = redactSecrets(out.legacy, spellings);
  if ('candidate' in out) out.candidate = redactSecrets(out.candidate, spellings);
  return out;
}

/**
 * The differences of a pair whose request carried a credential, with that credential blanked from
 * their field and path: a key the backend echoed as an object key (`$.limits.<key>`) must not become
 * a field name, a metric label or an example's location. Matched as a whole key, as the path renders
 * it (escaped, or cut and hashed when long), ignoring case: `$.orders` stays when the secret is
 * `orders`-something. Differences without it are kept as they are.
 */
export function withoutSecrets(differences: readonly Difference[], secrets: readonly string[]): readonly Difference[] {
  let segments: string[] | null = null;
  let out: Difference[] | null = null;
  for (let i = 0; i < differences.length; i++) {
    const d = differences[i];
    segments ??= keySegments(secrets);
    // Each on its own: a path cut at its length bound may have lost the key its field still holds.
    const path = blankKeys(d.path, segments);
    const field = blankKeys(d.field, segments);
    if (path === d.path && field === d.field) continue;
    out ??= differences.slice();
    out[i] = { ...d, field, path };
  }
  return out ?? differences;
}

/** Each secret as a path renders it when it is a key (`.key` or `['k\\'ey']`, bounded), lower-cased. */
function keySegments(secrets: readonly string[]): string[] {
  return [...new Set(secrets.map((s) => renderKey(s).toLowerCase()))];
}

/** A character a plain rendered key (`.name`) may hold: anything else ends it. */
const PLAIN_KEY_CHAR = /[A-Za-z0-9_$-]/;

/** `path` with each whole-key occurrence of a segment (lower-case) replaced by `.[redacted]`. */
function blankKeys(path: string, segments: readonly string[]): string {
  let out = path;
  for (const segment of segments) {
    let lower = out.toLowerCase();
    if (lower.length !== out.length) lower = out;
    let at = lower.indexOf(segment);
    while (at !== -1) {
      const end = at + segment.length;
      // `.name` must end there (not `.names`): whatever follows cannot continue a plain key (`.`,
      // `[`, a dynamic key's `{*}`, a cut's `…`); `['…']` ends itself.
      if (segment.startsWith('[') || end === out.length || !PLAIN_KEY_CHAR.test(out[end])) {
        out = `${out.slice(0, at)}.${REDACTED}${out.slice(end)}`;
        lower = `${lower.slice(0, at)}.${REDACTED}${lower.slice(end)}`;
        at = lower.indexOf(segment, at + REDACTED.length + 1);
      } else at = lower.indexOf(segment, at + 1);
    }
  }
  // A path or field cut at its length bound (boundName: `<head>…<hash>`, the last `…`) may end
  // inside a key: the start it kept (8 characters of the key or more) goes too.
  const cut = CUT_END.exec(out);
  if (cut === null) return out;
  for (const segment of segments) {
    const opener = segment.startsWith('[') ? 2 : 1;
    for (let k = Math.min(segment.length - 1, cut.index); k >= opener + 8; k--) {
      if (out.slice(cut.index - k, cut.index).toLowerCase() === segment.slice(0, k)) return `${out.slice(0, cut.index - k)}.${REDACTED}${out.slice(cut.index)}`;
    }
  }
  return out;
}

/** The end boundName gives a cut text: `…` and its hash. */
const CUT_END = /…[0-9a-f]{8}$/;

/** Redacts one value found at a concrete path (`$.user.password`, `header:authorization`). */
export function redactValue(value: unknown, path: string, rules: CompiledRules): unknown {
  return redactValueWith(value, path, rules);
}
