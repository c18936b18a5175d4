/**
 * The controller in a real `cutover run` process (issue 11): the CLI's levers against it, and
 * `kill -9` mid-rollout followed by a restart that resumes at the same weight and step (file store).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startBackend, type TestBackend } from './helpers/backend.js';
import { baseConfig, CLI, spawnProxy, type ChildProxy } from './helpers/proxy.js';

const TOKEN = 'run-operator-token';
let dir: string;
let tokenFile: string;
let legacy: TestBackend;
let next: TestBackend;
const children: ChildProxy[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cutover-run-'));
  tokenFile = join(dir, 'admin.token');
  writeFileSync(tokenFile, `${TOKEN}\n`);
  legacy = await startBackend();
  next = await startBackend();
});
afterAll(async () => {
  for (const c of children) await c.stop();
  await legacy.close();
  await next.close();
});

function config(): Record<string, unknown> {
  return baseConfig(legacy.url, next.url, {
    admin: { host: '127.0.0.1', port: 0, tokenFile },
    routes: [{ name: 'api', match: { path: '/api/*' }, shadow: { percent: 100, baselinePercent: 0 } }],
    cutover: {
      steps: [0, 25, 50, 100],
      // A fast check that can never pass on its own: only the levers move this route.
      interval: '200ms',
      gates: { minComparisons: 100_000 },
      state: { store: 'file', path: join(dir, 'state.json') },
      audit: { path: join(dir, 'audit.jsonl') },
    },
  });
}

async function start(): Promise<ChildProxy> {
  const child = await spawnProxy(config());
  children.push(child);
  return child;
}

function cutover(p: ChildProxy, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args, '--admin', p.adminUrl, '--token-file', tokenFile], { env: { ...process.env, CUTOVER_ADMIN_TOKEN: '' }, timeout: 20_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

async function routeState(p: ChildProxy): Promise<{ weight: number; step: number; state: string }> {
  const res = await request(`${p.adminUrl}/api/state`, { headers: { authorization: `Bearer ${TOKEN}` } });
  const body = (await res.body.json()) as { routes: { route: string; weight: number; step: number; state: string }[] };
  return body.routes.find((r) => r.route === 'api')!;
}

/** Live requests (no X-Cutover-Shadow) each backend received for `n` calls through the proxy. */
async function split(p: ChildProxy, n: number): Promise<{ legacy: number; new: number }> {
  const live = (b: TestBackend) => b.received.filter((r) => r.headers['x-cutover-shadow'] === undefined).length;
  const l0 = live(legacy);
  const n0 = live(next);
  for (let i = 0; i < n; i++) {
    const res = await request(`${p.dataUrl}/api/item/${i}`);
    await res.body.dump();
    expect(res.statusCode).toBe(200);
  }
  return { legacy: live(legacy) - l0, new: live(next) - n0 };
}

describe('cutover run with the controller', () => {
  let p: ChildProxy;

  it('the CLI pulls every lever against a running proxy; report exits 3 while NOT READY', async () => {
    p = await start();
    const steps: [string[], number, RegExp][] = [
      [['status'], 0, /api\s+shadow\s+0\s+0%/],
      [['promote', '--route', 'api'], 0, /^api: shifting at 25% \(step 1\)$/m],
      [['weight', '25', '--route', 'api'], 0, /^api: paused at 25% \(step 1\); the controller is paused for it$/m],
      [['resume', '--route', 'api'], 0, /^api: shifting at 25%/m],
      [['pause', '--route', 'api'], 0, /^api: paused at 25%/m],
      [['rollback', '--route', 'api', '--reason', 'pager'], 0, /^api: rolled_back at 0% \(step 0\)$/m],
      [['bypass', 'on'], 0, /^bypass ON/m],
      [['status'], 0, /BYPASS ON/],
      [['bypass', 'off'], 0, /^bypass off/m],
      [['report'], 3, /^# Cutover readiness: NOT READY/],
    ];
    for (const [args, code, out] of steps) {
      const r = await cutover(p, args);
      expect(r.stderr, args.join(' ')).toBe('');
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.stdout, args.join(' ')).toMatch(out);
    }
    const audit = readFileSync(join(dir, 'audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { action: string; who: string; why: string });
    expect(audit.map((e) => e.action)).toEqual(['promote', 'weight', 'resume', 'pause', 'rollback', 'bypass-on', 'bypass-off']);
    // admin.tokenFile is one operator token named "admin": the audit log names it.
    expect(new Set(audit.map((e) => e.who))).toEqual(new Set(['admin']));
    expect(audit.find((e) => e.action === 'rollback')?.why).toBe('pager');
  });

  it('kill -9 mid-rollout and a restart resume at the same weight and step, and traffic is split by it', async () => {
    for (const _ of [1, 2]) expect((await cutover(p, ['promote', '--route', 'api'])).code).toBe(0);
    expect(await routeState(p)).toMatchObject({ weight: 50, step: 2, state: 'shifting' });
    expect(await split(p, 20)).toEqual({ legacy: 10, new: 10 });

    p.child.kill('SIGKILL');
    expect(await p.exited).toBeNull();
    p = await start();
    expect(await routeState(p)).toMatchObject({ weight: 50, step: 2, state: 'shifting' });
    expect(await split(p, 20)).toEqual({ legacy: 10, new: 10 });
    const r = await cutover(p, ['status']);
    expect(r.stdout).toMatch(/api\s+shifting\s+2\s+50%/);
  });
});
