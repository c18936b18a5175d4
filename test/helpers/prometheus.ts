/**
 * Starts a real Prometheus server (Debian package `prometheus`) for tests, on a
 * free port of 127.0.0.1 with its TSDB in a temp dir, and stops it again.
 *
 *   const prom = await startPrometheus({ scrapeTargets: ['127.0.0.1:9090'], ruleFiles: [...] });
 *   const res = await queryInstant(prom.url, 'up');
 *   await prom.stop();
 *
 * Scrape targets are put in one job named "cutover" (override with `jobName`),
 * which is what dashboards/alerts.yaml and the dashboard's `job` variable
 * select on (`job=~".*cutover.*"`).
 *
 * Timing: Prometheus applies its target list a few seconds after /-/ready
 * (its scrape manager reloads on a 5 s tick), so the first scrape lands about
 * 5-6 s after start. Use `waitForTargetsUp` rather than a sleep, and allow
 * two scrapes more before rate() has data.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';

/** Set only on purpose (CUTOVER_SKIP_PROMETHEUS=1), where prometheus and promtool cannot be installed. */
export const SKIP_PROMETHEUS = process.env.CUTOVER_SKIP_PROMETHEUS === '1';

export interface StartPrometheusOptions {
  /** `host:port` (scraped at /metrics over http) or a full URL such as `http://127.0.0.1:9090/metrics`. */
  scrapeTargets?: string[];
  /** Scrape and rule evaluation interval; default `1s` so tests see data quickly. */
  scrapeInterval?: string;
  /** Rule files to load (paths relative to the current directory are resolved). */
  ruleFiles?: string[];
  /** Job label of the scrape targets; default `cutover`. */
  jobName?: string;
  /** How long to wait for /-/ready; default 20 s. */
  readyTimeoutMs?: number;
}

export interface RunningPrometheus {
  /** Base URL, e.g. `http://127.0.0.1:41234`, without a trailing slash. */
  url: string;
  /** The last 4 kB Prometheus wrote to stderr (it logs at warn level), and whether it has exited: for failure messages. */
  diagnostics(): string;
  /** SIGTERM, then SIGKILL after 10 s; removes the temp dir. Safe to call twice. */
  stop(): Promise<void>;
}

export interface PromQueryResponse {
  status: 'success' | 'error';
  data?: { resultType: string; result: Array<{ metric: Record<string, string>; value?: [number, string]; values?: Array<[number, string]> }> };
  errorType?: string;
  error?: string;
}

/** The prometheus binary: $PROMETHEUS_BIN, else `prometheus` on PATH. */
export function prometheusBin(): string {
  return process.env.PROMETHEUS_BIN ?? 'prometheus';
}

/** Polls `check` until it returns a value other than undefined/false, or throws after the deadline. */
export async function pollUntil<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  { timeoutMs = 20_000, intervalMs = 200 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const why = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** GET /api/v1/query. Resolves with Prometheus' JSON for 200 and 4xx answers alike (4xx carries the parse error). */
export async function queryInstant(url: string, expr: string, time?: number): Promise<PromQueryResponse> {
  const params = new URLSearchParams({ query: expr });
  if (time !== undefined) params.set('time', String(time));
  const res = await fetch(`${url}/api/v1/query?${params}`);
  return (await res.json()) as PromQueryResponse;
}

export interface PromApiRule {
  type: 'alerting' | 'recording';
  name: string;
  query: string;
  health: 'ok' | 'err' | 'unknown';
  lastError?: string;
  state?: 'inactive' | 'pending' | 'firing';
  alerts?: PromAlert[];
}

export interface PromRuleGroup {
  name: string;
  file: string;
  rules: PromApiRule[];
}

export interface PromAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
  value: string;
}

/** GET /api/v1/rules: every loaded rule group with each rule's health, last error and (alerts) state. */
export async function fetchRuleGroups(url: string): Promise<PromRuleGroup[]> {
  const res = await fetch(`${url}/api/v1/rules`);
  const body = (await res.json()) as { status: string; data?: { groups: PromRuleGroup[] } };
  if (body.status !== 'success' || !body.data) throw new Error(`GET /api/v1/rules: ${JSON.stringify(body)}`);
  return body.data.groups;
}

/** GET /api/v1/alerts: alerts that are pending (expression true, `for` not yet elapsed) or firing. */
export async function fetchAlerts(url: string): Promise<PromAlert[]> {
  const res = await fetch(`${url}/api/v1/alerts`);
  const body = (await res.json()) as { status: string; data?: { alerts: PromAlert[] } };
  if (body.status !== 'success' || !body.data) throw new Error(`GET /api/v1/alerts: ${JSON.stringify(body)}`);
  return body.data.alerts;
}

/** Polls /api/v1/targets until at least `count` targets exist and every one is "up"; resolves with their scrape URLs. */
export async function waitForTargetsUp(url: string, { count = 1, timeoutMs = 20_000 }: { count?: number; timeoutMs?: number } = {}): Promise<string[]> {
  return pollUntil(`${count} scrape target(s) up at ${url}`, async () => {
    const res = await fetch(`${url}/api/v1/targets?state=active`);
    const body = (await res.json()) as { data: { activeTargets: Array<{ scrapeUrl: string; health: string }> } };
    const targets = body.data.activeTargets;
    return targets.length >= count && targets.every((t) => t.health === 'up') ? targets.map((t) => t.scrapeUrl) : undefined;
  }, { timeoutMs });
}

/** A port that was free a moment ago: Prometheus has no port 0, so bind one, read it, release it. */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

function staticConfigs(targets: string[]) {
  return targets.map((t) => {
    const u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(t) ? t : `http://${t}/metrics`);
    return {
      targets: [u.host],
      // Per-target scheme and path, so every target can share the one job name.
      labels: { __scheme__: u.protocol.replace(/:$/, ''), __metrics_path__: u.pathname || '/metrics' },
    };
  });
}

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((r) => {
    const timer = setTimeout(() => r(false), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      r(true);
    });
  });
}

export async function startPrometheus(opts: StartPrometheusOptions = {}): Promise<RunningPrometheus> {
  const interval = opts.scrapeInterval ?? '1s';
  const dir = await mkdtemp(join(tmpdir(), 'cutover-prometheus-'));
  const config = {
    global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: interval },
    rule_files: (opts.ruleFiles ?? []).map((f) => resolve(f)),
    scrape_configs: opts.scrapeTargets?.length
      ? [{ job_name: opts.jobName ?? 'cutover', static_configs: staticConfigs(opts.scrapeTargets) }]
      : [],
  };
  const configFile = join(dir, 'prometheus.yml');
  await writeFile(configFile, stringify(config));

  // The port can be taken between freePort() and Prometheus binding it: retry on that one failure.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const child = spawn(
      prometheusBin(),
      [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-4000);
    });
    let spawnError: NodeJS.ErrnoException | undefined;
    child.once('error', (e) => {
      spawnError = e;
    });

    // If the test process exits without calling stop() (runner killed, hook timed out),
    // take Prometheus down with it instead of leaving an orphan holding the port.
    const killOnExit = () => {
      child.kill('SIGKILL');
    };
    process.once('exit', killOnExit);

    let stopped = false;
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      process.removeListener('exit', killOnExit);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      if (!(await waitForExit(child, 10_000))) {
        child.kill('SIGKILL');
        await waitForExit(child, 5_000);
      }
      await rm(dir, { recursive: true, force: true });
    };

    let outcome: 'ready' | 'exited' | 'spawn-error';
    try {
      outcome = await pollUntil(
        `Prometheus at ${url}/-/ready`,
        async () => {
          if (spawnError) return 'spawn-error' as const;
          if (child.exitCode !== null || child.signalCode !== null) return 'exited' as const;
          const res = await fetch(`${url}/-/ready`).catch(() => undefined);
          return res?.ok === true ? ('ready' as const) : undefined;
        },
        { timeoutMs: opts.readyTimeoutMs ?? 20_000, intervalMs: 100 },
      );
    } catch (err) {
      await stop();
      throw new Error(`${String(err)}; prometheus stderr:\n${stderr}`);
    }
    const diagnostics = () => {
      const state = child.exitCode !== null || child.signalCode !== null ? `exited (code ${child.exitCode}, signal ${child.signalCode})` : 'running';
      return `prometheus ${state}; stderr:\n${stderr}`;
    };
    if (outcome === 'ready') return { url, stop, diagnostics };

    // Keep the temp dir for a retry; only the process is gone.
    await waitForExit(child, 5_000);
    if (outcome === 'spawn-error') {
      await rm(dir, { recursive: true, force: true });
      throw spawnError?.code === 'ENOENT'
        ? new Error(`${prometheusBin()} not found: install the Debian package "prometheus" (apt-get install -y prometheus) or set PROMETHEUS_BIN`)
        : (spawnError as Error);
    }
    if (/address already in use/.test(stderr) && attempt < 3) continue;
    await rm(dir, { recursive: true, force: true });
    throw new Error(`prometheus exited with code ${child.exitCode} before it was ready:\n${stderr}`);
  }
}

/**
 * A dashboard expression as Prometheus would receive it from Grafana with every route selected and
 * the test's job; the windows are the caller's, to fit how much data its run has.
 */
export function renderGrafanaExpr(expr: string, windows: { rateInterval: string; range: string }): string {
  return expr
    .replace(/\$\{?__rate_interval\}?/g, windows.rateInterval)
    .replace(/\$\{?__range\}?/g, windows.range)
    .replace(/\$\{?route\}?/g, '.*')
    .replace(/\$\{?job\}?/g, '.*cutover.*');
}
