/**
 * The pieces as the upstream-shaping layer will use them: built from a validated config, one
 * `inspect` per request, the header from `outbound.new`, a 401 purged and retried once, the answer
 * recorded in the inventory, the inventory surviving a restart through the state store.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../src/config/load.js';
import { MemoryStore } from '../src/cutover/store.js';
import { Credentials, retryOnceAfter, revokedProblem, type Header, type RequestCredential } from '../src/credentials/index.js';
import { createFingerprinter } from '../src/credentials/fingerprint.js';
import { Telemetry } from '../src/telemetry/metrics.js';
import { startBackend, type TestBackend } from './helpers/backend.js';

const dir = mkdtempSync(join(tmpdir(), 'cutover-facade-'));
writeFileSync(join(dir, 'secret'), 's3cret');
writeFileSync(join(dir, 'fp.key'), 'facade-key');
const fp = createFingerprinter('facade-key');

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

async function world() {
  let issued = 0;
  const tokens = await startBackend((_req, res) => {
    issued++;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ access_token: `tok-${issued}`, token_type: 'Bearer', expires_in: 3600 }));
  });
  // The new API: refuses the first token it ever sees (as if revoked at the IdP), accepts the rest.
  const newApi: TestBackend = await startBackend((req, res) => {
    res.statusCode = req.headers.authorization === 'Bearer tok-1' ? 401 : 200;
    res.end(res.statusCode === 200 ? 'ok' : 'unauthorized');
  });
  closers.push(() => tokens.close(), () => newApi.close());
  const config = validateConfig(
    {
      backends: {
        legacy: { url: 'http://127.0.0.1:9101' },
        new: { url: newApi.url, auth: { type: 'oauth2-client-credentials', tokenUrl: `${tokens.url}/token`, clientId: 'cutover', clientSecretFile: 'secret' } },
      },
      credentials: {
        legacy: [{ header: 'x-api-key' }],
        fingerprintKeyFile: 'fp.key',
        revoked: [fp('revoked-key')],
        mappings: [{ fingerprint: fp('partner-key'), scope: 'partner.read' }],
        requireMapping: true,
      },
    },
    'facade.yaml',
    dir,
  );
  return { config, tokens, newApi };
}

/** What the shaping layer will do toward new: header (sync when cached), send, purge and retry once on 401. */
async function sendToNew(creds: Credentials, url: string, method: string, cred: RequestCredential): Promise<number> {
  const auth = creds.outbound.new;
  let retried = false;
  for (;;) {
    const header: Header | null = auth.cachedHeader(cred.mapping) ?? (await auth.headerFor(cred.mapping));
    const res = await request(`${url}/v2/widgets/1`, { method, headers: header ? { [header[0]]: header[1] } : {} });
    await res.body.dump();
    if (res.statusCode === 401) auth.purge(cred.mapping, header);
    if (!retryOnceAfter(auth, method, res.statusCode, retried)) return res.statusCode;
    retried = true;
  }
}

describe('credentials as the proxy wires them', () => {
  it('inspect → decision and mapping; outbound header; 401 purged and retried once; inventory recorded and restored', async () => {
    const { config, tokens, newApi } = await world();
    const store = new MemoryStore();
    const telemetry = new Telemetry({ defaultMetrics: false });
    const creds = await Credentials.create(config, { store, telemetry });
    expect(creds.keyOrigin).toBe('file');
    expect(await telemetry.exposition()).toContain('cutover_token_fetches_total{backend="new",result="ok"} 0');

    expect(creds.inspect({ 'x-api-key': 'revoked-key' }, '/v1/widgets/1')).toMatchObject({ decision: 'revoked', scheme: 'header' });
    expect(revokedProblem().status).toBe(401);
    expect(creds.inspect({ 'x-api-key': 'unmapped-key' }, '/v1/widgets/1')).toMatchObject({ decision: 'legacy_only', mapping: undefined });
    expect(creds.inspect({}, '/v1/widgets/1')).toEqual({ fingerprint: null, scheme: null, decision: 'legacy_only', mapping: undefined });
    expect(creds.secretsIn({}, '/v1/widgets/1')).toEqual([]);
    const partner = creds.inspect(['X-Api-Key', 'partner-key'], '/v1/widgets/1');
    expect(partner).toEqual({ fingerprint: fp('partner-key'), scheme: 'header', decision: 'allowed', mapping: { scope: 'partner.read' } });
    expect(creds.secretsIn(['X-Api-Key', 'partner-key'], '/v1/widgets/1')).toEqual(['partner-key']);
    expect(creds.secretsLater(['X-Api-Key', 'partner-key'], '/v1/widgets/1')()).toEqual(['partner-key']);

    // GET: tok-1 refused → purged → tok-2 → 200. POST is not retried.
    expect(await sendToNew(creds, newApi.url, 'GET', partner)).toBe(200);
    expect(newApi.received.map((r) => r.headers.authorization)).toEqual(['Bearer tok-1', 'Bearer tok-2']);
    expect(tokens.received.map((r) => new URLSearchParams(r.body.toString()).get('scope'))).toEqual(['partner.read', 'partner.read']);
    // The legacy key itself never went to new.
    expect(newApi.received.every((r) => r.headers['x-api-key'] === undefined)).toBe(true);
    creds.outbound.new.purge(partner.mapping);
    expect(await sendToNew(creds, newApi.url, 'POST', partner)).toBe(200);
    expect(await telemetry.exposition()).toContain('cutover_token_fetches_total{backend="new",result="ok"} 3');

    creds.inventory.record({ fingerprint: partner.fingerprint!, scheme: partner.scheme!, route: 'get-widget', backend: 'legacy', status: 200, client: '10.9.9.9', at: 42_000 });
    await creds.close();

    // Restart over the same store: the inventory is back; a reload revokes the partner key.
    const again = await Credentials.create(config, { store });
    closers.push(() => again.close());
    expect(again.inventory.get(fp('partner-key'))).toMatchObject({ lastSeen: 42_000, lastClient: '10.9.9.9', requests: 1 });
    again.reload({ ...config, credentials: { ...config.credentials, revoked: [fp('partner-key')] } });
    expect(again.inspect({ 'x-api-key': 'partner-key' }, '/').decision).toBe('revoked');
  });
});

describe('a fingerprint key file that was lost', () => {
  it('is created at start, and the fingerprints made with the old key (revocations) are said to match nothing', async () => {
    const { createLogger } = await import('../src/telemetry/logger.js');
    const { Writable } = await import('node:stream');
    const lines: string[] = [];
    const logger = createLogger('info', new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }));
    const fresh = mkdtempSync(join(tmpdir(), 'cutover-lostkey-'));
    const make = (revoked: string[]) =>
      validateConfig({ backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } }, credentials: { legacy: [{ header: 'x-api-key' }], fingerprintKeyFile: join(fresh, `fp-${revoked.length}.key`), revoked } });
    const revoked = fp('a-revoked-key');
    const lost = await Credentials.create(make([revoked]), { logger });
    closers.push(() => lost.close());
    expect(lines.filter((l) => l.includes('was created now')).join('')).toContain('credentials.revoked (1)');
    // A first start with nothing made under another key says nothing.
    lines.length = 0;
    const first = await Credentials.create(make([]), { logger });
    closers.push(() => first.close());
    expect(lines.filter((l) => l.includes('was created now'))).toEqual([]);
  });
});

describe("the proxy's own secrets for diff examples", () => {
  it('are one shared list for requests without a mapping (made again only when a token is fetched), and a mapping adds only its own header', async () => {
    process.env.CUTOVER_TEST_MAPPED_A = 'mapped-header-value-aaaa';
    process.env.CUTOVER_TEST_MAPPED_B = 'mapped-header-value-bbbb';
    process.env.CUTOVER_TEST_STATIC_NEW = 'static-new-value-123456';
    const config = validateConfig({
      backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2', auth: { type: 'static', header: 'x-api-key', valueEnv: 'CUTOVER_TEST_STATIC_NEW' } } },
      credentials: {
        legacy: [{ header: 'x-api-key' }],
        fingerprintKeyFile: join(dir, 'fp.key'),
        mappings: [
          { fingerprint: fp('partner-a'), header: { name: 'x-api-key', valueEnv: 'CUTOVER_TEST_MAPPED_A' } },
          { fingerprint: fp('partner-b'), header: { name: 'x-api-key', valueEnv: 'CUTOVER_TEST_MAPPED_B' } },
        ],
      },
    });
    const credentials = await Credentials.create(config);
    closers.push(() => credentials.close());
    const plain = credentials.secretsLater(null, '/x')();
    expect(plain).toEqual(['static-new-value-123456']);
    // The same array for the next pair: nothing is made again per request.
    expect(credentials.secretsLater(null, '/y')()).toBe(plain);
    const mapped = credentials.inspect({ 'x-api-key': 'partner-a' }, '/x').mapping;
    expect(credentials.secretsLater(null, '/x', mapped)()).toEqual(['mapped-header-value-aaaa']);
  });
});
