/**
 * The one place that reads configuration from files and the environment: parses YAML or JSON,
 * validates against the schema, applies defaults, checks what spans fields (duplicate route names,
 * overlapping ports, references), and reads secrets from their files or variables.
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LineCounter, parseDocument } from 'yaml';
import type { z } from 'zod';
import { compileRules, routeRules, type CompiledRules, type RouteRules } from '../compare/index.js';
import { ConfigError, CutoverError } from '../errors.js';
import { DEFAULT_GATES } from '../cutover/gates.js';
import type { GateThresholds } from '../cutover/types.js';
import { maskUrls } from './mask.js';
import { credentialProblems, resolveCredentialPaths, secretDigests } from './credentials.js';
import { configSchema, type CompareRule, type Mapping, type RawConfig, type ShadowRule } from './schema.js';
import type { AdminToken } from '../admin/auth.js';

export type TransformFn = (legacy: unknown, candidate: unknown, ctx: { route: string; method: string; path: string }) => { legacy: unknown; candidate: unknown };

export interface ShadowSettings {
  percent: number;
  unsafe: boolean;
  maxBodyBytes: number;
  baselinePercent: number;
  maxBaselinesPerSecond: number;
}

export interface CompareSettings {
  headers: string[];
  ignoreHeaders: string[];
  ignore: string[];
  unordered: string[];
  tolerance: { absolute: number; relative: number };
  mappings: Mapping[];
  /** Absolute path of the transform module, when one is configured. */
  transformPath?: string;
  transform?: TransformFn;
  sensitive: string[];
  maxBodyBytes: number;
  /** `strict` (default): `1` vs `1.0` is a `number_format` difference; `lenient`: equal. */
  numberFormat?: 'strict' | 'lenient';
  /** `implied` (default): `application/json; charset=utf-8` equals `application/json`; `strict`: parameters as sent. */
  jsonCharset?: 'implied' | 'strict';
}

/** A route's comparison rules, compiled once when the config is loaded. */
export type { RouteRules };

export interface RouteSettings {
  name: string;
  /** Upper-case methods, or null for every method. */
  methods: string[] | null;
  path: string;
  rewrite?: string;
  weight: number;
  shadow: ShadowSettings;
  compare: CompareSettings;
  after: string[];
  forwardCredentials: boolean;
  /** `cutover.gates` with `routes[].gates` merged over it. */
  gates: GateThresholds;
  rules: RouteRules;
}

export interface Config extends Omit<RawConfig, 'routes' | 'defaults'> {
  routes: RouteSettings[];
  /** Defaults applied to requests that match no route (`other`). */
  defaults: { shadow: ShadowSettings; compare: CompareSettings; rules: RouteRules };
  /** The admin bearer token, read from admin.tokenFile or admin.tokenEnv. */
  adminToken?: string;
  /** Every admin token with its name and role (admin.tokens, plus admin.tokenFile/tokenEnv as operator "admin"). */
  adminTokens: AdminToken[];
  /** The rollback webhook URL, from cutover.webhook, webhookFile or webhookEnv. */
  cutoverWebhook?: string;
  /** Where the config came from, for messages. */
  source: string;
  /** Short SHA-256 of the validated config (`cutover_config_info{hash}`): equal files, equal hash. Secrets are not in it. */
  hash: string;
  /** A keyed digest of each secret the config names, by config path (config/credentials.ts `secretDigests`): compared within this process only. */
  secrets: Record<string, string>;
  /** The state file's absolute path (`cutover.state.path` resolved against the config's directory). */
  statePath: string;
}

export const BUILTIN_SHADOW: ShadowSettings = { percent: 100, unsafe: false, maxBodyBytes: 1024 * 1024, baselinePercent: 10, maxBaselinesPerSecond: 20 };
export const BUILTIN_COMPARE: CompareSettings = {
  headers: ['content-type'],
  ignoreHeaders: [],
  ignore: [],
  unordered: [],
  tolerance: { absolute: 0, relative: 0 },
  mappings: [],
  sensitive: [],
  maxBodyBytes: 1024 * 1024,
  numberFormat: 'strict',
  jsonCharset: 'implied',
};

/** Formats a zod path as it reads in the file: `routes[2].match.path`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out || '(root)';
}

function zodProblems(error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') message = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    return `${formatPath(issue.path)}: ${maskUrls(message)}`;
  });
}

function mergeShadow(...layers: (ShadowRule | undefined)[]): ShadowSettings {
  const out = { ...BUILTIN_SHADOW };
  for (const layer of layers) {
    if (!layer) continue;
    for (const [k, v] of Object.entries(layer)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

function mergeCompare(configDir: string, ...layers: (CompareRule | undefined)[]): CompareSettings {
  const out: CompareSettings = { ...BUILTIN_COMPARE, tolerance: { ...BUILTIN_COMPARE.tolerance } };
  let headersSet = false;
  for (const layer of layers) {
    if (!layer) continue;
    // Lists add up from defaults to the route, so a default ignore still applies to every route;
    // `headers` replaces the built-in list the first time it is given, then adds up too.
    if (layer.headers) {
      out.headers = headersSet ? [...out.headers, ...layer.headers] : [...layer.headers];
      headersSet = true;
    }
    if (layer.ignoreHeaders) out.ignoreHeaders = [...out.ignoreHeaders, ...layer.ignoreHeaders];
    if (layer.ignore) out.ignore = [...out.ignore, ...layer.ignore];
    if (layer.unordered) out.unordered = [...out.unordered, ...layer.unordered];
    if (layer.sensitive) out.sensitive = [...out.sensitive, ...layer.sensitive];
    if (layer.mappings) out.mappings = [...out.mappings, ...layer.mappings];
    if (layer.tolerance) out.tolerance = { ...out.tolerance, ...stripUndefined(layer.tolerance) };
    if (layer.maxBodyBytes !== undefined) out.maxBodyBytes = layer.maxBodyBytes;
    if (layer.numberFormat !== undefined) out.numberFormat = layer.numberFormat;
    if (layer.jsonCharset !== undefined) out.jsonCharset = layer.jsonCharset;
    if (layer.transform) out.transformPath = resolvePath(configDir, layer.transform);
  }
  out.headers = [...new Set(out.headers.map((h) => h.toLowerCase()))];
  out.ignoreHeaders = [...new Set(out.ignoreHeaders.map((h) => h.toLowerCase()))];
  return out;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

const PARAM = /:([A-Za-z_][A-Za-z0-9_]*)/g;

function crossFieldProblems(raw: RawConfig): string[] {
  const problems: string[] = [];
  const { listen, admin } = raw;
  const anyHost = (h: string) => h === '0.0.0.0' || h === '::' || h === '';
  if (listen.port !== 0 && listen.port === admin.port && (listen.host === admin.host || anyHost(listen.host) || anyHost(admin.host))) {
    problems.push(`admin.port: ${admin.port} is also listen.port; the data and admin listeners need different ports`);
  }
  if (admin.tokenFile && admin.tokenEnv) problems.push('admin: give tokenFile or tokenEnv, not both');
  if ([raw.cutover.webhook, raw.cutover.webhookFile, raw.cutover.webhookEnv].filter(Boolean).length > 1) {
    problems.push('cutover: give one of webhook, webhookFile or webhookEnv');
  }
  const seen = new Map<string, number>();
  raw.routes.forEach((route, i) => {
    const first = seen.get(route.name);
    if (first !== undefined) problems.push(`routes[${i}].name: "${route.name}" is already the name of routes[${first}]; route names must be unique`);
    else seen.set(route.name, i);
    if (route.rewrite) {
      const params = new Set([...route.match.path.matchAll(PARAM)].map((m) => m[1]));
      for (const m of route.rewrite.path.matchAll(PARAM)) {
        if (!params.has(m[1])) problems.push(`routes[${i}].rewrite.path: ":${m[1]}" is not a parameter of match.path`);
      }
      if (route.rewrite.path.includes('*') && !route.match.path.includes('*')) {
        problems.push(`routes[${i}].rewrite.path: "*" is used but match.path has no "*"`);
      }
    }
    const star = route.match.path.indexOf('*');
    if (star !== -1 && star !== route.match.path.length - 1) problems.push(`routes[${i}].match.path: "*" may only end the path`);
  });
  raw.routes.forEach((route, i) => {
    route.after?.forEach((dep, j) => {
      if (!seen.has(dep)) problems.push(`routes[${i}].after[${j}]: no route is named "${dep}"`);
      else if (dep === route.name) problems.push(`routes[${i}].after[${j}]: a route cannot wait for itself`);
    });
  });
  // Routes waiting for each other in a ring would wait forever.
  const waitsFor = new Map(raw.routes.map((r) => [r.name, (r.after ?? []).filter((d) => d !== r.name && seen.has(d))]));
  const done = new Set<string>();
  const cycle = (name: string, path: string[]): string[] | null => {
    if (path.includes(name)) return [...path.slice(path.indexOf(name)), name];
    if (done.has(name)) return null;
    for (const dep of waitsFor.get(name) ?? []) {
      const found = cycle(dep, [...path, name]);
      if (found) return found;
    }
    done.add(name);
    return null;
  };
  for (const [i, route] of raw.routes.entries()) {
    const ring = cycle(route.name, []);
    if (ring) {
      problems.push(`routes[${i}].after: the routes wait for each other in a ring (${ring.join(' -> ')}), so none would ever start`);
      break;
    }
  }
  return problems;
}

function readSecret(file: string | undefined, env: string | undefined, configDir: string, path: string, problems: string[]): string | undefined {
  try {
    if (file) {
      const value = readFileSync(resolvePath(configDir, file), 'utf8').trim();
      if (!value) problems.push(`${path}.tokenFile: ${file} is empty`);
      return value || undefined;
    }
  } catch (err) {
    problems.push(`${path}.tokenFile: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    return undefined;
  }
  if (env) {
    const value = process.env[env]?.trim();
    if (!value) problems.push(`${path}.tokenEnv: environment variable ${env} is not set`);
    return value || undefined;
  }
  return undefined;
}

function adminTokensOf(raw: RawConfig, single: string | undefined, configDir: string, problems: string[]): AdminToken[] {
  const tokens: AdminToken[] = single === undefined ? [] : [{ name: 'admin', role: 'operator', secret: single }];
  const names = new Set(tokens.map((t) => t.name));
  raw.admin.tokens.forEach((t, i) => {
    const path = `admin.tokens[${i}]`;
    if (names.has(t.name)) problems.push(`${path}.name: "${t.name}" is used twice${t.name === 'admin' ? ' (admin.tokenFile/tokenEnv is the token named "admin")' : ''}`);
    names.add(t.name);
    if (!t.tokenFile === !t.tokenEnv) {
      problems.push(`${path}: give tokenFile or tokenEnv (exactly one)`);
      return;
    }
    const secret = readSecret(t.tokenFile, t.tokenEnv, configDir, path, problems);
    if (secret === undefined) return;
    if (tokens.some((o) => o.secret === secret)) problems.push(`${path}: the same secret is already another token's; each token needs its own`);
    tokens.push({ name: t.name, role: t.role, secret });
  });
  return tokens;
}

/** The webhook URL from its file or variable; checked like `cutover.webhook`. */
function webhookSecret(file: string | undefined, env: string | undefined, configDir: string, problems: string[]): string | undefined {
  const where = file ? 'cutover.webhookFile' : 'cutover.webhookEnv';
  const before = problems.length;
  const value = readSecret(file, env, configDir, 'cutover', problems);
  // readSecret names tokenFile/tokenEnv; say which webhook key it was.
  for (let i = before; i < problems.length; i++) problems[i] = problems[i].replace(/^cutover\.token(File|Env)/, where);
  if (value === undefined) return undefined;
  try {
    const url = new URL(value);
    if (url.protocol === 'http:' || url.protocol === 'https:') return value;
  } catch {
    // reported below
  }
  problems.push(`${where}: does not hold an http:// or https:// URL`);
  return undefined;
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Validates a parsed config object. Throws ConfigError listing every problem found.
 * `configDir` anchors relative paths (token files, transform modules).
 */
export function validateConfig(input: unknown, source = 'config', configDir = process.cwd()): Config {
  const parsed = configSchema.safeParse(input ?? {});
  if (!parsed.success) throw new ConfigError(zodProblems(parsed.error), source);
  const raw = parsed.data;
  // Before paths are made absolute: the same file in another directory (another replica) has the same hash.
  const hash = createHash('sha256').update(JSON.stringify(raw)).digest('hex').slice(0, 12);
  resolveCredentialPaths(raw, configDir);
  const problems = [...crossFieldProblems(raw), ...credentialProblems(raw)];
  const adminToken = readSecret(raw.admin.tokenFile, raw.admin.tokenEnv, configDir, 'admin', problems);
  const adminTokens = adminTokensOf(raw, adminToken, configDir, problems);
  const cutoverWebhook = raw.cutover.webhook ?? webhookSecret(raw.cutover.webhookFile, raw.cutover.webhookEnv, configDir, problems);
  const statePath = resolvePath(configDir, raw.cutover.state.path);
  if (raw.cutover.state.store === 'file' && isDirectory(statePath)) problems.push(`cutover.state.path: ${statePath} is a directory; name the state file itself (e.g. state/cutover.json)`);
  const secrets = problems.length ? {} : secretDigests(raw, configDir);

  // Each route's rules are compiled here, once: a bad path is a config problem, not a crash later,
  // and everything downstream (routing, the analysis) shares this one compiled copy.
  const compile = (compare: CompareSettings, where: string): RouteRules => {
    try {
      return routeRules(compileRules(compare));
    } catch (err) {
      // With the problems above, so that `cutover check` names them all at once.
      problems.push(`${where}.${(err as Error).message}`);
      return EMPTY_RULES;
    }
  };
  const routes: RouteSettings[] = raw.routes.map((r, i) => {
    const compare = mergeCompare(configDir, raw.defaults.compare, r.compare);
    return {
    name: r.name,
    methods: r.match.methods ? [...new Set(r.match.methods)] : null,
    path: r.match.path,
    rewrite: r.rewrite?.path,
    weight: Math.round(r.weight * 100) / 100,
    shadow: mergeShadow(raw.defaults.shadow, r.shadow),
    compare,
    after: r.after ?? [],
    forwardCredentials: r.forwardCredentials,
    gates: { ...DEFAULT_GATES, ...stripUndefined(raw.cutover.gates), ...stripUndefined(r.gates ?? {}) },
    rules: compile(compare, `routes[${i}]`),
    };
  });
  const defaultCompare = mergeCompare(configDir, raw.defaults.compare);
  const defaultRules = compile(defaultCompare, 'defaults');
  if (problems.length) throw new ConfigError(problems, source);
  return {
    ...raw,
    routes,
    defaults: { shadow: mergeShadow(raw.defaults.shadow), compare: defaultCompare, rules: defaultRules },
    cutover: { ...raw.cutover, audit: { path: raw.cutover.audit.path && resolvePath(configDir, raw.cutover.audit.path) } },
    adminToken,
    adminTokens,
    cutoverWebhook,
    source,
    hash,
    secrets,
    statePath,
  };
}

const EMPTY_RULES = routeRules(compileRules(BUILTIN_COMPARE));

/** Aliases (`*name`) a config may expand: enough for shared blocks, far too few for an alias bomb. */
export const MAX_YAML_ALIASES = 100;

/** Parses YAML (JSON is valid YAML) and reports syntax errors with their (1-based) line. */
export function parseConfigText(text: string, source: string): unknown {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter });
  if (doc.errors.length) {
    throw new ConfigError(
      doc.errors.map((e) => `line ${lineCounter.linePos(e.pos[0]).line}: ${maskUrls(e.message.split('\n')[0])}`),
      source,
    );
  }
  try {
    return doc.toJS({ maxAliasCount: MAX_YAML_ALIASES });
  } catch (err) {
    // yaml throws a ReferenceError past maxAliasCount (and for an alias to nothing).
    const message = (err as Error).message.split('\n')[0];
    const bomb = /alias count/i.test(message);
    throw new ConfigError([bomb ? `(root): aliases expand to more than ${MAX_YAML_ALIASES} times their size; a config this repetitive is refused, write it out or use fewer aliases` : `(root): ${maskUrls(message)}`], source);
  }
}

/** Loads and validates a config file, then loads any transform modules it names. */
export async function loadConfig(file: string): Promise<Config> {
  const path = resolvePath(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CutoverError('CUTOVER_CONFIG_UNREADABLE', `Cannot read config file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'}); check the path given to --config or CUTOVER_CONFIG.`);
  }
  const config = validateConfig(parseConfigText(text, file), file, dirname(path));
  await loadTransforms(config);
  return config;
}

/** Imports each distinct transform module once and attaches its default export. */
export async function loadTransforms(config: Config): Promise<void> {
  const cache = new Map<string, TransformFn>();
  const problems: string[] = [];
  const targets = [
    { where: 'defaults.compare.transform', settings: config.defaults.compare, owner: config.defaults },
    ...config.routes.map((r, i) => ({ where: `routes[${i}].compare.transform`, settings: r.compare, owner: r })),
  ];
  for (const { where, settings, owner } of targets) {
    const path = settings.transformPath;
    if (!path) continue;
    let fn = cache.get(path);
    if (!fn) {
      try {
        const mod = (await import(pathToFileURL(path).href)) as { default?: unknown };
        if (typeof mod.default !== 'function') {
          problems.push(`${where}: ${path} must export a default function`);
          continue;
        }
        fn = mod.default as TransformFn;
        cache.set(path, fn);
      } catch (err) {
        problems.push(`${where}: cannot load ${path} (${(err as Error).message.split('\n')[0]})`);
        continue;
      }
    }
    settings.transform = fn;
    // The compiled matchers stay; only the transform joins them (baseline rules never use it).
    owner.rules = { ...owner.rules, shadow: Object.freeze({ ...owner.rules.shadow, transform: fn, transformName: path }) };
  }
  if (problems.length) throw new ConfigError(problems, config.source);
}

/** The config path from --config or CUTOVER_CONFIG. */
export function configPathFromEnv(flag: string | undefined): string | undefined {
  return flag ?? process.env.CUTOVER_CONFIG;
}
