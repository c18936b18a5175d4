import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { registerCredentialRoutes } from '../src/admin/credentials.js';
import { loadFingerprintKey } from '../src/config/credentials.js';
import { validateConfig } from '../src/config/load.js';
import { MemoryStore } from '../src/cutover/store.js';
import { extractCredential, type LegacyLocation } from '../src/credentials/extract.js';
import { createFingerprinter, FINGERPRINT_PATTERN } from '../src/credentials/fingerprint.js';
import { CredentialInventory, STORE_KEY, type InventoryDocument } from '../src/credentials/inventory.js';
import { CredentialPolicy, revokedProblem } from '../src/credentials/policy.js';
import { ConfigError } from '../src/errors.js';
import { createStickyExtractor } from '../src/routing/sticky.js';
import { Telemetry } from '../src/telemetry/metrics.js';
import { CLI } from './helpers/proxy.js';

const dir = mkdtempSync(join(tmpdir(), 'cutover-creds-'));
const backends = { legacy: { url: 'http://127.0.0.1:9101' }, new: { url: 'http://127.0.0.1:9102' } };

describe('one credential extractor', () => {
  const all: LegacyLocation[] = [{ header: 'X-Api-Key' }, { bearer: true }, { cookie: 'session' }, { query: 'api_key' }, { basic: true }];
  it.each([
    ['header', { 'x-api-key': 'k1' }, '/a', { scheme: 'header', value: 'k1' }],
    ['bearer', { authorization: 'Bearer  t2 ' }, '/a', { scheme: 'bearer', value: 't2' }],
    ['cookie', { cookie: 'a=b; session=c3' }, '/a', { scheme: 'cookie', value: 'c3' }],
    ['query', {}, '/a?x=1&api_key=q4', { scheme: 'query', value: 'q4' }],
    ['basic', { authorization: `Basic ${Buffer.from('user:p5').toString('base64')}` }, '/a', { scheme: 'basic', value: 'user:p5' }],
    ['nothing', { authorization: 'Digest x' }, '/a?other=1', null],
  ])('%s', (_name, headers, url, expected) => {
    expect(extractCredential(headers, url, all)).toEqual(expected);
    // The same from rawHeaders (names in any case).
    const raw = Object.entries(headers).flatMap(([k, v]) => [k.toUpperCase(), v]);
    expect(extractCredential(raw, url, all)).toEqual(expected);
  });

  it('tries locations in config order', () => {
    const headers = { 'x-api-key': 'k', authorization: 'Bearer t' };
    expect(extractCredential(headers, '/', [{ bearer: true }, { header: 'x-api-key' }])?.value).toBe('t');
    expect(extractCredential(headers, '/', [{ header: 'x-api-key' }, { bearer: true }])?.value).toBe('k');
  });

  it('is what the sticky split uses for sticky.key: credential', () => {
    const sticky = createStickyExtractor('credential', [{ header: 'x-api-key' }, { bearer: true }]);
    expect(sticky?.({ authorization: 'bearer abc' }, '1.2.3.4')).toBe('abc');
    expect(sticky?.({}, '1.2.3.4')).toBeUndefined();
  });
});

describe('fingerprints', () => {
  it('are fp_ + 16 hex, keyed (another key gives another fingerprint), stable', () => {
    const a = createFingerprinter('key-a');
    const b = createFingerprinter('key-b');
    expect(a('secret')).toMatch(FINGERPRINT_PATTERN);
    expect(a('secret')).toBe(a('secret'));
    expect(a('secret')).not.toBe(b('secret'));
    expect(a('secret')).not.toBe(a('secret2'));
  });

  it('key file is created with mode 0600 when missing, and read back the same', () => {
    const file = join(dir, 'keys', 'fingerprint.key');
    const created = loadFingerprintKey({ fingerprintKeyFile: file });
    expect(created.origin).toBe('created');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const again = loadFingerprintKey({ fingerprintKeyFile: file });
    expect(again.origin).toBe('file');
    expect(again.key.equals(created.key)).toBe(true);
    expect(() => loadFingerprintKey({ fingerprintKeyFile: join(dir, 'nope.key') }, { create: false })).toThrow(/fingerprintKeyFile/);
    process.env.CUTOVER_TEST_FP_KEY = 'env-key';
    expect(loadFingerprintKey({ fingerprintKeyEnv: 'CUTOVER_TEST_FP_KEY' })).toMatchObject({ origin: 'env' });
    expect(loadFingerprintKey({}).origin).toBe('ephemeral');
  });

  it('an empty key file is refused (fingerprints would have no secret), and creating one leaves no temp file behind', () => {
    const empty = join(dir, 'empty.key');
    writeFileSync(empty, '\n');
    expect(() => loadFingerprintKey({ fingerprintKeyFile: empty })).toThrow(/fingerprintKeyFile .*empty\.key is empty/);
    const keys = join(dir, 'fresh');
    const created = loadFingerprintKey({ fingerprintKeyFile: join(keys, 'fp.key') });
    expect(created.origin).toBe('created');
    expect(readdirSync(keys)).toEqual(['fp.key']);
    expect(readFileSync(join(keys, 'fp.key'), 'utf8').trim()).toBe(created.key.toString());
  });

  it('cutover fingerprint prints the fingerprint of the key on stdin, under the config key', () => {
    const keyFile = join(dir, 'cli.key');
    writeFileSync(keyFile, 'the-proxy-key\n');
    const config = join(dir, 'cli.yaml');
    writeFileSync(config, `backends: { legacy: { url: "http://127.0.0.1:9101" }, new: { url: "http://127.0.0.1:9102" } }\ncredentials: { fingerprintKeyFile: cli.key }\n`);
    const r = spawnSync(process.execPath, [CLI, 'fingerprint', '--config', config], { input: 'client-key-123\n', encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(createFingerprinter('the-proxy-key')('client-key-123'));
    const noKey = join(dir, 'nokey.yaml');
    writeFileSync(noKey, `backends: { legacy: { url: "http://127.0.0.1:9101" }, new: { url: "http://127.0.0.1:9102" } }\n`);
    const r2 = spawnSync(process.execPath, [CLI, 'fingerprint', '--config', noKey], { input: 'k\n', encoding: 'utf8' });
    // Bad config and bad input are usage errors: exit 2, as the contract says.
    expect(r2.status).toBe(2);
    expect(r2.stderr).toContain('credentials.fingerprintKeyFile');
    const r3 = spawnSync(process.execPath, [CLI, 'fingerprint', '--config', config], { input: '', encoding: 'utf8' });
    expect(r3.status).toBe(2);
    expect(r3.stderr).toContain('No key on stdin');
    const usage = spawnSync(process.execPath, [CLI, '--help'], { encoding: 'utf8' });
    expect(usage.stdout).toContain('fingerprint');
  });
});

describe('credential config', () => {
  function problemsOf(input: unknown): readonly string[] {
    try {
      validateConfig(input, 'test.yaml', dir);
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
    return [];
  }

  it('defaults: no outbound auth, no revocations, no mappings', () => {
    const c = validateConfig({ backends }, 'test.yaml', dir);
    expect(c.backends.new.auth).toEqual({ type: 'none' });
    expect(c.credentials).toMatchObject({ revoked: [], mappings: [], requireMapping: false, inventory: { maxCredentials: 10_000, maxRoutesPerCredential: 32 } });
  });

  it('problems name their path', () => {
    const problems = problemsOf({
      backends: { legacy: backends.legacy, new: { url: backends.new.url, auth: { type: 'oauth2-client-credentials', tokenUrl: 'http://127.0.0.1:1/t', clientId: 'c' } } },
      credentials: { revoked: ['fp_xyz'], fingerprintKeyFile: 'a', fingerprintKeyEnv: 'B' },
    });
    expect(problems).toContain('credentials.revoked[0]: must be a fingerprint: fp_ and 16 hex digits (see `cutover fingerprint`)');
    const cross = problemsOf({
      backends: { legacy: { ...backends.legacy, auth: { type: 'static', valueFile: 'missing.txt' } }, new: { url: backends.new.url, auth: { type: 'oauth2-client-credentials', tokenUrl: 'http://127.0.0.1:1/t', clientId: 'c' } } },
      credentials: { fingerprintKeyFile: 'a', fingerprintKeyEnv: 'B', mappings: [{ fingerprint: 'fp_0123456789abcdef' }, { fingerprint: 'fp_0123456789abcdef', scope: 's' }] },
    });
    expect(cross).toContain('backends.new.auth: give clientSecretFile or clientSecretEnv');
    expect(cross.some((p) => p.startsWith('backends.legacy.auth.valueFile: cannot read'))).toBe(true);
    expect(cross).toContain('credentials: give fingerprintKeyFile or fingerprintKeyEnv, not both');
    expect(cross).toContain('credentials.mappings[0]: give a scope, an audience or a header');
    expect(cross).toContain('credentials.mappings[1].fingerprint: fp_0123456789abcdef is already mapped by credentials.mappings[0]');
    expect(problemsOf({ backends: { ...backends, new: { url: backends.new.url, auth: { type: 'basic' } } } })[0]).toMatch(/^backends\.new\.auth\.type/);
  });
});

describe('revocation and mapping decisions', () => {
  const fp = createFingerprinter('k');
  const mapped = fp('mapped-key');
  const revoked = fp('revoked-key');
  const other = fp('other-key');
  const headerFile = join(dir, 'partner.value');
  writeFileSync(headerFile, 'partner-secret\n');

  it('revoked → revoked; requireMapping: unmapped or no credential → legacy_only; mapped → allowed', () => {
    const policy = new CredentialPolicy({ revoked: [revoked], requireMapping: true, mappings: [{ fingerprint: mapped, scope: 'partner.read', header: { name: 'X-Partner', valueFile: headerFile } }] });
    expect(policy.decideNewPath(revoked)).toBe('revoked');
    expect(policy.decideNewPath(other)).toBe('legacy_only');
    expect(policy.decideNewPath(null)).toBe('legacy_only');
    expect(policy.decideNewPath(mapped)).toBe('allowed');
    expect(policy.mappingFor(mapped)).toEqual({ scope: 'partner.read', header: ['x-partner', 'partner-secret'] });
    const open = new CredentialPolicy({ revoked: [], requireMapping: false, mappings: [] });
    expect(open.decideNewPath(other)).toBe('allowed');
    expect(revokedProblem()).toMatchObject({ status: 401, code: 'REVOKED' });
  });
});

describe('inventory', () => {
  const fp = createFingerprinter('inventory-key');

  it('records first/last seen, counts, routes, backends, legacy status, client and User-Agent', async () => {
    const telemetry = new Telemetry({ defaultMetrics: false });
    const inv = new CredentialInventory({ telemetry, now: () => 10 * 3_600_000 });
    const a = fp('a');
    inv.record({ fingerprint: a, scheme: 'header', route: 'get-widget', backend: 'legacy', status: 200, client: '10.0.0.1', userAgent: 'billing-sync/1.0', at: 1_000 });
    inv.record({ fingerprint: a, scheme: 'header', route: 'list-widgets', backend: 'new', status: 200, client: '10.0.0.2', userAgent: 'billing-sync/1.1', at: 5_000 });
    const rec = inv.get(a);
    expect(rec).toMatchObject({ firstSeen: 1_000, lastSeen: 5_000, requests: 2, routes: { 'get-widget': 1_000, 'list-widgets': 5_000 }, backends: { legacy: 1, new: 1 }, lastBackend: 'new', legacyStatus: 200, legacyAccepted: true, lastClient: '10.0.0.2', lastUserAgent: 'billing-sync/1.1' });
    inv.record({ fingerprint: fp('recent'), scheme: 'bearer', route: 'get-widget', backend: 'legacy', status: 200, at: 10 * 3_600_000 - 60_000 });
    const text = await telemetry.exposition();
    expect(text).toContain('cutover_legacy_credentials_active{window="1h"} 1');
    expect(text).toContain('cutover_legacy_credentials_active{window="24h"} 2');
    expect(text).toContain('cutover_credential_requests_total{route="get-widget",scheme="header",backend="legacy"} 1');
    expect(text).toContain('cutover_credential_requests_total{route="list-widgets",scheme="header",backend="new"} 1');
  });

  it('a scanner of random keys that legacy rejects is counted apart and never pushes real integrations out', () => {
    const inv = new CredentialInventory({ maxCredentials: 3 });
    const real = [fp('r1'), fp('r2')];
    for (const f of real) inv.record({ fingerprint: f, scheme: 'header', route: 'get-widget', backend: 'legacy', status: 200 });
    for (let i = 0; i < 5_000; i++) inv.record({ fingerprint: fp(`scan-${i}`), scheme: 'header', route: 'other', backend: 'legacy', status: i % 2 ? 401 : 403 });
    const doc = inv.list();
    expect(doc.credentials.map((c) => c.fingerprint).sort()).toEqual([...real].sort());
    expect(doc.rejected).toMatchObject({ requests: 5_000, byRoute: { other: 5_000 } });
    // Random keys on a route new serves (legacy never judges them) have their own pool.
    for (let i = 0; i < 1_000; i++) inv.record({ fingerprint: fp(`new-only-${i}`), scheme: 'header', route: 'done', backend: 'new', status: 200 });
    const after = inv.list();
    expect(after.credentials.filter((c) => c.legacyAccepted === true).map((c) => c.fingerprint).sort()).toEqual([...real].sort());
    expect(after.credentials.filter((c) => c.legacyAccepted === null)).toHaveLength(3);
    expect(after).toMatchObject({ evicted: 0, evictedUnjudged: 997 });
    // A not-yet-judged key that legacy then accepts joins the accepted pool.
    const judged = fp('new-only-999');
    inv.record({ fingerprint: judged, scheme: 'header', route: 'get-widget', backend: 'legacy', status: 200 });
    expect(inv.get(judged)).toMatchObject({ legacyAccepted: true, backends: { legacy: 1, new: 1 } });
    // A known key that legacy starts refusing stays listed, marked as refused.
    inv.record({ fingerprint: real[0], scheme: 'header', route: 'get-widget', backend: 'legacy', status: 401 });
    expect(inv.get(real[0])).toMatchObject({ legacyStatus: 401, legacyAccepted: false });
  });

  it('accepted keys are bounded too: least recently seen evicted and counted; routes per key bounded', () => {
    const inv = new CredentialInventory({ maxCredentials: 2, maxRoutesPerCredential: 2 });
    const [a, b, c] = [fp('a'), fp('b'), fp('c')];
    inv.record({ fingerprint: a, scheme: 'header', route: 'r1', backend: 'legacy', status: 200, at: 1 });
    inv.record({ fingerprint: b, scheme: 'header', route: 'r1', backend: 'legacy', status: 200, at: 2 });
    inv.record({ fingerprint: a, scheme: 'header', route: 'r2', backend: 'legacy', status: 200, at: 3 });
    inv.record({ fingerprint: c, scheme: 'header', route: 'r1', backend: 'legacy', status: 200, at: 4 });
    expect(inv.list().credentials.map((x) => x.fingerprint)).toEqual([c, a]);
    expect(inv.list().evicted).toBe(1);
    inv.record({ fingerprint: a, scheme: 'header', route: 'r3', backend: 'legacy', status: 200, at: 5 });
    expect(inv.get(a)).toMatchObject({ routes: { r1: 1, r2: 3 }, routesDropped: 1 });
  });

  it('persists through the state store (debounced) and is restored after a restart', async () => {
    const store = new MemoryStore();
    const inv = new CredentialInventory({ store, persistDelayMs: 20 });
    const a = fp('persisted');
    inv.record({ fingerprint: a, scheme: 'cookie', route: 'get-widget', backend: 'legacy', status: 200, client: '10.1.1.1', at: 7_000 });
    inv.record({ fingerprint: fp('nope'), scheme: 'cookie', route: 'get-widget', backend: 'legacy', status: 401, at: 8_000 });
    // Nothing is written on the request path.
    expect(store.snapshot().extra[STORE_KEY]).toBeUndefined();
    const deadline = Date.now() + 5_000;
    while (store.snapshot().extra[STORE_KEY] === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const saved = store.snapshot().extra[STORE_KEY] as InventoryDocument;
    expect(saved.credentials.map((c) => c.fingerprint)).toEqual([a]);
    expect(saved.rejected.requests).toBe(1);
    // "Restart": a new inventory over a store holding what the old one wrote.
    const restored = new CredentialInventory({ store: new MemoryStore(structuredClone(store.snapshot())) });
    await restored.load();
    expect(restored.get(a)).toMatchObject({ firstSeen: 7_000, requests: 1, scheme: 'cookie', lastClient: '10.1.1.1', routes: { 'get-widget': 7_000 } });
    expect(restored.list().rejected.requests).toBe(1);
    restored.record({ fingerprint: a, scheme: 'cookie', route: 'get-widget', backend: 'legacy', status: 200, at: 9_000 });
    expect(restored.get(a)).toMatchObject({ firstSeen: 7_000, lastSeen: 9_000, requests: 2 });
  });

  it('leaves out a record damaged on disk (a time out of range or not a number), and a bad route time, keeping the rest', async () => {
    const store = new MemoryStore();
    const inv = new CredentialInventory({ store, persistDelayMs: 1 });
    const [good, noFirst, farLast, textRoute] = [fp('good'), fp('no-first'), fp('far-last'), fp('text-route')];
    for (const f of [good, noFirst, farLast, textRoute]) inv.record({ fingerprint: f, scheme: 'header', route: 'r', backend: 'legacy', status: 200, at: 1_000 });
    const deadline = Date.now() + 5_000;
    while (store.snapshot().extra[STORE_KEY] === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const snapshot = structuredClone(store.snapshot());
    const doc = snapshot.extra[STORE_KEY] as { credentials: Record<string, unknown>[] };
    const damage = (f: string, change: (r: Record<string, unknown>) => void) => change(doc.credentials.find((r) => r.fingerprint === f)!);
    damage(noFirst, (r) => delete r.firstSeen);
    damage(farLast, (r) => (r.lastSeen = 1e17));
    damage(textRoute, (r) => (r.routes = { r: '1000', s: 2_000 }));
    const restored = new CredentialInventory({ store: new MemoryStore(snapshot) });
    await restored.load();
    expect(restored.list().credentials.map((c) => c.fingerprint).sort()).toEqual([good, textRoute].sort());
    expect(restored.get(textRoute)?.routes).toEqual({ s: 2_000 });
    // Every record left can be shown (new Date(...).toISOString() threw on the damaged ones).
    for (const c of restored.list().credentials) for (const t of [c.firstSeen, c.lastSeen, ...Object.values(c.routes)]) expect(() => new Date(t).toISOString()).not.toThrow();
  });

  it('stragglers: credentials still accepted and seen on a complete route after it completed', () => {
    const inv = new CredentialInventory();
    const [early, late, refused] = [fp('early'), fp('late'), fp('refused')];
    inv.record({ fingerprint: early, scheme: 'header', route: 'get-widget', backend: 'legacy', status: 200, at: 100 });
    inv.record({ fingerprint: late, scheme: 'header', route: 'get-widget', backend: 'legacy', status: 200, at: 300 });
    inv.record({ fingerprint: late, scheme: 'header', route: 'list-widgets', backend: 'legacy', status: 200, at: 300 });
    inv.record({ fingerprint: refused, scheme: 'header', route: 'get-widget', backend: 'legacy', status: 200, at: 300 });
    inv.record({ fingerprint: refused, scheme: 'header', route: 'get-widget', backend: 'legacy', status: 403, at: 301 });
    const s = inv.stragglers(new Map([['get-widget', 200]]));
    expect(s.map((x) => [x.fingerprint, x.routes])).toEqual([[late, ['get-widget']]]);
    expect(inv.stragglers(['get-widget', 'list-widgets']).map((x) => x.fingerprint).sort()).toEqual([early, late].sort());
  });
});

describe('GET /api/credentials', () => {
  it('answers JSON, and CSV with a header row (formula cells defused)', async () => {
    const inv = new CredentialInventory();
    const a = fp2('csv-key');
    inv.record({ fingerprint: a, scheme: 'bearer', route: 'get-widget', backend: 'legacy', status: 200, client: '10.0.0.9', userAgent: '=HYPERLINK("x"), evil', at: Date.UTC(2026, 0, 2) });
    const app = Fastify();
    registerCredentialRoutes(app, { inventory: inv });
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
      const json = await fetch(`${base}/api/credentials`);
      expect(json.status).toBe(200);
      const body = (await json.json()) as { credentials: Record<string, unknown>[]; rejected: { requests: number } };
      expect(body.credentials[0]).toMatchObject({ fingerprint: a, scheme: 'bearer', lastSeen: '2026-01-02T00:00:00.000Z', requests: 1, legacyAccepted: true });
      const csv = await fetch(`${base}/api/credentials?format=csv`);
      expect(csv.headers.get('content-type')).toMatch(/^text\/csv/);
      const lines = (await csv.text()).trim().split('\n');
      expect(lines[0]).toBe('fingerprint,scheme,first_seen,last_seen,requests,routes,served_by_legacy,served_by_new,last_backend,legacy_status,legacy_accepted,last_client,last_user_agent');
      expect(lines[1]).toBe(`${a},bearer,2026-01-02T00:00:00.000Z,2026-01-02T00:00:00.000Z,1,get-widget,1,0,legacy,200,true,10.0.0.9,"'=HYPERLINK(""x""), evil"`);
      expect(lines).toHaveLength(2);
      expect((await fetch(`${base}/api/credentials?format=xml`)).status).toBe(400);
    } finally {
      await app.close();
    }
  });
});

function fp2(value: string): string {
  return createFingerprinter('admin-key')(value);
}
