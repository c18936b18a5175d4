/**
 * Every `cutover <command>` and admin path that a runbook or a doc names must exist: in the CLI's
 * usage text, or among the admin routes the proxy really registers. Data-driven: when a command
 * or route is added (and named in the docs), this test picks it up with no change.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRoutesOf } from '../src/admin/server.js';
import { configSchema, routeSchema } from '../src/config/schema.js';
import { startBackend, type TestBackend } from './helpers/backend.js';
import { baseConfig, CLI, startProxy, type InProcessProxy } from './helpers/proxy.js';

const ROOT = join(import.meta.dirname, '..');
const SOURCES = ['dashboards/alerts.yaml', 'README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

/** Commands named in code: `cutover X`, `npx cutover X`, and lines of fenced blocks starting so. */
function commandsIn(text: string): string[] {
  const found = new Set<string>();
  for (const m of text.matchAll(/`(?:npx )?cutover ([a-z][a-z-]*)/g)) found.add(m[1]);
  for (const block of text.matchAll(/```[a-z]*\n([\s\S]*?)```/g)) {
    for (const m of block[1].matchAll(/^\s*(?:\$ )?(?:npx )?cutover ([a-z][a-z-]*)/gm)) found.add(m[1]);
  }
  return [...found];
}

/** Admin paths named with a method (`GET /api/...`, GET `/metrics`) or as a code span starting /api/. */
function adminPathsIn(raw: string): { method: string | null; path: string }[] {
  // Alert templates write parameters as {{ $labels.route }}: one token, so the path stays whole.
  const text = raw.replace(/\{\{[^}]*\}\}/g, '{p}');
  const out: { method: string | null; path: string }[] = [];
  for (const m of text.matchAll(/\b(GET|POST|PUT|PATCH|DELETE) `?(\/[^\s`?"]+)/g)) out.push({ method: m[1], path: m[2] });
  // A bare `/api/` is the prefix, not an endpoint.
  for (const m of text.matchAll(/`(\/api\/[^\s`?"]+)`/g)) out.push({ method: null, path: m[1] });
  return out;
}

/** `/api/routes/{route}/diffs`, `{{ $labels.route }}`, `/api/routes/R/...` and `:route` all become one placeholder. */
function shape(path: string): string {
  return path
    .replace(/\{\{[^}]*\}\}/g, ':p')
    .replace(/\{[^}]*\}/g, ':p')
    .replace(/:[A-Za-z_]+/g, ':p')
    .replace(/\/[A-Z](?=\/|$)/g, '/:p')
    .replace(/[.,;:)]+$/, '');
}

/** Config keys a runbook names as levers: `shadow.maxInFlight`, `the route's shadow.percent`, `compare.maxBodyBytes`. */
function configKeysIn(text: string): string[] {
  const found = new Set<string>();
  for (const m of text.matchAll(/(?<![\w$.])((?:shadow|compare|cutover|credentials|listen|admin|state|defaults)(?:\.[a-zA-Z][a-zA-Z0-9]*)+)/g)) found.add(m[1]);
  // File names (`compare.md`, `cutover.json`) are not keys.
  return [...found].filter((k) => !/\.(md|json|ya?ml|ts|js)$/.test(k));
}

/** The zod object or value a dotted key leads to in `schema`, or undefined when some part is not a key there. */
function keyIn(schema: unknown, key: string): unknown {
  let at = schema as { def?: { type?: string; innerType?: unknown; shape?: Record<string, unknown> } } | undefined;
  for (const part of key.split('.')) {
    while (at?.def !== undefined && (at.def.type === 'default' || at.def.type === 'optional' || at.def.type === 'nullable' || at.def.type === 'prefault')) at = at.def.innerType as typeof at;
    const shape = at?.def?.type === 'object' ? at.def.shape : undefined;
    if (shape === undefined || !Object.hasOwn(shape, part)) return undefined;
    at = shape[part] as typeof at;
  }
  return at;
}

/** `/api/routes/:p/promote|pause` names two paths. */
function alternatives(path: string): string[] {
  const m = /^(.*\/)([a-z-]+(?:\|[a-z-]+)+)$/.exec(path);
  return m === null ? [path] : m[2].split('|').map((leaf) => m[1] + leaf);
}

/**
 * Paths the docs already name whose route exists in src/ but is not yet wired into the app.
 * Each entry must say who wires it; the test fails once it is registered, so the entry goes.
 */
const NOT_YET_WIRED = new Map<string, string>();

let legacy: TestBackend;
let proxy: InProcessProxy;
beforeAll(async () => {
  legacy = await startBackend();
  proxy = await startProxy(baseConfig(legacy.url, legacy.url));
});
afterAll(async () => {
  await proxy.close(100);
  await legacy.close();
});

describe('runbooks and docs name only what exists', () => {
  it('every `cutover <command>` is in the CLI usage text', () => {
    const usage = execFileSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' });
    const commands = new Set([...usage.matchAll(/^ {2}([a-z][a-z-]*)\b/gm)].map((m) => m[1]));
    expect(commands.has('run')).toBe(true);
    const missing: string[] = [];
    for (const source of SOURCES) {
      for (const command of commandsIn(readFileSync(join(ROOT, source), 'utf8'))) if (!commands.has(command)) missing.push(`${source}: cutover ${command}`);
    }
    expect(missing).toEqual([]);
  });

  it('every admin path is a registered admin route', () => {
    const routes = adminRoutesOf(proxy.admin).map((r) => ({ method: r.method, path: shape(r.url) }));
    const missing: string[] = [];
    let checked = 0;
    for (const source of SOURCES) {
      for (const { method, path } of adminPathsIn(readFileSync(join(ROOT, source), 'utf8'))) {
        for (const p of alternatives(shape(path))) {
          checked++;
          if (routes.some((r) => r.path === p && (method === null || r.method === method))) continue;
          if ([...NOT_YET_WIRED.keys()].some((k) => (method === null ? k.endsWith(` ${p}`) : k === `${method} ${p}`))) continue;
          missing.push(`${source}: ${method ?? ''} ${p}`.trim());
        }
      }
    }
    expect(checked).toBeGreaterThan(3);
    const wiredNow = [...NOT_YET_WIRED.keys()].filter((k) => routes.some((r) => `${r.method} ${r.path}` === k));
    expect(wiredNow, 'registered now: remove from NOT_YET_WIRED').toEqual([]);
    expect(missing).toEqual([]);
  });

  it('every config key a runbook names as a lever is a key of the config (top level, or a route\'s)', () => {
    const text = readFileSync(join(ROOT, 'dashboards/alerts.yaml'), 'utf8') + readFileSync(join(ROOT, 'docs/metrics.md'), 'utf8');
    const keys = configKeysIn(text);
    // The levers the overload runbook names, so the scan itself is known to work.
    expect(keys).toEqual(expect.arrayContaining(['shadow.maxInFlight', 'shadow.compareWorkers', 'shadow.compareQueueBytes', 'shadow.shedAt', 'shadow.percent']));
    const missing = keys.filter((key) => keyIn(configSchema, key) === undefined && keyIn(routeSchema, key) === undefined);
    expect(missing).toEqual([]);
  });
});
