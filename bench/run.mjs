#!/usr/bin/env node
// cutover benchmark runner: every speed claim as a ratio measured side by side in one run.
//
//   node bench/run.mjs [--quick] [--scenario a,b] [--duration s] [--warmup s] [--connections n]
//                      [--rounds n] [--out FILE] [--cli FILE] [--verbose] [--soak SECONDS]
//
// Starts fast JSON backends (legacy, new, new-but-slow, and a dead port) in their own processes, then
// measures each scenario in turn with the same load (autocannon, N connections, pipelining 1):
// warm-up, then measurement, while sampling the proxy process's RSS every 100 ms. Writes
// bench/results/latest.json (or --out) and prints a markdown table, the ratios and the targets.
// Targets are informational: a MISS never fails the run. The run fails (exit 1) only when the
// harness or a proxy under test breaks (a scenario errors), so `--quick` in CI proves the bench works.
//
// Peers: http-proxy always; nginx (`proxy_pass`, and `mirror` toward the same faulty targets as
// cutover) when an nginx binary is on the PATH, else those rows say "skipped". The faulty mirror
// targets are bench/backend.mjs --fault …; the 1 MB rows use --size. `--soak SECONDS` runs the
// shadow scenario at steady load for that long and reports the proxy's RSS and event-loop delay
// (its own nodejs_eventloop_lag_* metrics) every few seconds. With `taskset` available, backends
// are pinned to the last core and the proxy to the others (CUTOVER_BENCH_PIN=0 turns that off).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { runLoad, ITEM_PATHS } from './lib/load.mjs';
import { runLeanLoad } from './lib/lean-load.mjs';
import { deadPort, freePort, freePorts } from './lib/ports.mjs';
import { killAllSync, liveChildren, startGuarded, startScript, stopAll, waitForHttp } from './lib/procs.mjs';
import { checkTargets, computeRatios, markdown, mergeRounds, targetLines } from './lib/report.mjs';
import { RssSampler, readCpuMs, readStatus, readTuning, round1 } from './lib/rss.mjs';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(BENCH_DIR, '..');
const DEFAULT_CLI = join(ROOT, 'dist', 'cli', 'main.js');
const SLOW_MS = 200;

/**
 * In run order. `shadowTo` names the backend that receives the mirror (and is `backends.new`);
 * `legacy` the one that serves clients (default `legacy`). nginx rows mirror to `shadowTo` when set.
 */
export const SCENARIOS = [
  { name: 'direct', label: 'direct to legacy (no proxy)', proxy: 'none' },
  { name: 'http-proxy', label: 'http-proxy 1.18, keep-alive agent', proxy: 'http-proxy' },
  { name: 'nginx', label: 'nginx proxy_pass, keep-alive upstream', proxy: 'nginx' },
  { name: 'nginx-mirror', label: 'nginx proxy_pass + mirror', proxy: 'nginx', shadowTo: 'new' },
  { name: 'passthrough', label: 'cutover pass-through (weight 0, no shadow)', proxy: 'cutover', shadowPercent: 0, shadowTo: 'new' },
  { name: 'shadow', label: 'cutover 100% shadow + compare', proxy: 'cutover', shadowPercent: 100, shadowTo: 'new' },
  // The same with the load shedder off: flat out, the row above compares about half the requests
  // (shadow.shedAt, by design), so its CPU per request is not what a shadowed request costs. The
  // full-speed targets (CPU per shadowed request, req/s against nginx mirroring every request) are
  // read from this row, where every mirror is sent and compared.
  { name: 'shadow-all', label: 'cutover 100% shadow + compare, shedding off: every mirror compared', proxy: 'cutover', shadowPercent: 100, shadowTo: 'new', noShedding: true },
  // The same where no request repeats (a query of its own on each): what a shadowed request costs
  // when nothing kept per request (compare/recent.ts) can serve it, as with traffic that never polls.
  { name: 'shadow-all-unique', label: 'cutover 100% shadow + compare, shedding off, every request a path of its own', proxy: 'cutover', shadowPercent: 100, shadowTo: 'new', noShedding: true, unique: true },
  { name: 'shadow-slow', label: `cutover 100% shadow, shadow backend +${SLOW_MS} ms`, proxy: 'cutover', shadowPercent: 100, shadowTo: 'slow', fault: true },
  { name: 'shadow-dead', label: 'cutover 100% shadow, shadow backend refuses connections', proxy: 'cutover', shadowPercent: 100, shadowTo: 'dead', fault: true },
  { name: 'shadow-big', label: 'cutover 100% shadow, shadow answers 10 MB', proxy: 'cutover', shadowPercent: 100, shadowTo: 'big', fault: true },
  { name: 'shadow-reset', label: 'cutover 100% shadow, shadow resets mid-body', proxy: 'cutover', shadowPercent: 100, shadowTo: 'reset', fault: true },
  { name: 'shadow-hang', label: 'cutover 100% shadow, shadow never answers', proxy: 'cutover', shadowPercent: 100, shadowTo: 'hang', fault: true },
  { name: 'shadow-garbage', label: 'cutover 100% shadow, shadow answers bytes that are not HTTP', proxy: 'cutover', shadowPercent: 100, shadowTo: 'garbage', fault: true },
  { name: 'nginx-mirror-slow', label: `nginx mirror, mirror +${SLOW_MS} ms`, proxy: 'nginx', shadowTo: 'slow', fault: true },
  { name: 'nginx-mirror-dead', label: 'nginx mirror, mirror refuses connections', proxy: 'nginx', shadowTo: 'dead', fault: true },
  { name: 'nginx-mirror-big', label: 'nginx mirror, mirror answers 10 MB', proxy: 'nginx', shadowTo: 'big', fault: true },
  { name: 'nginx-mirror-reset', label: 'nginx mirror, mirror resets mid-body', proxy: 'nginx', shadowTo: 'reset', fault: true },
  { name: 'nginx-mirror-hang', label: 'nginx mirror, mirror never answers', proxy: 'nginx', shadowTo: 'hang', fault: true },
  { name: 'passthrough-1mb', label: 'cutover 0% shadow, ~940 KB bodies, 20 clients', proxy: 'cutover', shadowPercent: 0, legacy: 'legacy1mb', shadowTo: 'new1mb', connections: 20, minDurationS: 3, lean: true },
  { name: 'shadow-1mb', label: 'cutover 100% shadow + compare, ~940 KB bodies, 20 clients', proxy: 'cutover', shadowPercent: 100, legacy: 'legacy1mb', shadowTo: 'new1mb', connections: 20, minDurationS: 3, lean: true },
  // The same pair at a load the proxy carries: requests come at a fixed rate (a quarter of the
  // passthrough-1mb row's req/s in the same round) whether or not answers are back. The closed rows
  // above run the proxy's core flat out, where any mirror costs throughput and so p50; these show
  // what a mirror costs a client at a quarter of that load, and how many mirrors are compared there.
  { name: 'passthrough-1mb-open', label: 'cutover 0% shadow, ~940 KB bodies, fixed rate: ¼ of passthrough-1mb', proxy: 'cutover', shadowPercent: 0, legacy: 'legacy1mb', shadowTo: 'new1mb', connections: 20, minDurationS: 5, lean: true, openShare: { of: 'passthrough-1mb', share: 0.25 } },
  { name: 'shadow-1mb-open', label: 'cutover 100% shadow + compare, ~940 KB bodies, fixed rate: ¼ of passthrough-1mb', proxy: 'cutover', shadowPercent: 100, legacy: 'legacy1mb', shadowTo: 'new1mb', connections: 20, minDurationS: 5, lean: true, openShare: { of: 'passthrough-1mb', share: 0.25 } },
];

/** How each backend name is started (bench/backend.mjs arguments); `dead` is a port with nothing on it. */
const BACKENDS = {
  legacy: ['--flavor', 'legacy'],
  new: ['--flavor', 'new'],
  slow: ['--flavor', 'new', '--delay', String(SLOW_MS)],
  big: ['--flavor', 'new', '--fault', 'big'],
  reset: ['--flavor', 'new', '--fault', 'reset'],
  hang: ['--flavor', 'new', '--fault', 'hang'],
  garbage: ['--flavor', 'new', '--fault', 'garbage'],
  // Under cutover's default 1 MiB capture cap, like the issue's 940 KB JSON documents.
  legacy1mb: ['--flavor', 'legacy', '--size', '940000'],
  new1mb: ['--flavor', 'new', '--size', '940000'],
};

/** Not a load scenario: the comparator micro-benchmark from bench/compare.mjs, when present. */
const COMPARE = 'compare';

function usage(message) {
  if (message) console.error(`bench: ${message}`);
  console.error(
    'usage: node bench/run.mjs [--quick] [--scenario a,b] [--duration s] [--warmup s] [--connections n] [--rounds n] [--out FILE] [--cli FILE] [--verbose] [--soak SECONDS]\n' +
      `scenarios: ${[...SCENARIOS.map((s) => s.name), COMPARE].join(', ')}`,
  );
  process.exit(2);
}

function parseOptions(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        quick: { type: 'boolean', default: false },
        scenario: { type: 'string', multiple: true },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        connections: { type: 'string' },
        rounds: { type: 'string' },
        out: { type: 'string' },
        cli: { type: 'string' },
        verbose: { type: 'boolean', default: false },
        soak: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }).values;
  } catch (err) {
    usage(err.message);
  }
  if (parsed.help) usage();
  const number = (name, value, fallback, min, max) => {
    if (value === undefined) return fallback;
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) usage(`--${name} must be a number from ${min} to ${max}`);
    return n;
  };
  const known = new Set([...SCENARIOS.map((s) => s.name), COMPARE]);
  const selected = parsed.scenario ? parsed.scenario.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean) : [...known];
  for (const name of selected) if (!known.has(name)) usage(`unknown scenario "${name}"`);
  return {
    quick: parsed.quick,
    // Every load loop is bounded in time: at most 10 minutes of measurement per scenario.
    durationS: number('duration', parsed.duration, parsed.quick ? 2 : 10, 0.5, 600),
    warmupS: number('warmup', parsed.warmup, parsed.quick ? 0.5 : 2, 0, 60),
    connections: Math.round(number('connections', parsed.connections, 50, 1, 1000)),
    rounds: Math.round(number('rounds', parsed.rounds, 1, 1, 10)),
    out: resolve(parsed.out ?? join(BENCH_DIR, 'results', 'latest.json')),
    cli: resolve(parsed.cli ?? DEFAULT_CLI),
    verbose: parsed.verbose,
    scenarios: SCENARIOS.filter((s) => selected.includes(s.name)),
    runCompare: selected.includes(COMPARE),
    soakS: parsed.soak === undefined ? null : number('soak', parsed.soak, 600, 5, 24 * 3600),
  };
}

const log = (msg) => process.stderr.write(`${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Backends

/** The last core for the backends, the others for the proxy under test (when taskset exists). */
function pinning() {
  const cores = os.availableParallelism?.() ?? os.cpus().length;
  if (process.env.CUTOVER_BENCH_PIN === '0' || cores < 2) return null;
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
  } catch {
    return null;
  }
  return { backends: String(cores - 1), proxy: `0-${cores - 2}` };
}

/** Moves a running process onto a CPU list; best effort (a failure only means no pinning). */
function pin(pid, cpus) {
  if (!cpus || !pid) return;
  try {
    execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
  } catch {
    // not allowed here: run unpinned
  }
}

async function startBackends(scenarios, verbose, pins) {
  const needs = new Set(['legacy']);
  for (const s of scenarios) {
    if (s.legacy) needs.add(s.legacy);
    if (s.proxy === 'cutover') needs.add('new');
    if (s.shadowTo) needs.add(s.shadowTo);
  }
  const script = join(BENCH_DIR, 'backend.mjs');
  const urls = {};
  const started = await Promise.all(
    [...needs].filter((n) => n !== 'dead').map(async (name) => {
      const child = await startScript(`backend-${name}`, script, BACKENDS[name], { verbose });
      pin(child.pid, pins?.backends);
      urls[name] = `http://127.0.0.1:${child.ready.port}`;
      return child;
    }),
  );
  if (needs.has('dead')) urls.dead = `http://127.0.0.1:${await deadPort()}`;
  return { urls, children: started };
}

async function bodyBytes(url) {
  const res = await fetch(`${url}${ITEM_PATHS[0]}`);
  return (await res.arrayBuffer()).byteLength;
}

// ---------------------------------------------------------------------------------------------
// Proxies under test

/**
 * The heap flags and environment (glibc's malloc arenas) a user's cutover runs with, read from the
 * build under test (its cli/heap.js, what src/cli/heap.ts applies): on Node with process.execve it
 * restarts itself with them, elsewhere the README has node started with them (as `npm start` does).
 * The bench passes them on the command line and in the environment on every Node, and gives
 * http-proxy, the other Node proxy, the same. A build from before they existed gets none, as its
 * users did.
 */
async function tuningOf(cli) {
  const file = join(dirname(cli), 'heap.js');
  const heap = existsSync(file) ? await import(pathToFileURL(file).href) : {};
  return { flags: [...(heap.HEAP_FLAGS ?? [])], env: { ...(heap.TUNING_ENV ?? {}) } };
}

async function startHttpProxy(target, opts) {
  const child = await startScript('http-proxy', join(BENCH_DIR, 'http-proxy-server.mjs'), ['--target', target], { verbose: opts.verbose, execArgv: opts.nodeFlags, env: opts.proxyEnv });
  return { child, url: `http://127.0.0.1:${child.ready.port}` };
}

function nginxBinary() {
  // CUTOVER_BENCH_NGINX=none runs the bench as on a machine without nginx (its rows are skipped).
  if (process.env.CUTOVER_BENCH_NGINX === 'none') return null;
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/local/sbin'])) {
    const file = join(dir, 'nginx');
    if (dir && existsSync(file)) return file;
  }
  return null;
}

/**
 * One nginx process (master_process off: nothing outlives the guard), loopback only, keep-alive to
 * the backends like cutover, and for mirror rows the `mirror` module toward the same targets with
 * the same 5 s budget as cutover's shadow.timeout.
 */
function nginxConfig(scenario, urls, port, dir) {
  const hostPort = (url) => new URL(url).host;
  const mirror = scenario.shadowTo
    ? `
      mirror /__mirror;
      mirror_request_body on;`
    : '';
  const mirrorLocation = scenario.shadowTo
    ? `
    location = /__mirror {
      internal;
      proxy_pass http://mirror$request_uri;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Cutover-Shadow 1;
      proxy_connect_timeout 5s;
      proxy_send_timeout 5s;
      proxy_read_timeout 5s;
    }`
    : '';
  return `# written by bench/run.mjs
master_process off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream legacy { server ${hostPort(urls[scenario.legacy ?? 'legacy'])}; keepalive 256; }
  ${scenario.shadowTo ? `upstream mirror { server ${hostPort(urls[scenario.shadowTo])}; keepalive 64; }` : ''}
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://legacy;
      proxy_http_version 1.1;
      proxy_set_header Connection "";${mirror}
    }${mirrorLocation}
  }
}
`;
}

async function startNginx(scenario, urls, opts, tmp) {
  const bin = nginxBinary();
  if (bin === null) return null;
  const dir = mkdtempSync(join(tmp, `nginx-${scenario.name}-`));
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig(scenario, urls, port, dir));
  const child = await startGuarded(`nginx-${scenario.name}`, bin, ['-p', dir, '-c', conf, '-g', 'daemon off;'], { verbose: opts.verbose });
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(`${url}${ITEM_PATHS[0]}`, child, 20_000);
  return { child, url };
}

function cutoverConfig(scenario, urls, ports) {
  return {
    listen: { host: '127.0.0.1', port: ports.listen },
    admin: { host: '127.0.0.1', port: ports.admin },
    backends: { legacy: { url: urls[scenario.legacy ?? 'legacy'] }, new: { url: urls[scenario.shadowTo] } },
    log: { level: 'warn' },
    defaults: { shadow: { percent: scenario.shadowPercent } },
    ...(scenario.noShedding ? { shadow: { shedAt: { utilisation: 1, eventLoopDelay: 0 } } } : {}),
    routes: [{ name: 'get-item', match: { methods: ['GET'], path: '/items/:id' }, weight: 0 }],
  };
}

async function startCutover(scenario, urls, opts, tmp) {
  let lastErr;
  // Ports are picked by binding to 0 and closing, then handed over in the config; another process
  // may take one in between, so one retry with fresh ports.
  for (let attempt = 1; attempt <= 2; attempt++) {
    const [listen, admin] = await freePorts(2);
    const ports = { listen, admin };
    const config = cutoverConfig(scenario, urls, ports);
    const file = join(tmp, `cutover-${scenario.name}.yaml`);
    writeFileSync(file, `# written by bench/run.mjs (JSON is valid YAML)\n${JSON.stringify(config, null, 2)}\n`);
    const child = await startGuarded(`cutover-${scenario.name}`, process.execPath, [...opts.nodeFlags, opts.cli, 'run', '--config', file], { verbose: opts.verbose, cwd: ROOT, env: opts.proxyEnv });
    pin(child.pid, opts.pins?.proxy);
    const url = `http://127.0.0.1:${ports.listen}`;
    try {
      await waitForHttp(`${url}${ITEM_PATHS[0]}`, child, 20_000);
      return { child, url, config, adminUrl: `http://127.0.0.1:${ports.admin}` };
    } catch (err) {
      lastErr = err;
      await child.stop(1000);
      if (!/EADDRINUSE/.test(String(err.message))) break;
    }
  }
  throw lastErr;
}

/** Best effort: what the proxy says it did (mirrors, comparisons, skips), from its /metrics. */
async function scrapeCutoverCounters(adminUrl) {
  try {
    const res = await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(3000) });
    if (!res.ok) return { error: `GET /metrics answered ${res.status}` };
    const text = await res.text();
    const sums = {};
    const add = (key, value) => {
      sums[key] = (sums[key] ?? 0) + value;
    };
    for (const line of text.split('\n')) {
      // Garbage collections by kind (prom-client's default metric): a full collection every few
      // requests hid behind the 1 MB rows' numbers for sessions; counted here, it shows per row.
      const gc = /^nodejs_gc_duration_seconds_count\{kind="(\w+)"\}\s+([0-9.eE+-]+)/.exec(line);
      if (gc) add(`gc.${gc[1]}`, Number(gc[2]));
      const m = /^(cutover_(?:requests_total|comparisons_total|shadow_skipped_total|shadow_overload_total))\{([^}]*)\}\s+([0-9.eE+-]+)/.exec(line);
      if (!m) continue;
      const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
      const value = Number(m[3]);
      if (labels.route !== 'get-item') continue; // the readiness probe's path is route `other`
      if (m[1] === 'cutover_requests_total') add(`requests.${labels.role}.${labels.outcome}`, value);
      else if (m[1] === 'cutover_comparisons_total') add(`comparisons.${labels.result}`, value);
      else if (m[1] === 'cutover_shadow_overload_total') add(`overloadBy.${labels.cause}`, value);
      else add(`shadowSkipped.${labels.reason}`, value);
    }
    return sums;
  } catch (err) {
    return { error: err.cause?.code ?? err.message };
  }
}

// ---------------------------------------------------------------------------------------------
// One scenario

/** CPU ms so far of the load generator (this process: the runner drives the load) and of the backends. */
function restCpuMs(opts) {
  const own = process.cpuUsage();
  let backends = 0;
  for (const pid of opts.backendPids ?? []) backends += readCpuMs(pid) ?? 0;
  return { generator: (own.user + own.system) / 1000, backends };
}

function restCores(before, after, durationS) {
  const cores = (ms) => (durationS > 0 ? Math.round((ms / 1000 / durationS) * 100) / 100 : null);
  return { generatorCores: cores(after.generator - before.generator), backendCores: cores(after.backends - before.backends) };
}

async function measure(scenario, url, pid, opts) {
  const sampler = pid ? new RssSampler(pid) : null;
  const rssStart = sampler ? sampler.read() : null;
  sampler?.start();
  // The 1 MB rows run with the issue's 20 clients (fewer if asked) and at least 3 s: at ~1 s per
  // answer on a busy box, a 1 s window would measure almost nothing.
  const connections = Math.min(opts.connections, scenario.connections ?? opts.connections);
  const durationS = Math.max(opts.durationS, scenario.minDurationS ?? 0);
  // Big answers are read by the lean client (lib/lean-load.mjs): autocannon costs more CPU per 1 MB
  // answer than the proxy, on a machine whose cores the proxy and backends share with it.
  const load1 = scenario.lean ? (o) => runLeanLoad({ ...o, paths: ITEM_PATHS, rate: opts.rate }) : (o) => runLoad({ ...o, unique: scenario.unique === true });
  if (opts.warmupS > 0) await load1({ url, connections, durationS: opts.warmupS });
  const rssWarm = pid ? readStatus(pid).rssMB : null;
  // What the proxy measured really runs with (a Node proxy: its flags and malloc tuning), not what it was given.
  const tuning = pid && scenario.proxy !== 'nginx' ? readTuning(pid, Object.keys(opts.nodeEnv)) : null;
  const cpuBefore = pid ? readCpuMs(pid) : null;
  const restBefore = restCpuMs(opts);
  const load = { ...(await load1({ url, connections, durationS })), connections };
  const cpuAfter = pid ? readCpuMs(pid) : null;
  const restAfter = restCpuMs(opts);
  const rssEnd = pid ? readStatus(pid).rssMB : null;
  const cpuMs = cpuBefore !== null && cpuAfter !== null ? cpuAfter - cpuBefore : null;
  const mem = sampler ? sampler.stop() : { peakMB: null, hwmMB: null, samples: 0 };
  return {
    ...load,
    // Proxy CPU spent per request while measured (µs), and the share of one core it used.
    proxyCpu: cpuMs === null ? null : { usPerRequest: load.requests ? Math.round((cpuMs * 1000) / load.requests) : null, coresUsed: Math.round((cpuMs / 1000 / load.durationS) * 100) / 100 },
    // What the rest of the machine used meanwhile (cores): when they fill the cores the proxy does
    // not have, the row's pace is theirs, not the proxy's.
    restCpu: restCores(restBefore, restAfter, load.durationS),
    rssMB: { start: round1(rssStart), afterWarmup: round1(rssWarm), peak: round1(mem.peakMB), end: round1(rssEnd), hwm: round1(mem.hwmMB), samples: mem.samples },
    ...(tuning === null ? {} : { proxyTuning: tuning }),
  };
}

async function runScenario(scenario, backends, opts, tmp) {
  const base = { scenario: scenario.name, label: scenario.label, proxy: scenario.proxy };
  if (scenario.openShare && !opts.rate) return { ...base, skipped: `needs the ${scenario.openShare.of} row in the same round (its req/s sets the rate)` };
  if (scenario.proxy === 'none') {
    return { ...base, target: backends.urls.legacy, ...(await measure(scenario, backends.urls.legacy, null, opts)) };
  }
  if (scenario.proxy === 'http-proxy') {
    const { child, url } = await startHttpProxy(backends.urls.legacy, opts);
    // The baseline is a proxy under test like the others: on the same core(s) as cutover and nginx.
    pin(child.pid, opts.pins?.proxy);
    try {
      const row = { ...base, target: url, pid: child.pid, ...(await measure(scenario, url, child.pid, opts)) };
      if (!child.running) throw new Error(`http-proxy exited during the run\n${child.tail()}`);
      return row;
    } finally {
      await child.stop();
    }
  }
  if (scenario.proxy === 'nginx') {
    const nginx = await startNginx(scenario, backends.urls, opts, tmp);
    if (nginx === null) return { ...base, skipped: 'nginx not installed (apt-get install nginx-light)' };
    const { child, url } = nginx;
    pin(child.pid, opts.pins?.proxy);
    try {
      const row = { ...base, target: url, pid: child.pid, shadowTo: scenario.shadowTo, ...(await measure(scenario, url, child.pid, opts)) };
      if (!child.running) throw new Error(`nginx exited during the run\n${child.tail()}`);
      return row;
    } finally {
      await child.stop();
    }
  }
  if (!existsSync(opts.cli)) return { ...base, skipped: `${relative(ROOT, opts.cli)} not built (npm run build)` };
  const { child, url, config, adminUrl } = await startCutover(scenario, backends.urls, opts, tmp);
  try {
    const row = { ...base, target: url, pid: child.pid, shadowTo: scenario.shadowTo, config, ...(await measure(scenario, url, child.pid, opts)) };
    if (!child.running) throw new Error(`cutover exited during the run\n${child.tail()}`);
    row.proxyCounters = await scrapeCutoverCounters(adminUrl);
    return row;
  } finally {
    await child.stop();
  }
}

// ---------------------------------------------------------------------------------------------

async function runComparator(quick) {
  const file = join(BENCH_DIR, 'compare.mjs');
  if (!existsSync(file)) return { skipped: 'bench/compare.mjs not present' };
  try {
    const mod = await import(pathToFileURL(file).href);
    if (typeof mod.runCompareBench !== 'function') return { skipped: 'bench/compare.mjs does not export runCompareBench' };
    return await mod.runCompareBench({ quick });
  } catch (err) {
    return { error: err.stack ?? String(err) };
  }
}

function machineInfo() {
  let commit = null;
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a git checkout
  }
  return {
    date: new Date().toISOString(),
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model?.trim() ?? 'unknown',
    totalMemMB: Math.round(os.totalmem() / 2 ** 20),
    platform: `${process.platform} ${os.release()}`,
    arch: process.arch,
    node: process.version,
    gitCommit: commit,
    loadavgBefore: os.loadavg(),
  };
}

/** Reads the proxy's own event-loop delay figures (prom-client resets them on every scrape). */
async function scrapeLoopDelay(adminUrl) {
  try {
    const res = await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(3000) });
    const text = await res.text();
    const value = (name) => {
      const m = new RegExp(`^${name}\\s+([0-9.eE+-]+)`, 'm').exec(text);
      return m ? Math.round(Number(m[1]) * 1e5) / 100 : null; // seconds → ms, two decimals
    };
    return { p99: value('nodejs_eventloop_lag_p99_seconds'), max: value('nodejs_eventloop_lag_max_seconds') };
  } catch {
    return { p99: null, max: null };
  }
}

/**
 * `--soak SECONDS`: the shadow scenario at steady load for that long; every few seconds the proxy's
 * RSS and event-loop delay. "Flat" means the last third's RSS is within 20% of the first third's.
 */
async function soak(opts, tmp) {
  const scenario = SCENARIOS.find((s) => s.name === 'shadow');
  const backends = await startBackends([scenario], opts.verbose, opts.pins);
  const { child, url, adminUrl } = await startCutover(scenario, backends.urls, opts, tmp);
  const every = Math.max(2, Math.min(30, Math.round(opts.soakS / 20)));
  log(`▶ soak: ${scenario.label}, ${opts.soakS} s at ${opts.connections} connections, a sample every ${every} s`);
  const samples = [];
  const start = Date.now();
  const loadDone = runLoad({ url, connections: opts.connections, durationS: opts.soakS });
  let finished = false;
  void loadDone.finally(() => (finished = true));
  while (!finished) {
    await Promise.race([sleep(every * 1000), loadDone]);
    if (finished || !child.running) break;
    const delay = await scrapeLoopDelay(adminUrl);
    const sample = { t: Math.round((Date.now() - start) / 1000), rssMB: round1(readStatus(child.pid).rssMB), loopDelayP99Ms: delay.p99, loopDelayMaxMs: delay.max };
    samples.push(sample);
    log(`  t=${sample.t}s RSS ${sample.rssMB} MB, event-loop delay p99 ${sample.loopDelayP99Ms} ms, max ${sample.loopDelayMaxMs} ms`);
  }
  const load = await loadDone;
  const counters = await scrapeCutoverCounters(adminUrl);
  await child.stop();
  const third = Math.max(1, Math.floor(samples.length / 3));
  const avg = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);
  const early = avg(samples.slice(0, third).map((x) => x.rssMB));
  const late = avg(samples.slice(-third).map((x) => x.rssMB));
  const worstP99 = Math.max(0, ...samples.map((x) => x.loopDelayP99Ms ?? 0));
  const targets = [
    { name: 'soak: RSS flat (last third ≤ 1.2× first third)', verdict: early && late ? (late <= early * 1.2 ? 'PASS' : 'MISS') : 'SKIP', detail: `${round1(early)} → ${round1(late)} MB` },
    { name: 'soak: peak RSS < 256 MB', verdict: samples.length ? (Math.max(...samples.map((x) => x.rssMB)) < 256 ? 'PASS' : 'MISS') : 'SKIP', detail: `${Math.max(0, ...samples.map((x) => x.rssMB))} MB` },
    { name: 'soak: event-loop delay p99 ≤ 50 ms in every sample', verdict: samples.length ? (worstP99 <= 50 ? 'PASS' : 'MISS') : 'SKIP', detail: `worst ${worstP99} ms` },
  ];
  const report = { machine: { ...machineInfo(), loadavgAfter: os.loadavg() }, params: { soakS: opts.soakS, connections: opts.connections, everyS: every }, load, counters, samples, targets };
  const out = opts.out.endsWith('latest.json') ? join(dirname(opts.out), 'soak.json') : opts.out;
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`## cutover soak — ${report.machine.date}\n`);
  console.log(`${load.rps} req/s, p50 ${load.latencyMs.p50} ms, p99 ${load.latencyMs.p99} ms, errors ${load.errors}, non-2xx ${load.non2xx}\n`);
  console.log('| t s | RSS MB | event-loop delay p99 ms | max ms |\n| ---: | ---: | ---: | ---: |');
  for (const x of samples) console.log(`| ${x.t} | ${x.rssMB} | ${x.loopDelayP99Ms ?? '–'} | ${x.loopDelayMaxMs ?? '–'} |`);
  console.log('\n### targets (informational, never a failing exit)\n');
  for (const line of targetLines(targets)) console.log(line);
  console.log(`\nwritten: ${out}`);
}

async function main() {
  const opts = parseOptions(process.argv.slice(2));
  opts.pins = pinning();
  ({ flags: opts.nodeFlags, env: opts.nodeEnv } = await tuningOf(opts.cli));
  // As the CLI does, a variable already set (say MALLOC_ARENA_MAX=16, to measure glibc's default) wins.
  for (const name of Object.keys(opts.nodeEnv)) if (process.env[name] !== undefined) opts.nodeEnv[name] = process.env[name];
  opts.proxyEnv = { ...process.env, ...opts.nodeEnv };
  const tmp = mkdtempSync(join(os.tmpdir(), 'cutover-bench-'));
  let stopping = false;
  const cleanupAndExit = async (code, why) => {
    if (stopping) return;
    stopping = true;
    if (why) log(`bench: ${why}; stopping children`);
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
    process.exit(code);
  };
  process.on('exit', killAllSync); // last resort: synchronous SIGKILL of anything still registered
  process.on('SIGINT', () => cleanupAndExit(130, 'SIGINT'));
  process.on('SIGTERM', () => cleanupAndExit(143, 'SIGTERM'));

  if (opts.soakS !== null) {
    try {
      await soak(opts, tmp);
    } catch (err) {
      log(`bench: ${err.stack ?? err}`);
      process.exitCode = 1;
    }
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
    // Something of the load or the scrapes (a keep-alive socket, a timer) kept a finished soak
    // alive for minutes; the run is over, so it ends here.
    process.exit(process.exitCode ?? 0);
  }

  const machine = machineInfo();
  log(`bench: ${opts.scenarios.map((s) => s.name).join(', ') || '(no load scenarios)'}; ${opts.connections} connections, warm-up ${opts.warmupS} s, measure ${opts.durationS} s${opts.rounds > 1 ? `, ${opts.rounds} rounds` : ''}${opts.quick ? ' (quick)' : ''}`);
  const rows = [];
  const processes = [];
  let backends = { urls: {}, children: [] };
  try {
    if (opts.scenarios.length) {
      backends = await startBackends(opts.scenarios, opts.verbose, opts.pins);
      processes.push(...backends.children.map((c) => ({ name: c.name, pid: c.pid })));
      opts.backendPids = backends.children.map((c) => c.pid);
    }
    const bodies = {};
    for (const name of ['legacy', 'new', 'legacy1mb', 'new1mb']) if (backends.urls[name]) bodies[name] = await bodyBytes(backends.urls[name]);

    // Rounds interleave the scenarios (A B C, A B C, ...) so that a burst of noise from elsewhere on
    // the machine lands on all of them alike; each row then reports the median over its rounds.
    const perScenario = new Map(opts.scenarios.map((s) => [s.name, []]));
    const skipped = new Set();
    /** A fixed-rate row's rate: its share of a closed row's req/s in the same round (undefined without one). */
    const openRate = ({ of, share }, round) => {
      const base = perScenario.get(of)?.[round - 1];
      return base && !base.error && !base.skipped && base.rps > 0 ? Math.max(1, Math.round(base.rps * share)) : undefined;
    };
    for (let round = 1; round <= opts.rounds; round++) {
      for (const [i, scenario] of opts.scenarios.entries()) {
        if (skipped.has(scenario.name)) continue;
        if (i > 0 || round > 1) await sleep(opts.quick ? 200 : 1000); // let the previous scenario's sockets close
        log(`▶ ${scenario.name}${opts.rounds > 1 ? ` (round ${round}/${opts.rounds})` : ''}: ${scenario.label}`);
        let row;
        const rate = scenario.openShare ? openRate(scenario.openShare, round) : undefined;
        try {
          row = await runScenario(scenario, backends, { ...opts, rate }, tmp);
        } catch (err) {
          row = { scenario: scenario.name, label: scenario.label, proxy: scenario.proxy, error: err.message };
        }
        if (row.pid) processes.push({ name: scenario.name, pid: row.pid });
        perScenario.get(scenario.name).push(row);
        if (row.skipped) log(`  skipped: ${row.skipped}`);
        else if (row.error) log(`  ERROR: ${row.error}`);
        else log(`  ${row.rps} req/s, p50 ${row.latencyMs.p50} ms, p99 ${row.latencyMs.p99} ms, non-2xx ${row.non2xx}, errors ${row.errors}${row.rssMB.peak !== null ? `, RSS peak ${row.rssMB.peak} MB` : ''}${row.proxyCpu ? `, ${row.proxyCpu.usPerRequest} µs CPU/req` : ''}`);
        // The same reason holds in every round (nginx not installed...): the scenario is not tried
        // again (the others go on). A fixed-rate row without a rate in this round (its closed row
        // failed here) is tried again in the next.
        if (row.skipped && !(scenario.openShare && rate === undefined)) skipped.add(scenario.name);
      }
    }
    for (const roundRows of perScenario.values()) rows.push(mergeRounds(roundRows));

    let comparator = null;
    if (opts.runCompare) {
      log('▶ compare: comparator micro-benchmark (bench/compare.mjs)');
      comparator = await runComparator(opts.quick);
      if (comparator?.skipped) log(`  skipped: ${comparator.skipped}`);
      else if (comparator?.error) log(`  ERROR: ${comparator.error.split('\n')[0]}`);
    }

    const ratios = computeRatios(rows);
    const targets = checkTargets(rows, ratios);
    machine.loadavgAfter = os.loadavg();
    const report = {
      machine,
      params: {
        quick: opts.quick,
        connections: opts.connections,
        pipelining: 1,
        rounds: opts.rounds,
        warmupS: opts.warmupS,
        durationS: opts.durationS,
        scenarios: opts.scenarios.map((s) => s.name),
        paths: ITEM_PATHS,
        backendBodyBytes: bodies,
        slowShadowDelayMs: SLOW_MS,
        httpProxyAgent: { keepAlive: true, maxSockets: 256 },
        cutoverCli: relative(ROOT, opts.cli),
        nodeProxyFlags: opts.nodeFlags,
        nodeProxyEnv: opts.nodeEnv,
        pinned: opts.pins,
        nginx: nginxBinary(),
      },
      rows,
      ratios,
      targets,
      comparator,
      processes,
    };
    mkdirSync(dirname(opts.out), { recursive: true });
    writeFileSync(opts.out, `${JSON.stringify(report, null, 2)}\n`);

    console.log(markdown(report));
    console.log('\n### targets (informational, never a failing exit)\n');
    for (const line of targetLines(targets)) console.log(line);
    console.log(`\nwritten: ${opts.out}`);

    const failed = rows.filter((r) => r.error).map((r) => r.scenario);
    if (comparator?.error) failed.push(COMPARE);
    await stopAll();
    const left = liveChildren();
    if (left.length) log(`bench: children still running after stop: ${JSON.stringify(left)}`);
    rmSync(tmp, { recursive: true, force: true });
    if (failed.length) {
      log(`bench: scenarios failed: ${failed.join(', ')}`);
      process.exitCode = 1;
    }
  } catch (err) {
    log(`bench: ${err.stack ?? err}`);
    await cleanupAndExit(1);
  }
}

process.on('uncaughtException', (err) => {
  log(`bench: ${err.stack ?? err}`);
  killAllSync();
  process.exit(1);
});
process.on('unhandledRejection', (err) => {
  log(`bench: ${err?.stack ?? err}`);
  killAllSync();
  process.exit(1);
});

await main();
