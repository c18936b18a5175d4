/**
 * `cutover demo`: the sample legacy and new backends, the proxy in front of them, and gentle
 * traffic, all in one process, with the URLs to open printed once. The caller (the CLI) owns the
 * process: it installs the signal handlers and calls stop(), which takes everything down.
 */
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { startApp, type App } from '../app.js';
import { randomBytes } from 'node:crypto';
import { loadConfig, type Config } from '../config/load.js';
import { createLogger, type Logger } from '../telemetry/logger.js';
import { PLANTED_DIFFERENCES, startDemoBackends, type DemoBackends } from './backends.js';
import { startTraffic, type Traffic, type TrafficOptions } from './traffic.js';
import { DEMO_INTEGRATIONS, demoApiKeyFor, provideDemoSecrets, startDemoCredentials, type DemoCredentials } from './credentials.js';

export { PLANTED_DIFFERENCES, startDemoBackends } from './backends.js';
export { startTraffic } from './traffic.js';
export { DEMO_INTEGRATIONS, demoApiKeyFor } from './credentials.js';

/** config/demo.yaml, found from this module in both src/demo and dist/demo. */
export const DEFAULT_DEMO_CONFIG = fileURLToPath(new URL('../../config/demo.yaml', import.meta.url));

export interface DemoPorts {
  listen?: number;
  admin?: number;
  legacy?: number;
  new?: number;
  /** The bundled OAuth2 token endpoint; when other ports are given and this one is not, a free one. */
  token?: number;
}

export interface DemoOptions {
  /** Config file; default config/demo.yaml of this package. */
  config?: string;
  /** Port overrides (0 picks a free one), e.g. for tests or when 8080 is taken. */
  ports?: DemoPorts;
  /** How long the traffic runs; the servers stay up after it ends until stop(). Default one hour. */
  durationMs?: number;
  /** Print nothing and log nothing. */
  quiet?: boolean;
  /** Traffic settings; false starts no traffic at all. */
  traffic?: false | Omit<TrafficOptions, 'target' | 'durationMs' | 'signal'>;
  /** Where the banner and status lines go (default stdout). */
  out?: NodeJS.WritableStream;
  /** Seconds between status lines; 0 turns them off. Default 15. */
  statusEverySeconds?: number;
  logger?: Logger;
}

export interface DemoUrls {
  proxy: string;
  admin: string;
  metrics: string;
  healthz: string;
  legacy: string;
  new: string;
}

export interface DemoHandle {
  urls: DemoUrls;
  /** The config the proxy runs with (ports resolved). */
  config: Config;
  backends: DemoBackends;
  /** The token endpoint of v2 and the backends' credential checks. */
  credentials: DemoCredentials;
  app: App;
  /** Null when started with traffic: false. */
  traffic: Traffic | null;
  /** Stops traffic, then the proxy (short drain), then the backends; idempotent. */
  stop(): Promise<void>;
}

function portOf(url: string): number {
  const u = new URL(url);
  if (u.port) return Number(u.port);
  return u.protocol === 'https:' ? 443 : 80;
}

function hostOf(url: string): string {
  return new URL(url).hostname.replace(/^\[(.*)\]$/, '$1');
}

/**
 * Sums one metric of a Prometheus text scrape by the value of one label, keeping only samples whose
 * labels include every pair of `where`: sumByLabel(text, 'cutover_comparisons_total', 'result')
 * gives { match: 12, noise: 3, ... }.
 */
export function sumByLabel(metricsText: string, metric: string, label: string, where: Record<string, string> = {}): Record<string, number> {
  const totals: Record<string, number> = {};
  for (const line of metricsText.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    const close = line.lastIndexOf('}');
    const labels = Object.fromEntries([...line.slice(metric.length + 1, close).matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    const value = Number(line.slice(close + 1).trim().split(/\s+/)[0]);
    if (labels[label] === undefined || !Number.isFinite(value)) continue;
    if (Object.entries(where).some(([k, v]) => labels[k] !== v)) continue;
    totals[labels[label]] = (totals[labels[label]] ?? 0) + value;
  }
  return totals;
}

function banner(urls: DemoUrls, trafficLine: string, token: string): string {
  const planted = PLANTED_DIFFERENCES.map((d) => `${d.route === '*' ? 'all' : d.route}: ${d.label}`).join('; ');
  return [
    'cutover demo: Northwind Widgets moves its integrations from API v1 (legacy) to v2 (new).',
    '',
    `  proxy      ${urls.proxy}   clients call the v1 paths here`,
    `  legacy v1  ${urls.legacy}`,
    `  new v2     ${urls.new}`,
    `  metrics    GET ${urls.metrics}`,
    `  health     GET ${urls.healthz}`,
    '',
    'Try:',
    `  curl -s -H 'x-api-key: ${DEMO_INTEGRATIONS[0].key}' ${urls.proxy}/v1/widgets/2`,
    `  curl -s -H 'x-client-id: acme' ${urls.proxy}/v1/orders/1001 -H 'x-api-key: ${demoApiKeyFor('acme')}'`,
    `  curl -s ${urls.metrics} | grep -E '^cutover_(comparisons|mismatch_fields)_total'`,
    `  curl -s -H 'authorization: Bearer ${token}' ${urls.admin}/api/routes/get-widget/diffs`,
    '     (the diffs API: each differing field, its kinds, noise rate and redacted examples; this token lives only as long as the demo)',
    ...credentialLines(urls, token),
    '',
    `Planted v1→v2 differences: ${planted}.`,
    trafficLine,
    '',
  ].join('\n');
}

/** Starts the demo and returns once everything listens; the caller stops it. */
export async function runDemo(options: DemoOptions = {}): Promise<DemoHandle> {
  // config/demo.yaml reads v2's client secret from the environment: this run's is put there first.
  provideDemoSecrets();
  const loaded = await loadConfig(options.config ?? DEFAULT_DEMO_CONFIG);
  const ports = options.ports ?? {};
  const out = options.out ?? process.stdout;
  const quiet = options.quiet ?? false;

  const credentials = await startDemoTokenEndpoint(loaded, ports, options.ports !== undefined);
  let backends: DemoBackends;
  try {
    backends = await startDemoBackends({
      host: hostOf(loaded.backends.legacy.url),
      legacyPort: ports.legacy ?? portOf(loaded.backends.legacy.url),
      newPort: ports.new ?? portOf(loaded.backends.new.url),
      guard: credentials.guard,
    });
  } catch (err) {
    await credentials.endpoint.close();
    throw err;
  }

  // The proxy must talk to the ports the backends really got (they may have been 0).
  // The demo's admin API gets a token for this run only, so the diffs API can be tried at once.
  const adminToken = loaded.adminToken ?? randomBytes(12).toString('hex');
  const config: Config = {
    ...loaded,
    adminToken,
    adminTokens: loaded.adminToken === undefined ? [{ name: 'admin', role: 'operator', secret: adminToken }, ...loaded.adminTokens] : loaded.adminTokens,
    listen: { ...loaded.listen, port: ports.listen ?? loaded.listen.port },
    admin: { ...loaded.admin, port: ports.admin ?? loaded.admin.port },
    backends: {
      legacy: { ...loaded.backends.legacy, url: backends.legacy.url },
      new: { ...loaded.backends.new, url: backends.new.url, auth: demoAuth(loaded, credentials) },
    },
  };

  let app: App;
  try {
    const logger = options.logger ?? (quiet ? createLogger('silent') : undefined);
    app = await startApp(config, logger ? { logger } : {});
  } catch (err) {
    await backends.close();
    await credentials.endpoint.close();
    throw err;
  }

  const urls: DemoUrls = {
    proxy: app.dataUrl,
    admin: app.adminUrl,
    metrics: `${app.adminUrl}/metrics`,
    healthz: `${app.adminUrl}/healthz`,
    legacy: backends.legacy.url,
    new: backends.new.url,
  };

  const durationMs = options.durationMs ?? 3_600_000;
  const traffic = options.traffic === false ? null : startTraffic({ ...options.traffic, target: app.dataUrl, durationMs });

  if (!quiet) {
    const rate = options.traffic ? (options.traffic.ratePerSecond ?? 5) : 5;
    const clients = options.traffic ? (options.traffic.clients ?? 20) : 20;
    const bound = options.traffic && options.traffic.maxRequests !== undefined ? `${options.traffic.maxRequests} requests` : `${Math.round(durationMs / 60_000)} min`;
    const trafficLine = traffic
      ? `Traffic: ${rate} req/s from ${clients} clients (x-client-id), for up to ${bound}. Ctrl-C stops everything.`
      : 'Traffic: none (started without it). Ctrl-C stops everything.';
    out.write(banner(urls, trafficLine, config.adminToken!));
  }

  // A short status line now and then, so the newcomer sees the comparisons add up.
  const statusEvery = (options.statusEverySeconds ?? 15) * 1000;
  let statusBusy = false;
  let lastStatus = '';
  const statusTimer =
    !quiet && statusEvery > 0
      ? setInterval(() => {
          if (statusBusy) return;
          statusBusy = true;
          void statusLine(urls.metrics, traffic)
            .then((line) => {
              // Once the traffic has ended nothing changes: say it once, not every few seconds.
              if (line !== lastStatus) out.write(`${line}\n`);
              lastStatus = line;
            })
            .finally(() => {
              statusBusy = false;
            });
        }, statusEvery)
      : undefined;
  statusTimer?.unref();

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      clearInterval(statusTimer);
      await traffic?.stop();
      try {
        await app.close(2_000);
      } finally {
        await backends.close();
        await credentials.endpoint.close();
      }
    })();
    return stopping;
  };

  return { urls, config, backends, credentials, app, traffic, stop };
}

/** The token endpoint on the port of `backends.new.auth.tokenUrl` (a free one when the caller picks ports). */
async function startDemoTokenEndpoint(loaded: Config, ports: DemoPorts, portsGiven: boolean): Promise<DemoCredentials> {
  const auth = loaded.backends.new.auth;
  const tokenUrl = auth.type === 'oauth2-client-credentials' ? auth.tokenUrl : 'http://127.0.0.1:9103/oauth/token';
  return startDemoCredentials(hostOf(tokenUrl), ports.token ?? (portsGiven ? 0 : portOf(tokenUrl)));
}

/** v2's auth pointed at the token endpoint's real port (it may have been 0). */
function demoAuth(loaded: Config, credentials: DemoCredentials): Config['backends']['new']['auth'] {
  const auth = loaded.backends.new.auth;
  return auth.type === 'oauth2-client-credentials' ? { ...auth, tokenUrl: credentials.endpoint.tokenUrl } : auth;
}

/** The banner lines about credentials: an integration's key on v1, the inventory on the admin API. */
function credentialLines(urls: DemoUrls, token: string): string[] {
  return [
    '     (v1 takes an integration key; toward v2 cutover strips it and sends its own OAuth2 token instead)',
    `  curl -s -H 'authorization: Bearer ${token}' ${urls.admin}/api/credentials?format=csv`,
    '     (the legacy keys still in use, as fingerprints: who must move before v1 can be switched off)',
  ];
}

async function statusLine(metricsUrl: string, traffic: Traffic | null): Promise<string> {
  const parts: string[] = [];
  if (traffic) {
    const s = traffic.stats();
    parts.push(`traffic sent ${s.sent}, ok ${s.ok}, failed ${s.failed}`);
  }
  try {
    const res = await request(metricsUrl, { headersTimeout: 2_000, bodyTimeout: 2_000 });
    const text = await res.body.text();
    const mirrored = Object.values(sumByLabel(text, 'cutover_requests_total', 'role', { role: 'shadow' })).reduce((a, n) => a + n, 0);
    parts.push(`mirrored ${mirrored}`);
    const shown = Object.entries(sumByLabel(text, 'cutover_comparisons_total', 'result'))
      .filter(([, n]) => n > 0)
      .map(([result, n]) => `${result} ${n}`);
    parts.push(shown.length ? `comparisons: ${shown.join(', ')}` : 'comparisons: none yet');
  } catch {
    parts.push('comparisons: metrics not reachable');
  }
  return `[demo] ${parts.join(' | ')}`;
}
