import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { Agent, request } from 'undici';
import { stringify } from 'yaml';
import { startApp, type App } from '../src/app.js';
import { loadConfig } from '../src/config/load.js';
import type { RouteState } from '../src/cutover/types.js';
import { createLogger } from '../src/telemetry/logger.js';
import { startBackend, waitFor, type TestBackend } from './helpers/backend.js';
import { baseConfig, CLI, spawnProxy } from './helpers/proxy.js';
import { sample, scrape, total } from './helpers/metrics.js';

const TOKEN = 'reload-test-token';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

async function backend(name: string): Promise<TestBackend> {
  const b = await startBackend((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ backend: name, url: req.url }));
  });
  cleanups.push(() => b.close());
  return b;
}

function seed(route: string): () => RouteState {
  return () => ({ route, weight: 0, step: 0, state: 'shadow', paused: false, since: 0, passes: 0, failures: 0, history: [], changedAt: 0, changedBy: 'test', reason: '' });
}

interface Fixture {
  app: App;
  file: string;
  logs: string[];
  write(raw: Record<string, unknown>): void;
}

/** A proxy started from a config file, reloadable from it, as `cutover run` does. */
async function start(raw: Record<string, unknown>, files: Record<string, string> = {}): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), 'cutover-reload-'));
  const file = join(dir, 'cutover.yaml');
  writeFileSync(join(dir, 'token'), TOKEN);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const write = (next: Record<string, unknown>) => writeFileSync(file, stringify(next));
  write(raw);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const config = await loadConfig(file);
  const app = await startApp(config, { logger: createLogger('info', sink), defaultMetrics: false, reloadConfig: () => loadConfig(file) });
  cleanups.push(() => app.close(100));
  return { app, file, logs, write };
}

function routes(extra: { compareIgnore?: string[]; seedA?: number; withC?: boolean } = {}): Record<string, unknown>[] {
  return [
    { name: 'a', match: { methods: ['GET'], path: '/a/:id' }, weight: extra.seedA ?? 0, compare: { ignore: extra.compareIgnore ?? [] } },
    { name: 'b', match: { methods: ['GET'], path: '/b/:id' } },
    ...(extra.withC ? [{ name: 'c', match: { methods: ['GET'], path: '/c/:id' } }] : []),
  ];
}

describe('hot reload', () => {
  it('reloads good and bad files under load: no request fails, no comparison is dropped, state is carried by name', async () => {
    const legacy = await backend('legacy');
    const next = await backend('new');
    const base = baseConfig(legacy.url, next.url, {
      admin: { host: '127.0.0.1', port: 0, tokenFile: 'token' },
      defaults: { shadow: { baselinePercent: 0 } },
      // Every mirror must be compared here: no load shedding in this busy test process.
      shadow: { maxInFlight: 10_000, shedAt: { eventLoopDelay: 0, utilisation: 1 } },
      cutover: { state: { store: 'memory' } },
      log: { level: 'info' },
    });
    const f = await start({ ...base, routes: routes() });
    // The store says route a is fully on new; no config seed may take that away.
    await f.app.store.updateRoute('a', seed('a'), (c) => ({ ...c, weight: 100 }));

    const agent = new Agent({ connections: 20 });
    cleanups.push(() => agent.close());
    const statuses = new Map<number, number>();
    const servedA = new Map<string, number>();
    let sent = 0;
    let running = true;
    const worker = async (w: number) => {
      for (let i = 0; i < 400 && running; i++) {
        const route = i % 2 === 0 ? 'a' : 'b';
        const res = await request(`${f.app.dataUrl}/${route}/${w}-${i}`, { dispatcher: agent });
        const body = (await res.body.json()) as { backend: string };
        sent++;
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        if (route === 'a') servedA.set(body.backend, (servedA.get(body.backend) ?? 0) + 1);
      }
    };
    const load = Promise.all(Array.from({ length: 20 }, (_, w) => worker(w)));

    const bad = [
      { ...base, routes: [...routes(), { name: 'x', match: { path: 'no-slash' } }] },
      { ...base, listen: { host: '127.0.0.1', port: 1 }, routes: routes() },
    ];
    const good = [
      { ...base, routes: routes({ compareIgnore: ['$.url'], seedA: 0, withC: true }) },
      { ...base, routes: routes({ seedA: 50 }) },
    ];
    let ok = 0;
    let refused = 0;
    const versions: number[] = [];
    for (let round = 0; round < 8; round++) {
      // Each reload lands while requests are in flight.
      const before = sent;
      await waitFor(() => sent >= before + 50 || sent >= 8_000, 10_000, 'traffic between reloads');
      const goodRound = round % 2 === 0;
      f.write(goodRound ? good[(round / 2) % 2] : bad[((round - 1) / 2) % 2]);
      const outcome = await f.app.reload('test');
      if (goodRound) {
        expect(outcome.ok, JSON.stringify(outcome)).toBe(true);
        ok++;
      } else {
        expect(outcome.ok).toBe(false);
        refused++;
      }
      versions.push(f.app.snapshots.current().version);
    }
    running = false;
    await load;
    console.log(`reload under load: ${sent} requests, ${ok} good and ${refused} refused reloads`);

    expect([...statuses.keys()]).toEqual([200]);
    // Store weight 100 won over every seed the reloaded files gave (0, 50).
    expect([...servedA.keys()]).toEqual(['new']);
    expect(versions).toEqual([2, 2, 3, 3, 4, 4, 5, 5]);
    // Every request to a and b was mirrored and compared, across all the reloads: none dropped.
    const reqs = (await f.app.analysis.diffs('a'))!.comparisons.total + f.app.analysis.diffs('b')!.comparisons.total;
    await waitFor(() => f.app.analysis.diffs('a')!.comparisons.total + f.app.analysis.diffs('b')!.comparisons.total === sent, 10_000, `all ${sent} comparisons (have ${reqs})`);
    const text = await scrape(f.app);
    const compared = total(text, 'cutover_comparisons_total{route="a"') + total(text, 'cutover_comparisons_total{route="b"');
    expect(compared).toBe(sent);
    expect(sample(text, 'cutover_shadow_skipped_total{route="a",reason="overload"}') + sample(text, 'cutover_shadow_skipped_total{route="b",reason="overload"}')).toBe(0);
    expect(sample(text, 'cutover_config_reloads_total{result="ok"}')).toBe(ok);
    expect(sample(text, 'cutover_config_reloads_total{result="error"}')).toBe(refused);
    expect(text.match(/^cutover_config_info\{/gm)).toHaveLength(1);
    expect(sample(text, `cutover_config_info{hash="${f.app.snapshots.current().hash}"}`)).toBe(1);
    expect(text).toMatch(/^cutover_traffic_weight\{route="a"\} 100$/m);
    const refusals = f.logs.filter((l) => l.includes('config reload refused'));
    expect(refusals).toHaveLength(refused);
    expect(refusals.join('\n')).toContain('routes[2].match.path');
    expect(refusals.join('\n')).toContain('listen.port: changed from 0 to 1');
  }, 120_000);

  it('lets a request in flight finish on the snapshot it started with', async () => {
    let release: (() => void) | null = null;
    const held = new Promise<void>((resolve) => (release = resolve));
    let calls = 0;
    const legacy = await startBackend((_req, res) => {
      const answer = () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ id: 1, t: 'legacy' }));
      };
      // The first call is held until the reload is done.
      if (calls++ === 0) void held.then(answer);
      else answer();
    });
    cleanups.push(() => legacy.close());
    const next = await startBackend((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ id: 1, t: 'new' }));
    });
    cleanups.push(() => next.close());
    const base = baseConfig(legacy.url, next.url, { defaults: { shadow: { baselinePercent: 0 } }, cutover: { state: { store: 'memory' } } });
    const f = await start({ ...base, routes: [{ name: 'a', match: { path: '/a/:id' }, compare: { ignore: ['$.t'] } }] });
    const inFlight = request(`${f.app.dataUrl}/a/1`).then((r) => r.body.text());
    await waitFor(() => calls === 1 && next.received.length === 1, 5_000, 'the held request and its mirror');
    f.write({ ...base, routes: [{ name: 'a', match: { path: '/a/:id' } }] });
    expect((await f.app.reload('test')).ok).toBe(true);
    release!();
    await inFlight;
    await (await request(`${f.app.dataUrl}/a/2`)).body.text();
    await waitFor(() => f.app.analysis.diffs('a')!.comparisons.total === 2, 5_000, 'both comparisons');
    // The held request was compared under the rules it started with ($.t ignored); the next one under the new rules.
    expect(f.app.analysis.diffs('a')!.comparisons).toMatchObject({ match: 1, mismatch: 1 });
  });

  it('compares and counts the mirrors still on their way when a reload removes their route (requests stay comparisons plus skips)', async () => {
    let release: (() => void) | null = null;
    const held = new Promise<void>((resolve) => (release = resolve));
    const legacy = await backend('legacy');
    // The mirrors are held until the reload is done.
    const next = await startBackend((req, res) => {
      void held.then(() => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ backend: 'legacy', url: req.url }));
      });
    });
    cleanups.push(() => next.close());
    const base = baseConfig(legacy.url, next.url, { defaults: { shadow: { baselinePercent: 0 } }, cutover: { state: { store: 'memory' } } });
    const f = await start({ ...base, routes: [{ name: 'gone', match: { path: '/g/:id' } }, routes()[1]] });
    for (let i = 0; i < 3; i++) await (await request(`${f.app.dataUrl}/g/${i}`)).body.text();
    await waitFor(() => next.received.length === 3, 5_000, 'the three mirrors');
    f.write({ ...base, routes: [routes()[1]] });
    expect((await f.app.reload('test')).ok).toBe(true);
    release!();
    const counted = async () => total(await f.app.telemetry.exposition(), 'cutover_comparisons_total{route="gone"');
    await waitFor(async () => (await counted()) === 3, 5_000, 'the removed route\'s three comparisons');
    const text = await f.app.telemetry.exposition();
    expect(sample(text, 'cutover_comparisons_total{route="gone",result="match"}')).toBe(3);
    expect(total(text, 'cutover_shadow_skipped_total{route="gone"')).toBe(0);
    expect(f.app.analysis.diffs('gone')).toBeUndefined();
  });

  it('answers POST /api/reload: 200 with the new hash, problem+json naming the problems, and 401 without a token', async () => {
    const legacy = await backend('legacy');
    const next = await backend('new');
    const base = baseConfig(legacy.url, next.url, { admin: { host: '127.0.0.1', port: 0, tokenFile: 'token' }, cutover: { state: { store: 'memory' } } });
    const f = await start({ ...base, routes: routes() });
    const post = async (token?: string) => {
      const res = await request(`${f.app.adminUrl}/api/reload`, { method: 'POST', headers: token ? { authorization: `Bearer ${token}` } : {} });
      return { status: res.statusCode, type: res.headers['content-type'], body: (await res.body.json()) as Record<string, any> };
    };
    expect((await post()).status).toBe(401);

    const first = f.app.snapshots.current().hash;
    expect(await post(TOKEN)).toMatchObject({ status: 200, body: { status: 'unchanged', version: 1, hash: first } });

    f.write({ ...base, routes: [...routes(), { name: 'a', match: { path: '/dup' }, weight: 101 }] });
    const invalid = await post(TOKEN);
    expect(invalid.status).toBe(422);
    expect(invalid.type).toContain('application/problem+json');
    expect(invalid.body.code).toBe('CONFIG_INVALID');
    expect(invalid.body.detail).toContain(`the running config (${first}) is kept`);
    expect(invalid.body.problems).toEqual([expect.stringMatching(/^routes\[2\]\.weight: /)]);
    expect(invalid.body.hash).toBe(first);

    f.write({ ...base, admin: { host: '127.0.0.1', port: 1, tokenFile: 'token' }, routes: routes() });
    const restart = await post(TOKEN);
    expect(restart.status).toBe(409);
    expect(restart.body.code).toBe('CONFIG_NEEDS_RESTART');
    expect(restart.body.problems).toEqual([expect.stringMatching(/^admin\.port: changed from 0 to 1, and only a restart applies it/)]);

    f.write({ ...base, cutover: { state: { store: 'file' } }, routes: routes() });
    expect((await post(TOKEN)).body.problems).toEqual([expect.stringMatching(/^cutover\.state\.store: changed from "memory" to "file"/)]);

    f.write({ ...base, routes: routes({ withC: true }) });
    const good = await post(TOKEN);
    expect(good).toMatchObject({ status: 200, body: { status: 'reloaded', version: 2, routes: ['a', 'b', 'c'] } });
    expect(good.body.hash).not.toBe(first);
    const res = await request(`${f.app.dataUrl}/c/1`);
    expect(((await res.body.json()) as { backend: string }).backend).toBe('legacy');
    expect(f.app.analysis.diffs('c')).toBeDefined();
  });

  it("a route removed by a reload stops exporting its gauges (no ghost weight on the dashboard); its counters stay", async () => {
    const legacy = await backend('legacy');
    const next = await backend('new');
    const base = baseConfig(legacy.url, next.url, { cutover: { state: { store: 'memory' } } });
    const f = await start({ ...base, routes: routes({ seedA: 25 }) });
    await request(`${f.app.dataUrl}/a/1`).then((r) => r.body.dump());
    const before = await f.app.telemetry.exposition();
    expect(sample(before, 'cutover_traffic_weight{route="a"}')).toBe(25);
    f.write({ ...base, routes: [{ name: 'orders', match: { methods: ['GET'], path: '/a/:id' }, weight: 25 }, routes()[1]] });
    expect((await f.app.reload('test')).ok).toBe(true);
    const after = await f.app.telemetry.exposition();
    expect(after).not.toMatch(/^cutover_(traffic_weight|stage|state|gate_status)\{route="a"/m);
    expect(sample(after, 'cutover_traffic_weight{route="orders"}')).toBe(25);
    expect(total(after, 'cutover_requests_total{route="a"')).toBeGreaterThanOrEqual(1);
  });

  it('sees rotated secrets: refuses one under a restart-only key, applies a mapping value, refuses an empty one and keeps the running config whole', async () => {
    const legacy = await backend('legacy');
    const next = await backend('new');
    const base = baseConfig(legacy.url, next.url, { admin: { host: '127.0.0.1', port: 0, tokenFile: 'token' }, cutover: { state: { store: 'memory' } } });
    const mapping = { fingerprintKeyFile: 'fp.key', mappings: [{ fingerprint: `fp_${'f'.repeat(16)}`, header: { name: 'x-new-key', valueFile: 'v.txt' } }] };
    const f = await start({ ...base, credentials: mapping, routes: routes({ seedA: 100 }) }, { 'v.txt': 'value-1', 'fp.key': 'fingerprint-key' });
    const dir = join(f.file, '..');
    const post = async () => {
      const res = await request(`${f.app.adminUrl}/api/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
      return { status: res.statusCode, body: (await res.body.json()) as Record<string, any> };
    };
    // The admin token file's content changed: admin is restart-only, so the reload says so (it said "unchanged").
    writeFileSync(join(dir, 'token'), 'rotated-token');
    const rotated = await post();
    expect(rotated.status).toBe(409);
    expect(rotated.body.problems).toEqual([expect.stringMatching(/^admin\.tokenFile: the secret it names changed, and only a restart applies it/)]);
    writeFileSync(join(dir, 'token'), TOKEN);
    // A mapping's value is reloadable: a rotated one is a change to take (it was "unchanged").
    writeFileSync(join(dir, 'v.txt'), 'value-2');
    expect((await post()).body.status).toBe('reloaded');
    // An empty value file is refused before anything is swapped: the new route c is not served.
    writeFileSync(join(dir, 'v.txt'), '');
    f.write({ ...base, credentials: mapping, routes: routes({ seedA: 100, withC: true }) });
    const empty = await post();
    expect(empty.status).toBe(422);
    expect(empty.body.problems).toEqual([expect.stringMatching(/^credentials\.mappings\[0\]\.header\.valueFile: .* is empty$/)]);
    expect(f.app.snapshots.current().routes.routes.map((r) => r.name)).not.toContain('c');
    // The audit log is opened at start: moving it is a restart.
    writeFileSync(join(dir, 'v.txt'), 'value-2');
    f.write({ ...base, credentials: mapping, cutover: { state: { store: 'memory' }, audit: { path: 'audit.jsonl' } }, routes: routes({ seedA: 100 }) });
    expect((await post()).body.problems).toEqual([expect.stringMatching(/^cutover\.audit\.path: changed/)]);
  });

  it('reloads after a start that created the fingerprint key file: unchanged is unchanged, and a revocation goes live', async () => {
    const legacy = await backend('legacy');
    const next = await backend('new');
    const base = baseConfig(legacy.url, next.url, { admin: { host: '127.0.0.1', port: 0, tokenFile: 'token' }, cutover: { state: { store: 'memory' } } });
    const credentials = { fingerprintKeyFile: 'fp.key', legacy: [{ header: 'x-api-key' }] };
    // No fp.key yet: this start makes it.
    const f = await start({ ...base, credentials, routes: routes() });
    const post = async () => {
      const res = await request(`${f.app.adminUrl}/api/reload`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
      return { status: res.statusCode, body: (await res.body.json()) as Record<string, any> };
    };
    const unchanged = await post();
    expect(unchanged.status).toBe(200);
    expect(unchanged.body.status).toBe('unchanged');
    const res = await request(`${f.app.dataUrl}/a/1`, { headers: { 'x-api-key': 'straggler-key-1' } });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
    const fingerprint = f.app.credentials.inventory.list().credentials[0].fingerprint;
    f.write({ ...base, credentials: { ...credentials, revoked: [fingerprint] }, routes: routes() });
    expect((await post()).body.status).toBe('reloaded');
    const revoked = await request(`${f.app.dataUrl}/a/1`, { headers: { 'x-api-key': 'straggler-key-1' } });
    expect(revoked.statusCode).toBe(401);
    expect(((await revoked.body.json()) as { code: string }).code).toBe('REVOKED');
  });

  it('reloads a running `cutover run` on SIGHUP and through `cutover reload`', async () => {
    const legacy = await backend('legacy');
    const next = await backend('new');
    const dir = mkdtempSync(join(tmpdir(), 'cutover-reload-cli-'));
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, TOKEN);
    const base = baseConfig(legacy.url, next.url, { admin: { host: '127.0.0.1', port: 0, tokenFile } });
    const p = await spawnProxy({ ...base, routes: routes() });
    cleanups.push(() => p.stop());
    const hashOf = (text: string) => /^cutover_config_info\{hash="([0-9a-f]+)"\} 1$/m.exec(text)?.[1];
    const first = hashOf(await scrape(p));
    expect(first).toMatch(/^[0-9a-f]{12}$/);

    writeFileSync(p.file, stringify({ ...base, routes: routes({ withC: true }) }));
    p.child.kill('SIGHUP');
    await waitFor(async () => sample(await scrape(p), 'cutover_config_reloads_total{result="ok"}') === 1, 10_000, 'the SIGHUP reload');
    expect(hashOf(await scrape(p))).not.toBe(first);
    expect(((await (await request(`${p.dataUrl}/c/1`)).body.json()) as { backend: string }).backend).toBe('legacy');

    const cli = (args: string[]) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const child = spawn(process.execPath, [CLI, 'reload', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        child.stdout.on('data', (c) => (out += c));
        child.stderr.on('data', (c) => (err += c));
        child.on('exit', (code) => resolve({ code, out, err }));
      });
    writeFileSync(p.file, stringify({ ...base, routes: [...routes(), { name: 'bad', match: { path: '/x' }, shadow: { percent: 200 } }] }));
    const refused = await cli(['--admin', p.adminUrl, '--token-file', tokenFile]);
    expect(refused.code).toBe(2);
    expect(refused.err).toContain('cutover: reload refused:');
    expect(refused.err).toContain('routes[2].shadow.percent');
    expect(refused.err.split('\n').filter(Boolean).length).toBeGreaterThanOrEqual(2);

    writeFileSync(p.file, stringify({ ...base, routes: routes({ seedA: 10 }) }));
    const done = await cli(['--admin', p.adminUrl, '--token-file', tokenFile]);
    expect(done).toMatchObject({ code: 0, err: '' });
    expect(done.out).toMatch(/^cutover: config reloaded: version 3, hash [0-9a-f]{12}, 2 routes\n$/);

    const noToken = await cli(['--admin', p.adminUrl]);
    expect(noToken.code).toBe(1);
    expect(noToken.err).toContain('admin token');
    const text = await scrape(p);
    expect(sample(text, 'cutover_config_reloads_total{result="ok"}')).toBe(2);
    expect(sample(text, 'cutover_config_reloads_total{result="error"}')).toBe(1);
  }, 60_000);
});
