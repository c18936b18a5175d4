#!/usr/bin/env node
// cutover benchmark runner: every speed claim as a ratio measured side by side in one run.
//
//   node bench/run.mjs [--quick] [--scenario a,b] [--duration s] [--warmup s] [--connections n]
//                      [--rounds n] [--out FILE] [--cli FILE] [--verbose]
//
// Starts fast JSON backends (legacy, new, new-but-slow, and a dead port) in their own processes, then
// measures each scenario in turn with the same load (autocannon, N connections, pipelining 1):
// warm-up, then measurement, while sampling the proxy process's RSS every 100 ms. Writes
// bench/results/latest.json (or --out) and prints a markdown table, the ratios and the targets.
// Targets are informational: a MISS never fails the run. The run fails (exit 1) only when the
// harness or a proxy under test breaks (a scenario errors), so `--quick` in CI proves the bench works.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { runLoad, ITEM_PATHS } from './lib/load.mjs';
import { deadPort, freePort } from './lib/ports.mjs';
import { killAllSync, liveChildren, startGuarded, startScript, stopAll, waitForHttp } from './lib/procs.mjs';
import { checkTargets, computeRatios, markdown, mergeRounds, targetLines } from './lib/report.mjs';
import { RssSampler, readCpuMs, readStatus, round1 } from './lib/rss.mjs';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(BENCH_DIR, '..');
const DEFAULT_CLI = join(ROOT, 'dist', 'cli', 'main.js');
const SLOW_MS = 200;

/** In run order. `shadowTo` names the backend that receives the mirror (and is `backends.new`). */
export const SCENARIOS = [
  { name: 'direct', label: 'direct to legacy (no proxy)', proxy: 'none' },
  { name: 'http-proxy', label: 'http-proxy 1.18, keep-alive agent', proxy: 'http-proxy' },
  { name: 'passthrough', label: 'cutover pass-through (weight 0, no shadow)', proxy: 'cutover', shadowPercent: 0, shadowTo: 'new' },
  { name: 'shadow', label: 'cutover 100% shadow + compare', proxy: 'cutover', shadowPercent: 100, shadowTo: 'new' },
  { name: 'shadow-slow', label: `cutover 100% shadow, shadow backend +${SLOW_MS} ms`, proxy: 'cutover', shadowPercent: 100, shadowTo: 'slow' },
  { name: 'shadow-dead', label: 'cutover 100% shadow, shadow backend dead', proxy: 'cutover', shadowPercent: 100, shadowTo: 'dead' },
];
/** Not a load scenario: the comparator micro-benchmark from bench/compare.mjs, when present. */
const COMPARE = 'compare';

function usage(message) {
  if (message) console.error(`bench: ${message}`);
  console.error(
    'usage: node bench/run.mjs [--quick] [--scenario a,b] [--duration s] [--warmup s] [--connections n] [--rounds n] [--out FILE] [--cli FILE] [--verbose]\n' +
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
  };
}

const log = (msg) => process.stderr.write(`${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Backends

async function startBackends(scenarios, verbose) {
  const needs = new Set(['legacy']);
  for (const s of scenarios) if (s.proxy === 'cutover') needs.add('new').add(s.shadowTo);
  const script = join(BENCH_DIR, 'backend.mjs');
  const urls = {};
  const started = await Promise.all(
    [...needs].filter((n) => n !== 'dead').map(async (name) => {
      const flavor = name === 'legacy' ? 'legacy' : 'new';
      const delay = name === 'slow' ? SLOW_MS : 0;
      const child = await startScript(`backend-${name}`, script, ['--flavor', flavor, '--delay', String(delay)], { verbose });
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

async function startHttpProxy(target, opts) {
  const child = await startScript('http-proxy', join(BENCH_DIR, 'http-proxy-server.mjs'), ['--target', target], { verbose: opts.verbose });
  return { child, url: `http://127.0.0.1:${child.ready.port}` };
}

function cutoverConfig(scenario, urls, ports) {
  return {
    listen: { host: '127.0.0.1', port: ports.listen },
    admin: { host: '127.0.0.1', port: ports.admin },
    backends: { legacy: { url: urls.legacy }, new: { url: urls[scenario.shadowTo] } },
    log: { level: 'warn' },
    defaults: { shadow: { percent: scenario.shadowPercent } },
    routes: [{ name: 'get-item', match: { methods: ['GET'], path: '/items/:id' }, weight: 0 }],
  };
}

async function startCutover(scenario, urls, opts, tmp) {
  let lastErr;
  // Ports are picked by binding to 0 and closing, then handed over in the config; another process
  // may take one in between, so one retry with fresh ports.
  for (let attempt = 1; attempt <= 2; attempt++) {
    const ports = { listen: await freePort(), admin: await freePort() };
    const config = cutoverConfig(scenario, urls, ports);
    const file = join(tmp, `cutover-${scenario.name}.yaml`);
    writeFileSync(file, `# written by bench/run.mjs (JSON is valid YAML)\n${JSON.stringify(config, null, 2)}\n`);
    const child = await startGuarded(`cutover-${scenario.name}`, process.execPath, [opts.cli, 'run', '--config', file], { verbose: opts.verbose, cwd: ROOT });
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
      const m = /^(cutover_(?:requests_total|comparisons_total|shadow_skipped_total))\{([^}]*)\}\s+([0-9.eE+-]+)/.exec(line);
      if (!m) continue;
      const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
      const value = Number(m[3]);
      if (m[1] === 'cutover_requests_total') add(`requests.${labels.role}.${labels.outcome}`, value);
      else if (m[1] === 'cutover_comparisons_total') add(`comparisons.${labels.result}`, value);
      else add(`shadowSkipped.${labels.reason}`, value);
    }
    return sums;
  } catch (err) {
    return { error: err.cause?.code ?? err.message };
  }
}

// ---------------------------------------------------------------------------------------------
// One scenario

async function measure(scenario, url, pid, opts) {
  const sampler = pid ? new RssSampler(pid) : null;
  const rssStart = sampler ? sampler.read() : null;
  sampler?.start();
  if (opts.warmupS > 0) await runLoad({ url, connections: opts.connections, durationS: opts.warmupS });
  const rssWarm = pid ? readStatus(pid).rssMB : null;
  const cpuBefore = pid ? readCpuMs(pid) : null;
  const load = await runLoad({ url, connections: opts.connections, durationS: opts.durationS });
  const cpuAfter = pid ? readCpuMs(pid) : null;
  const rssEnd = pid ? readStatus(pid).rssMB : null;
  const cpuMs = cpuBefore !== null && cpuAfter !== null ? cpuAfter - cpuBefore : null;
  const mem = sampler ? sampler.stop() : { peakMB: null, hwmMB: null, samples: 0 };
  return {
    ...load,
    // Proxy CPU spent per request while measured (µs), and the share of one core it used.
    proxyCpu: cpuMs === null ? null : { usPerRequest: load.requests ? Math.round((cpuMs * 1000) / load.requests) : null, coresUsed: Math.round((cpuMs / 1000 / load.durationS) * 100) / 100 },
    rssMB: { start: round1(rssStart), afterWarmup: round1(rssWarm), peak: round1(mem.peakMB), end: round1(rssEnd), hwm: round1(mem.hwmMB), samples: mem.samples },
  };
}

async function runScenario(scenario, backends, opts, tmp) {
  const base = { scenario: scenario.name, label: scenario.label, proxy: scenario.proxy };
  if (scenario.proxy === 'none') {
    return { ...base, target: backends.urls.legacy, ...(await measure(scenario, backends.urls.legacy, null, opts)) };
  }
  if (scenario.proxy === 'http-proxy') {
    const { child, url } = await startHttpProxy(backends.urls.legacy, opts);
    try {
      const row = { ...base, target: url, pid: child.pid, ...(await measure(scenario, url, child.pid, opts)) };
      if (!child.running) throw new Error(`http-proxy exited during the run\n${child.tail()}`);
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

async function main() {
  const opts = parseOptions(process.argv.slice(2));
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

  const machine = machineInfo();
  log(`bench: ${opts.scenarios.map((s) => s.name).join(', ') || '(no load scenarios)'}; ${opts.connections} connections, warm-up ${opts.warmupS} s, measure ${opts.durationS} s${opts.rounds > 1 ? `, ${opts.rounds} rounds` : ''}${opts.quick ? ' (quick)' : ''}`);
  const rows = [];
  const processes = [];
  let backends = { urls: {}, children: [] };
  try {
    if (opts.scenarios.length) {
      backends = await startBackends(opts.scenarios, opts.verbose);
      processes.push(...backends.children.map((c) => ({ name: c.name, pid: c.pid })));
    }
    const bodies = {};
    for (const name of ['legacy', 'new']) if (backends.urls[name]) bodies[name] = await bodyBytes(backends.urls[name]);

    // Rounds interleave the scenarios (A B C, A B C, ...) so that a burst of noise from elsewhere on
    // the machine lands on all of them alike; each row then reports the median over its rounds.
    const perScenario = new Map(opts.scenarios.map((s) => [s.name, []]));
    for (let round = 1; round <= opts.rounds; round++) {
      for (const [i, scenario] of opts.scenarios.entries()) {
        if (i > 0 || round > 1) await sleep(opts.quick ? 200 : 1000); // let the previous scenario's sockets close
        log(`▶ ${scenario.name}${opts.rounds > 1 ? ` (round ${round}/${opts.rounds})` : ''}: ${scenario.label}`);
        let row;
        try {
          row = await runScenario(scenario, backends, opts, tmp);
        } catch (err) {
          row = { scenario: scenario.name, label: scenario.label, proxy: scenario.proxy, error: err.message };
        }
        if (row.pid) processes.push({ name: scenario.name, pid: row.pid });
        perScenario.get(scenario.name).push(row);
        if (row.skipped) log(`  skipped: ${row.skipped}`);
        else if (row.error) log(`  ERROR: ${row.error}`);
        else log(`  ${row.rps} req/s, p50 ${row.latencyMs.p50} ms, p99 ${row.latencyMs.p99} ms, non-2xx ${row.non2xx}, errors ${row.errors}${row.rssMB.peak !== null ? `, RSS peak ${row.rssMB.peak} MB` : ''}${row.proxyCpu ? `, ${row.proxyCpu.usPerRequest} µs CPU/req` : ''}`);
        if (row.skipped) break; // the same reason holds for every round
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
