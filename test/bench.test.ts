/**
 * Proves the benchmark harness works end to end — backends, proxies, load, RSS sampling, report —
 * without asserting anything about speed: CI machines are too noisy for timing assertions, and the
 * numbers that matter are ratios read by people from a full `npm run bench`.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { HEAP_FLAGS, TUNING_ENV } from '../src/cli/heap.js';
// A tuning variable set in the runner's environment would win over the build's (and fail the check of them).
import { untunedEnv } from './helpers/proxy.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const runner = join(root, 'bench', 'run.mjs');
// The pass-through scenario runs the built CLI (`npm test` builds first via pretest).
const cli = join(root, 'dist', 'cli', 'main.js');
// Every scenario: the shadow ones also prove the client sees no error whatever its mirror does.
const scenarios = [
  'direct',
  'http-proxy',
  'nginx',
  'nginx-mirror',
  'passthrough',
  'shadow',
  'shadow-all',
  'shadow-all-unique',
  'shadow-slow',
  'shadow-dead',
  'shadow-big',
  'shadow-reset',
  'shadow-hang',
  'shadow-garbage',
  'nginx-mirror-slow',
  'nginx-mirror-dead',
  'nginx-mirror-big',
  'nginx-mirror-reset',
  'nginx-mirror-hang',
  'passthrough-1mb',
  'shadow-1mb',
  'passthrough-1mb-open',
  'shadow-1mb-open',
];
const nginxInstalled = ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx'].some((f) => existsSync(f));

interface Row {
  scenario: string;
  proxy: string;
  error?: string;
  skipped?: string;
  requests: number;
  rps: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  latencyMs: { p50: number; p99: number; p999: number };
  rssMB: { start: number | null; peak: number | null; end: number | null };
  proxyTuning?: { flags: string[]; env: Record<string, string | null> };
  proxyCpu: { usPerRequest: number | null } | null;
  /** Cores the load generator and the backends used while the row was measured. */
  restCpu?: { generatorCores: number | null; backendCores: number | null };
  proxyCounters?: Record<string, number>;
  /** Which client read the row, and for open (fixed-rate) rows the rate and the requests sent. */
  generator?: string;
  offeredRps?: number;
  sent?: number;
  /** The config a cutover row ran with (JSON of the YAML written for it). */
  config?: { shadow?: { shedAt?: unknown } };
}
interface Report {
  machine: { cpus: number; node: string; date: string };
  params: { quick: boolean; connections: number; scenarios: string[]; nodeProxyFlags: string[]; nodeProxyEnv: Record<string, string> };
  rows: Row[];
  ratios: { perScenario: Record<string, { rpsVsHttpProxy: number | null; rpsVsDirect: number | null }>; fullSpeed: Record<string, number | null> };
  targets: { name: string; verdict: string }[];
  processes: { name: string; pid: number }[];
}

function run(args: string[], timeoutMs: number, env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    execFile(process.execPath, [runner, ...args], { cwd: root, timeout: timeoutMs, killSignal: 'SIGINT', env: untunedEnv(env) }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolvePromise({ code, stdout, stderr });
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntilGone(pids: number[], deadlineMs: number): Promise<number[]> {
  const deadline = Date.now() + deadlineMs;
  let left = pids.filter(alive);
  while (left.length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    left = left.filter(alive);
  }
  return left;
}

describe('bench/run.mjs', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cutover-bench-test-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it(`measures ${scenarios.join(', ')} side by side and writes the report`, async () => {
    expect(existsSync(cli), `${cli} missing: run npm run build`).toBe(true);
    const out = join(dir, 'latest.json');
    const { code, stdout, stderr } = await run(['--quick', '--duration', '1', '--scenario', scenarios.join(','), '--out', out], 270_000);
    expect(code, stderr).toBe(0);

    const report = JSON.parse(readFileSync(out, 'utf8')) as Report;
    expect(report.machine.cpus).toBeGreaterThan(0);
    expect(report.machine.node).toBe(process.version);
    expect(report.params).toMatchObject({ quick: true, connections: 50, scenarios });
    // The proxies run with the heap flags and malloc arenas the build under test gives itself (src/cli/heap.ts), not a copy of them.
    expect(report.params.nodeProxyFlags).toEqual([...HEAP_FLAGS]);
    expect(report.params.nodeProxyEnv).toEqual({ ...TUNING_ENV });
    expect(report.rows.map((r) => r.scenario)).toEqual(scenarios);
    for (const row of report.rows) {
      expect(row.error, `${row.scenario}: ${row.error}`).toBeUndefined();
      if (row.proxy === 'nginx') {
        // A peer: it only has to run when installed (its clients may well wait for a faulty mirror).
        if (nginxInstalled) expect(row.skipped, `${row.scenario}: ${row.skipped}`).toBeUndefined();
        else expect(row.skipped).toMatch(/nginx not installed/);
        continue;
      }
      expect(row.skipped, `${row.scenario}: ${row.skipped}`).toBeUndefined();
      expect(row.requests, row.scenario).toBeGreaterThan(0);
      expect(row.errors, row.scenario).toBe(0);
      expect(row.timeouts, row.scenario).toBe(0);
      expect(row.non2xx, row.scenario).toBe(0);
      expect(row.latencyMs.p99, row.scenario).toBeGreaterThan(0);
      // What paced the row: the load generator always worked, and the backends did whenever a request went through.
      expect(row.restCpu?.generatorCores, row.scenario).toBeGreaterThan(0);
      if (process.platform === 'linux') expect(row.restCpu?.backendCores, row.scenario).toBeGreaterThan(0);
      if (row.proxy !== 'none' && process.platform === 'linux') {
        expect(row.rssMB.peak, row.scenario).toBeGreaterThan(0);
        expect(row.proxyCpu?.usPerRequest, row.scenario).toBeGreaterThan(0);
        // The Node proxies' own /proc says they ran with the build's flags and malloc tuning.
        expect(row.proxyTuning, row.scenario).toEqual({ flags: [...HEAP_FLAGS], env: { ...TUNING_ENV } });
      }
    }
    // The proxy's own metrics agree that it served the load (scraped from its admin port).
    const passthrough = report.rows.find((r) => r.scenario === 'passthrough');
    expect(passthrough?.proxyCounters?.['requests.primary.2xx']).toBeGreaterThanOrEqual(passthrough?.requests ?? Infinity);
    // …and how often its garbage collector ran, by kind (young-generation collections always run under load).
    expect(passthrough?.proxyCounters?.['gc.minor']).toBeGreaterThan(0);
    // Ratios come from the same run: every proxied row is compared with http-proxy and with direct.
    expect(report.ratios.perScenario['http-proxy'].rpsVsHttpProxy).toBe(1);
    expect(report.ratios.perScenario['http-proxy'].rpsVsDirect).toBeGreaterThan(0);
    expect(report.targets.length).toBeGreaterThan(0);
    // Each faulty mirror is held against the healthy one, and what was not compared is counted.
    for (const fault of ['shadow-big', 'shadow-reset', 'shadow-hang', 'shadow-slow', 'shadow-dead', 'shadow-garbage']) {
      expect(report.targets.map((t) => t.name)).toContain(`${fault} client req/s ≥ 0.75× shadow`);
    }
    // The full-speed figures come from the row that sheds nothing: every mirror there was compared.
    expect(report.rows.find((r) => r.scenario === 'shadow-all')?.config?.shadow?.shedAt).toEqual({ utilisation: 1, eventLoopDelay: 0 });
    const every = report.rows.find((r) => r.scenario === 'shadow-all')?.proxyCounters ?? {};
    expect(every['comparisons.mismatch'] ?? 0).toBeGreaterThan(0);
    expect(every['overloadBy.event_loop']).toBe(0);
    expect(report.targets.map((t) => t.name)).toContain('shadowed CPU µs/req ≤ 2.0× pass-through (every mirror compared)');
    expect(report.targets.map((t) => t.name)).not.toContain('shadow-all client req/s ≥ 0.75× shadow');
    // The row where no request repeats compares every mirror too, and is no faulty mirror.
    const once = report.rows.find((r) => r.scenario === 'shadow-all-unique')?.proxyCounters ?? {};
    expect(once['comparisons.mismatch'] ?? 0).toBeGreaterThan(0);
    expect(report.targets.map((t) => t.name)).not.toContain('shadow-all-unique client req/s ≥ 0.75× shadow');
    expect(report.ratios.fullSpeed.uniqueShadowCpuVsPassthrough).toBeGreaterThan(0);
    const big = report.rows.find((r) => r.scenario === 'shadow-big')?.proxyCounters ?? {};
    expect((big['shadowSkipped.body_too_large'] ?? 0) + (big['shadowSkipped.overload'] ?? 0)).toBeGreaterThan(0);
    expect(stdout).toMatch(/^(PASS|MISS|SKIP) 1 MB bodies: client p50/m);
    // The 1 MB rows are read by the lean client (autocannon cost more CPU per answer than the proxy).
    for (const name of ['passthrough-1mb', 'shadow-1mb', 'passthrough-1mb-open', 'shadow-1mb-open']) expect(report.rows.find((r) => r.scenario === name)?.generator, name).toBe('lean');
    // The fixed-rate rows run at a quarter of the closed 0% row's req/s, and say so.
    const closed = report.rows.find((r) => r.scenario === 'passthrough-1mb')!;
    for (const name of ['passthrough-1mb-open', 'shadow-1mb-open']) {
      const row = report.rows.find((r) => r.scenario === name)!;
      expect(row.offeredRps, name).toBe(Math.max(1, Math.round(closed.rps * 0.25)));
      // Open load sends on a schedule: about rate × duration requests, not as many as the proxy takes.
      expect(row.sent, name).toBeGreaterThan(0);
      expect(row.sent!, name).toBeLessThanOrEqual(Math.ceil(row.offeredRps! * 5) + 1);
    }
    expect(stdout).toMatch(/^(PASS|MISS|SKIP) 1 MB bodies at ¼ load: client p50/m);

    expect(stdout).toContain('cores: proxy · load · backends');
    expect(stdout).toContain('| direct |');
    expect(stdout).toContain('| http-proxy |');
    expect(stdout).toMatch(/^(PASS|MISS|SKIP) /m);

    // No orphans: every process the run started is gone once it has exited.
    const pids = report.processes.map((p) => p.pid);
    expect(pids.length).toBeGreaterThanOrEqual(scenarios.length); // backends + one per proxy
    expect(await waitUntilGone(pids, 5000)).toEqual([]);
  }, 300_000);

  it('goes on past a peer that is not installed: its rows are skipped, the rest are measured', async () => {
    const out = join(dir, 'no-nginx.json');
    const names = ['direct', 'nginx', 'nginx-mirror', 'passthrough'];
    const { code, stderr } = await run(['--quick', '--duration', '0.5', '--warmup', '0', '--scenario', names.join(','), '--out', out], 60_000, { CUTOVER_BENCH_NGINX: 'none' });
    expect(code, stderr).toBe(0);
    const report = JSON.parse(readFileSync(out, 'utf8')) as Report;
    expect(report.rows.map((r) => r.scenario)).toEqual(names);
    for (const row of report.rows) {
      if (row.proxy === 'nginx') expect(row.skipped).toMatch(/nginx not installed/);
      else expect(row.requests, row.scenario).toBeGreaterThan(0);
    }
  }, 90_000);

  it('--soak runs the shadow scenario at steady load and samples RSS and event-loop delay', async () => {
    const out = join(dir, 'soak.json');
    const { code, stdout, stderr } = await run(['--soak', '5', '--connections', '10', '--out', out], 60_000);
    expect(code, stderr).toBe(0);
    const report = JSON.parse(readFileSync(out, 'utf8')) as { load: { requests: number; errors: number }; samples: { rssMB: number; loopDelayP99Ms: number | null }[] };
    expect(report.load.requests).toBeGreaterThan(0);
    expect(report.load.errors).toBe(0);
    expect(report.samples.length).toBeGreaterThan(0);
    expect(report.samples[0].rssMB).toBeGreaterThan(0);
    expect(report.samples[0].loopDelayP99Ms).not.toBeNull();
    expect(stdout).toMatch(/^(PASS|MISS|SKIP) soak: RSS flat/m);
  }, 90_000);

  it('rejects an unknown scenario with exit 2 and the list of names', async () => {
    const { code, stderr } = await run(['--scenario', 'direct,nope'], 20_000);
    expect(code).toBe(2);
    expect(stderr).toContain('unknown scenario "nope"');
    expect(stderr).toContain('http-proxy');
  });
});
