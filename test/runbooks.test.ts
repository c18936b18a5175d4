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

/** `/api/routes/:p/promote|pause` names two paths. */
function alternatives(path: string): string[] {
  const m = /^(.*\/)([a-z-]+(?:\|[a-z-]+)+)$/.exec(path);
  return m === null ? [path] : m[2].split('|').map((leaf) => m[1] + leaf);
}

/**
 * Paths the docs already name whose route exists in src/ but is not yet wired into the app.
 * Each entry must say who wires it; the test fails once it is registered, so the entry goes.
 */
const LEVERS_WIRING = 'registerLeverRoutes (src/admin/levers.ts), wired into app.ts with createCutover by the controller work (issue 11)';
const NOT_YET_WIRED = new Map<string, string>([
  ['GET /api/state', LEVERS_WIRING],
  ...['promote', 'pause', 'resume', 'rollback', 'weight'].map((lever): [string, string] => [`POST /api/routes/:p/${lever}`, LEVERS_WIRING]),
  ['POST /api/bypass', LEVERS_WIRING],
  ['GET /api/audit', LEVERS_WIRING],
  ['GET /api/report', LEVERS_WIRING],
]);

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
});
