import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI } from './helpers/proxy.js';
import { startLeverServer, type LeverServer } from './helpers/levers.js';

let s: LeverServer;
let tokenFile: string;
let viewerFile: string;

beforeAll(async () => {
  s = await startLeverServer();
  const dir = mkdtempSync(join(tmpdir(), 'cutover-cli-'));
  tokenFile = join(dir, 'operator.token');
  viewerFile = join(dir, 'viewer.token');
  writeFileSync(tokenFile, 'operator-secret\n');
  writeFileSync(viewerFile, 'viewer-secret\n');
});
afterAll(async () => {
  await s.close();
});

/** Runs the real CLI as a child process (asynchronously: the admin server lives in this process). */
function cutover(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, CUTOVER_ADMIN_TOKEN: '', ...env }, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

const admin = () => ['--admin', s.url, '--token-file', tokenFile];

describe('cutover admin clients (child processes against a real admin server)', () => {
  it('status prints a readable table, and --json the API answer', async () => {
    s.traffic.add('get-widget', 100);
    s.clock.t += 30_000;
    await s.controller.tick();
    const r = await cutover(['status', ...admin()]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^mode auto/);
    expect(r.stdout).toMatch(/ROUTE\s+STATE\s+STEP\s+WEIGHT\s+GATES\s+EVIDENCE SINCE/);
    expect(r.stdout).toMatch(/get-widget\s+shifting\s+1\s+1%/);
    expect(r.stdout).toMatch(/list-widgets\s+shadow\s+0\s+0%\s+wait wait wait wait/);
    expect(r.stdout).toMatch(/maxMismatchRate\s+n\/a\s+5\.00%\s+no_data/);
    const j = await cutover(['status', '--route', 'list-widgets', '--json', ...admin()]);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout).routes.map((x: { route: string }) => x.route)).toEqual(['list-widgets']);
  });

  it('status says when mirrors to a backend are skipped, since when and why', async () => {
    const calm = await cutover(['status', ...admin()]);
    expect(calm.stdout).not.toMatch(/MIRRORS TO/);
    const detail = 'the shadow backend new has answered nothing for 2.5 s while 64 mirrors wait: mirrors to it are skipped as shadow_down, and probed one at a time, until it answers';
    s.breakers.new = { open: true, since: '2026-12-02T14:02:11.000Z', reason: 'silence', detail, stalls: 1 };
    try {
      const r = await cutover(['status', ...admin()]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`MIRRORS TO NEW SKIPPED since 2026-12-02T14:02:11.000Z: ${detail}`);
      expect(r.stdout).not.toMatch(/MIRRORS TO LEGACY/);
      const j = await cutover(['status', '--json', ...admin()]);
      expect(JSON.parse(j.stdout).shadowBackends.new).toEqual(s.breakers.new);
    } finally {
      s.breakers.new = { open: false, stalls: 1 };
    }
  });

  it('levers: promote, pause, resume, weight, rollback, bypass; the audit log names the token and the reason', async () => {
    const steps: [string[], RegExp][] = [
      [['promote', '--route', 'list-widgets', '--reason', 'canary fine'], /^list-widgets: shifting at 1% \(step 1\)$/m],
      [['pause', '--route', 'list-widgets'], /^list-widgets: paused at 1%/m],
      [['resume', '--route', 'list-widgets'], /^list-widgets: shifting at 1%/m],
      [['weight', '25', '--route', 'list-widgets'], /^list-widgets: paused at 25% \(step 3\); the controller is paused for it$/m],
      [['promote', '--route', 'list-widgets', '--full'], /^list-widgets: shifting at 100% \(step 5\)$/m],
      [['rollback', '--route', 'list-widgets', '--reason', 'pager'], /^list-widgets: rolled_back at 0% \(step 0\)$/m],
      [['bypass', 'on'], /^bypass ON/m],
      [['bypass', 'off'], /^bypass off/m],
    ];
    for (const [args, out] of steps) {
      const r = await cutover([...args, ...admin()]);
      expect(r.stderr, args.join(' ')).toBe('');
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(out);
    }
    const entries = await s.audit.read(20);
    expect(entries.filter((e) => e.route !== 'get-widget').map((e) => `${e.who}:${e.action}:${e.why}`)).toEqual([
      'alice:promote:canary fine',
      'alice:pause:pause by alice',
      'alice:resume:resume by alice',
      'alice:weight:weight by alice',
      'alice:promote:promote by alice',
      'alice:rollback:pager',
      'alice:bypass-on:bypass on',
      'alice:bypass-off:bypass off',
    ]);
  });

  it('report: markdown, and exit 3 when NOT READY', async () => {
    const r = await cutover(['report', ...admin()]);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/^# Cutover readiness: NOT READY/);
    const j = await cutover(['report', '--json', ...admin()]);
    expect(j.code).toBe(3);
    expect(JSON.parse(j.stdout)).toMatchObject({ verdict: 'NOT READY', configHash: 'cafe1234' });
    // One route's report: only its section, and its own verdict.
    const one = await cutover(['report', '--route', 'get-widget', '--json', ...admin()]);
    expect(JSON.parse(one.stdout).routes.map((x: { route: string }) => x.route)).toEqual(['get-widget']);
    const md = await cutover(['report', '--route', 'get-widget', ...admin()]);
    expect(md.stdout).toContain('## get-widget');
    expect(md.stdout).not.toContain('## list-widgets');
    const unknown = await cutover(['report', '--route', 'nope', ...admin()]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/nope/);
  });

  it('exit 2 on bad usage, 1 on runtime failures, each one sentence', async () => {
    const noRoute = await cutover(['promote', ...admin()]);
    expect(noRoute).toMatchObject({ code: 2, stdout: '' });
    expect(noRoute.stderr).toBe('cutover: "promote" needs --route NAME; run "cutover --help".\n');
    expect((await cutover(['weight', 'lots', '--route', 'get-widget', ...admin()])).code).toBe(2);
    // Number('') is 0 and Number('0x10') 16: an unset "$PCT" must not set a route to 0 %.
    for (const bad of ['', '0x10', ' 5', '1e1', '0.004']) expect((await cutover(['weight', bad, '--route', 'get-widget', ...admin()])).code).toBe(2);
    expect((await cutover(['bypass', 'maybe', ...admin()])).code).toBe(2);
    expect((await cutover(['status', '--frobnicate', ...admin()])).code).toBe(2);
    const unknown = await cutover(['pause', '--route', 'nope', ...admin()]);
    expect(unknown).toMatchObject({ code: 1, stderr: 'cutover: No route is named "nope"; see the routes in the config.\n' });
    const forbidden = await cutover(['pause', '--route', 'get-widget', '--admin', s.url, '--token-file', viewerFile]);
    expect(forbidden).toMatchObject({ code: 1, stderr: 'cutover: This needs an operator token.\n' });
    const wrong = await cutover(['status', '--admin', s.url], { CUTOVER_ADMIN_TOKEN: 'not-a-token' });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/The token given was refused/);
    const noToken = await cutover(['status', '--admin', s.url]);
    expect(noToken.code).toBe(1);
    expect(noToken.stderr).toMatch(/Pass --token-file or set CUTOVER_ADMIN_TOKEN\.\n$/);
    const viaEnv = await cutover(['status', '--admin', s.url], { CUTOVER_ADMIN_TOKEN: 'viewer-secret' });
    expect(viaEnv.code).toBe(0);
    const down = await cutover(['status', '--admin', 'http://127.0.0.1:1', '--token-file', tokenFile]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^cutover: Cannot reach the admin API at http:\/\/127\.0\.0\.1:1 \(ECONNREFUSED\); is the proxy running, and is --admin right\?\n$/);
    expect(down.stderr.split('\n')).toHaveLength(2);
  });
});
