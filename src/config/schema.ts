/**
 * The config file's schema. Unknown keys are errors everywhere (strict objects); every default is
 * written here, so `cutover check` and the example config can be read against one place.
 *
 * Route-level `shadow` and `compare` are partial: they are merged over `defaults.*` and then over the
 * built-in defaults by `resolve.ts`, so this file keeps them without defaults of their own.
 */
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { isIP } from 'node:net';
import { parseDuration, parseSize } from './units.js';

/**
 * The longest delay Node's timers take (2^31 - 1 ms, ~24.8 days): past it they fire after 1 ms, so
 * `cutover.interval: 600h` would judge every route a thousand times a second.
 */
const MAX_TIMER_MS = 2_147_483_647;

const duration = z.union([z.number().nonnegative(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return value;
  const ms = parseDuration(value);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a duration; use e.g. 250ms, 30s or 5m` });
    return z.NEVER;
  }
  return ms;
}).refine((ms) => ms <= MAX_TIMER_MS, 'must be at most 596h (~24.8 days: Node\'s timers run a longer delay after 1 ms)');

/** A timeout: a duration that must be above zero (0 would mean "expire at once", never "no limit"). */
const timeout = duration.refine((ms) => ms > 0, 'must be greater than 0, e.g. 30s');

const size = z.union([z.number().int().nonnegative(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return value;
  const bytes = parseSize(value);
  if (bytes === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a size; use e.g. 512kb, 1mib or a number of bytes` });
    return z.NEVER;
  }
  return bytes;
});

const port = z.number().int().min(0).max(65535);

const httpUrl = z.string().superRefine((value, ctx) => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a URL; use e.g. http://127.0.0.1:9101` });
    return;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    ctx.addIssue({ code: 'custom', message: `must be an http:// or https:// URL, not ${url.protocol}` });
  }
  if (url.search || url.hash) ctx.addIssue({ code: 'custom', message: 'must not carry a query or fragment' });
});

/**
 * An address to listen on: an IP literal, or a host name (letters, digits, '-', '_' and '.'). A name
 * that does not resolve still fails at start, naming the field (cli/main.ts).
 */
const listenHost = z
  .string()
  .min(1)
  .refine((h) => isIP(h) !== 0 || /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/.test(h), {
    message: 'must be an IP address (0.0.0.0, 127.0.0.1, ::) or a host name',
  });

/** Traffic is split in hundredths of a percent (10,000 buckets): a finer value would be rounded away unseen. */
export function isSplitPercent(v: number): boolean {
  return Number.isFinite(v) && v >= 0 && v <= 100 && inHundredths(v);
}

function inHundredths(v: number): boolean {
  return Math.abs(v * 100 - Math.round(v * 100)) < 1e-6;
}

const percent = z
  .number()
  .min(0)
  .max(100)
  .refine(inHundredths, { message: 'must be a multiple of 0.01 (traffic is split in hundredths of a percent)' });

/** An IP address or a CIDR block (`10.0.0.0/8`, `fd00::/8`) with a prefix that fits its family. */
const ipOrCidr = z.string().superRefine((value, ctx) => {
  const slash = value.indexOf('/');
  const addr = slash === -1 ? value : value.slice(0, slash);
  const family = isIP(addr);
  if (family === 0) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not an IP address or CIDR block; use e.g. 10.0.0.1 or 10.0.0.0/8` });
    return;
  }
  if (slash === -1) return;
  const prefix = value.slice(slash + 1);
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > max) {
    ctx.addIssue({ code: 'custom', message: `"${value}" has a bad prefix length; use 0 to ${max} after the "/"` });
  }
});

const jsonPath = z.string().regex(/^\$/, 'must be a path starting with "$", e.g. $.meta.requestId');

const secretSource = {
  /** File holding the secret (trailing newline trimmed). */
  tokenFile: z.string().min(1).optional(),
  /** Environment variable holding the secret. */
  tokenEnv: z.string().min(1).optional(),
};

export const listenSchema = z.strictObject({
  host: listenHost.default('0.0.0.0'),
  port: port.default(8080),
  /** Largest request body accepted; larger gets 413. */
  bodyLimit: size.default(10 * 1024 * 1024),
  /** Peers whose X-Forwarded-For is appended to rather than overwritten (IPs or CIDRs). */
  trustedProxies: z.array(ipOrCidr).default([]),
  /** Send the client's Host header upstream instead of the backend's own host. */
  preserveHost: z.boolean().default(false),
  /** On SIGTERM, how long in-flight requests may take before connections are cut. */
  drainTimeout: duration.default(30_000),
  /** Idle keep-alive timeout for client connections. */
  keepAliveTimeout: duration.default(72_000),
  /** Budget for receiving a whole request, body included; past it the client gets 408. */
  requestTimeout: timeout.default(30_000),
  /** Longest gap between two pieces of a request body; past it the client gets 408. */
  bodyIdleTimeout: timeout.default(10_000),
  /**
   * Longest time a client may take no bytes of its answer (nginx's send_timeout): past it the
   * connection is cut and the request counted as the client's, not the backend's.
   */
  sendTimeout: timeout.default(60_000),
  /** Request-body bytes buffered at once across all connections; past it new bodies get 503. */
  maxBufferedBodyBytes: size.default(256 * 1024 * 1024),
});

export const adminTokenSchema = z.strictObject({
  /** Who this token is, in the audit log. */
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 letters, digits, "_", "." or "-"'),
  /** `viewer` reads; `operator` also pulls levers. */
  role: z.enum(['viewer', 'operator']),
  ...secretSource,
});

export const adminSchema = z.strictObject({
  host: listenHost.default('127.0.0.1'),
  port: port.default(9090),
  /** The single token of earlier configs: one operator token named `admin`. */
  ...secretSource,
  /** Named admin tokens with roles. */
  tokens: z.array(adminTokenSchema).default([]),
});

/** A secret given by file (trailing newline trimmed; read when used, so a rotated file is picked up) or env var. */
const valueSource = {
  valueFile: z.string().min(1).optional(),
  valueEnv: z.string().min(1).optional(),
};

const headerName = z.string().regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'must be an HTTP header name');

/** How the proxy authenticates itself to a backend (the new backend gets its own credential). */
export const outboundAuthSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('none') }),
  z.strictObject({ type: z.literal('static'), header: headerName.default('authorization'), ...valueSource }),
  z.strictObject({
    type: z.literal('oauth2-client-credentials'),
    tokenUrl: httpUrl,
    clientId: z.string().min(1),
    clientSecretFile: z.string().min(1).optional(),
    clientSecretEnv: z.string().min(1).optional(),
    scope: z.string().min(1).optional(),
    audience: z.string().min(1).optional(),
    /** RFC 6749 §2.3.1: HTTP Basic (recommended) or client_id/client_secret in the form body. */
    clientAuth: z.enum(['basic', 'body']).default('basic'),
    /** A token is refreshed this long before its `expires_in` runs out. */
    skew: duration.default(30_000),
    /** Budget for one call to the token endpoint (0 would abort every fetch at once). */
    timeout: timeout.default(10_000),
  }),
]);

/** Client certificate, CA and server name toward a backend; its certificate is always verified. */
export const backendTlsSchema = z.strictObject({
  certFile: z.string().min(1).optional(),
  keyFile: z.string().min(1).optional(),
  caFile: z.string().min(1).optional(),
  serverName: z.string().min(1).optional(),
});

export const backendSchema = z.strictObject({
  url: httpUrl,
  /** Whole-request budget: headers and body must arrive within it, else 504. */
  timeout: timeout.default(30_000),
  connectTimeout: timeout.default(5_000),
  /** Connection cap of the keep-alive pool toward this backend. */
  connections: z.number().int().min(1).max(10_000).default(256),
  /** Requests waiting for a pooled connection at most; past it the client gets 503 at once. */
  maxPending: z.number().int().min(1).max(1_000_000).default(1024),
  keepAliveTimeout: duration.default(4_000),
  auth: outboundAuthSchema.default({ type: 'none' }),
  tls: backendTlsSchema.optional(),
});

const stickyKey = z
  .string()
  .regex(/^(header:[A-Za-z0-9!#$%&'*+.^_`|~-]+|cookie:[^\s;=]+|ip|credential)$/, 'must be header:NAME, cookie:NAME, ip or credential');

export const stickySchema = z.strictObject({ key: stickyKey });

export const shadowRuleSchema = z.strictObject({
  /** Share of eligible requests mirrored to the other backend (exact counter, not random). */
  percent: percent.optional(),
  /** Mirror POST/PUT/PATCH/DELETE too (they then carry X-Cutover-Shadow: 1). */
  unsafe: z.boolean().optional(),
  /** Request bodies larger than this are not mirrored (skipped as body_too_large). */
  maxBodyBytes: size.optional(),
  /** Share of mirrored requests also replayed to the primary backend to learn noise. */
  baselinePercent: percent.optional(),
  /**
   * At most this many baseline replays per second on the route, whatever baselinePercent says: a few
   * hundred per 30 s slice already tell noise apart, and past that every replay is only more load on
   * the primary backend (10 % of a 5,000 req/s route is 500 extra calls a second) and on the proxy.
   */
  maxBaselinesPerSecond: z.number().int().min(1).max(1_000_000).optional(),
});

const mappingSchema = z.union([
  z.strictObject({ rename: jsonPath, to: jsonPath }),
  z.strictObject({ drop: jsonPath }),
  z.strictObject({ map: jsonPath, values: z.record(z.string(), z.unknown()) }),
]);

export const compareRuleSchema = z.strictObject({
  /** Response headers compared by presence and value (case-insensitive names). */
  headers: z.array(z.string().min(1)).optional(),
  /** Headers never compared, even when `headers` lists them or uses "*". */
  ignoreHeaders: z.array(z.string().min(1)).optional(),
  /** Body paths never compared: `$.meta.requestId`, `$.items[*].updatedAt`, `$..etag`. */
  ignore: z.array(jsonPath).optional(),
  /** Arrays compared as multisets. */
  unordered: z.array(jsonPath).optional(),
  tolerance: z.strictObject({ absolute: z.number().nonnegative().optional(), relative: z.number().nonnegative().optional() }).optional(),
  /** Applied to the new backend's body before comparing: how the new contract maps to the old. */
  mappings: z.array(mappingSchema).optional(),
  /** Module exporting `default (legacyBody, newBody, ctx) => { legacy, new }` run before the diff. */
  transform: z.string().min(1).optional(),
  /**
   * Paths (`$.user.ssn`) or field/header names (`ssn`, case-insensitive, anywhere) whose values are
   * replaced by "[redacted]" in examples, besides the built-in credential words.
   */
  sensitive: z.array(z.string().regex(/^(\$.*|[A-Za-z0-9_-]+)$/, 'must be a path starting with "$" (e.g. $.user.ssn) or a field name (e.g. ssn)')).optional(),
  /** Response bodies captured for comparison up to this size; larger are compared as truncated. */
  maxBodyBytes: size.optional(),
  /** `strict`: `1` vs `1.0` is a `number_format` difference (like Diffy); `lenient`: one number, equal. */
  numberFormat: z.enum(['strict', 'lenient']).optional(),
  /** `implied`: a JSON Content-Type without charset is UTF-8, so `; charset=utf-8` is no difference; `strict`: compare as sent. */
  jsonCharset: z.enum(['implied', 'strict']).optional(),
});

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT'] as const;

const routePath = z
  .string()
  .regex(/^\//, 'must start with "/"')
  .regex(/^[^?#\s]*$/, 'must not contain a query, fragment or spaces');

/** Per-gate thresholds; every key optional so `routes[].gates` can override just one. */
export const gatesSchema = z.strictObject({
  /** Comparisons needed since the last weight change before the mismatch gate judges. */
  minComparisons: z.number().int().min(0).optional(),
  /** Judged by the upper bound of a 95% Wilson interval; noise fields excluded. */
  maxMismatchRate: z.number().min(0).max(1).optional(),
  /** New's error rate minus legacy's in the same window (5xx, timeouts, connection errors). */
  maxErrorRateIncrease: z.number().min(0).max(1).optional(),
  /** New vs legacy p99; failing also needs a significant, material shift of the whole distribution. */
  maxLatencyRatio: z.number().min(1).optional(),
});

export const routeSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'must be 1-64 letters, digits, "_", "." or "-"')
    .refine((n) => n !== 'other', '"other" is reserved for requests that match no route'),
  match: z.strictObject({
    methods: z
      .array(z.string().transform((m) => m.toUpperCase()).pipe(z.enum(METHODS)))
      .min(1)
      .optional(),
    path: routePath,
  }),
  rewrite: z.strictObject({ path: routePath }).optional(),
  /** Initial percent of live traffic served by the new backend (0.01 resolution). */
  weight: percent.default(0),
  shadow: shadowRuleSchema.optional(),
  compare: compareRuleSchema.optional(),
  /** Workflow sequencing: shift only after these routes complete. */
  after: z.array(z.string()).optional(),
  /** Forward the client's legacy credential to the new backend too. */
  forwardCredentials: z.boolean().default(false),
  /** Gate thresholds for this route, merged over `cutover.gates`. */
  gates: gatesSchema.optional(),
});

/** `shadow.compareQueueBytes`'s default (the analysis uses it too when given none). */
export const DEFAULT_COMPARE_QUEUE_BYTES = 16 * 1024 * 1024;

export const shadowLimitsSchema = z.strictObject({
  /** Mirrors sent and not yet answered, across all routes; more are skipped as overload (a held mirror is not in flight). */
  maxInFlight: z.number().int().min(1).max(100_000).default(256),
  /** Budget for a mirrored call (and for baseline replays). */
  timeout: timeout.default(5_000),
  /**
   * How long a mirror waits for the client's answer to have been read from its backend before it is
   * sent anyway; 0 sends it together with the live request, so both backends see the same moment.
   * With large answers on one core, holding keeps the mirror's read out of the client's answer
   * (src/shadow/engine.ts). `auto` (the default) holds, up to 1 s, the mirrors of routes whose
   * compared pairs average 128 KiB or more (AUTO_HOLD_FROM_BYTES), and sends the others with the
   * request.
   */
  hold: z.union([z.literal('auto'), duration]).default('auto'),
  /** Connection cap of the separate pools used for mirrored calls. */
  connections: z.number().int().min(1).max(10_000).default(64),
  /** Worker threads running comparisons; 0 runs them on the main thread (time-sliced). */
  compareWorkers: z.number().int().min(0).max(64).default(defaultCompareWorkers()),
  /**
   * Bytes of captured answers waiting for (or in) comparison; mirrors past it are skipped as overload.
   * 16 MiB: eight pairs of 1 MB answers. With 1 MB answers flat out on one core the queue is full
   * and its pairs only wait; at 32 MiB Node 24 peaked 15–30 MB higher (README, "Node's heap").
   */
  compareQueueBytes: size.default(DEFAULT_COMPARE_QUEUE_BYTES),
  /** Event-loop bounds past which new mirrors are skipped as overload (see docs/metrics.md). */
  shedAt: z
    .strictObject({
      eventLoopDelay: duration.default(50),
      utilisation: z.number().min(0).max(1).default(0.95),
    })
    .default({ eventLoopDelay: 50, utilisation: 0.95 }),
});

/**
 * One core stays with the event loop; a few workers are enough for the rest (more only add memory).
 * A one-core host still gets one: it runs at the lowest priority (compare-worker.ts), so it only
 * takes the time the event loop leaves, where comparing on the main thread would take turns from it.
 */
export function defaultCompareWorkers(cores = availableParallelism()): number {
  return Math.max(1, Math.min(4, cores - 1));
}

const credentialSchema = z.union([
  z.strictObject({ header: z.string().min(1) }),
  z.strictObject({ bearer: z.literal(true) }),
  z.strictObject({ cookie: z.string().min(1) }),
  /** A query parameter, e.g. `?api_key=...`: stripped toward new and redacted wherever the proxy keeps a path. */
  z.strictObject({ query: z.string().min(1) }),
  /** HTTP Basic (`Authorization: Basic ...`). */
  z.strictObject({ basic: z.literal(true) }),
]);

const fingerprint = z.string().regex(/^fp_[0-9a-f]{16}$/, 'must be a fingerprint: fp_ and 16 hex digits (see `cutover fingerprint`)');

export const credentialMappingSchema = z.strictObject({
  fingerprint,
  /** OAuth2 scope / audience asked for on this credential's behalf (one token cached per pair). */
  scope: z.string().min(1).optional(),
  audience: z.string().min(1).optional(),
  /** A static header sent to the new backend instead of the backend-wide auth. */
  header: z.strictObject({ name: headerName, ...valueSource }).optional(),
});

export const credentialsSchema = z.strictObject({
  /** Where clients carry their legacy credential; never forwarded to the new backend. */
  legacy: z.array(credentialSchema).default([{ bearer: true }, { header: 'x-api-key' }]),
  /** Key of the HMAC that turns a credential into its fingerprint; created (mode 0600) when the file is missing. */
  fingerprintKeyFile: z.string().min(1).optional(),
  fingerprintKeyEnv: z.string().min(1).optional(),
  /** Fingerprints (`fp_` + 16 hex) the proxy answers with 401 itself. */
  revoked: z.array(fingerprint).default([]),
  /** The identity used toward the new backend for one legacy credential. */
  mappings: z.array(credentialMappingSchema).default([]),
  /** An unmapped credential is served by legacy only, never given the backend-wide identity on new. */
  requireMapping: z.boolean().default(false),
  /** Bounds of the inventory: distinct accepted credentials kept (least recently seen evicted), routes kept per credential. */
  inventory: z
    .strictObject({ maxCredentials: z.number().int().min(1).max(1_000_000).default(10_000), maxRoutesPerCredential: z.number().int().min(1).max(1000).default(32) })
    .default({ maxCredentials: 10_000, maxRoutesPerCredential: 32 }),
});

export const stateStoreSchema = z.strictObject({
  /** `file`: JSON written atomically (the embedded default); `memory`: lost on restart (tests, throwaway runs). */
  store: z.enum(['memory', 'file']).default('file'),
  /** The file store's path, relative to the config file. */
  path: z.string().default('state/cutover.json'),
});

const stepSchema = z.union([percent, z.strictObject({ pause: z.literal(true) })]);

export const DEFAULT_STEPS = [0, 1, 5, 25, 50, 100];

export const cutoverSchema = z.strictObject({
  /** Percent to the new backend at each step; `{ pause: true }` waits for a person to promote. */
  steps: z
    .array(stepSchema)
    .min(1)
    .default(DEFAULT_STEPS)
    .superRefine((steps, ctx) => {
      let previous = -1;
      steps.forEach((step, i) => {
        if (typeof step === 'number') {
          if (step <= previous) ctx.addIssue({ code: 'custom', path: [i], message: `must be above the step before it (${previous}); steps go up` });
          previous = step;
        } else if (i === 0 || i === steps.length - 1 || typeof steps[i - 1] !== 'number') {
          ctx.addIssue({ code: 'custom', path: [i], message: 'a pause step must sit between two percent steps' });
        }
      });
      if (steps[steps.length - 1] !== 100) ctx.addIssue({ code: 'custom', path: [steps.length - 1], message: 'the last step must be 100' });
    }),
  /** How often each route's evidence is judged (0 would spin the controller). */
  interval: duration.refine((ms) => ms >= 100, 'must be at least 100ms, e.g. 30s').default(30_000),
  /** Passing checks in a row before the next step (evidence accumulates since the weight change). */
  holdIntervals: z.number().int().min(1).max(1000).default(2),
  /** Failing checks in a row before an automatic rollback to step 0. */
  failureThreshold: z.number().int().min(1).max(1000).default(3),
  /** observe: evaluate and report every gate, never move a weight (dry run). */
  mode: z.enum(['auto', 'observe']).default('auto'),
  gates: gatesSchema.default({}),
  /** Rollbacks are POSTed here as JSON (fire-and-forget, 5 s timeout). */
  webhook: httpUrl.optional(),
  webhookFile: z.string().min(1).optional(),
  webhookEnv: z.string().min(1).optional(),
  /** Audit log of every weight/state change (JSON lines); unset keeps the latest 1000 in memory only. */
  audit: z.strictObject({ path: z.string().min(1).optional() }).default({}),
  /** Where weights, steps and states persist (the file store is the embedded default). */
  state: stateStoreSchema.default(stateStoreSchema.parse({})),
});

export const configSchema = z.strictObject({
  listen: listenSchema.default(listenSchema.parse({})),
  admin: adminSchema.default(adminSchema.parse({})),
  backends: z.strictObject({ legacy: backendSchema, new: backendSchema }),
  sticky: stickySchema.optional(),
  defaults: z
    .strictObject({ shadow: shadowRuleSchema.optional(), compare: compareRuleSchema.optional() })
    .default({}),
  shadow: shadowLimitsSchema.default(shadowLimitsSchema.parse({})),
  routes: z.array(routeSchema).default([]),
  credentials: credentialsSchema.default(credentialsSchema.parse({})),
  cutover: cutoverSchema.default(cutoverSchema.parse({})),
  log: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      /** One info line per request: route, method, path (no query), backend, status, duration, client. */
      access: z.boolean().default(false),
    })
    .default({ level: 'info', access: false }),
});

export type RawConfig = z.output<typeof configSchema>;
export type RouteConfig = z.output<typeof routeSchema>;
export type BackendConfig = z.output<typeof backendSchema>;
export type ShadowRule = z.output<typeof shadowRuleSchema>;
export type CompareRule = z.output<typeof compareRuleSchema>;
export type Mapping = z.output<typeof mappingSchema>;
export type CutoverConfig = z.output<typeof cutoverSchema>;
export type GatesRule = z.output<typeof gatesSchema>;
export type CredentialLocation = z.output<typeof credentialSchema>;
export type OutboundAuthConfig = z.output<typeof outboundAuthSchema>;
export type BackendTlsConfig = z.output<typeof backendTlsSchema>;
export type CredentialMappingConfig = z.output<typeof credentialMappingSchema>;
export type CredentialsConfig = z.output<typeof credentialsSchema>;
