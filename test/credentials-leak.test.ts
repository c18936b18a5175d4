/**
 * Nothing leaks: unique secrets planted in every place a client or an upstream can put one, then
 * every byte the credential modules put out is scanned for them.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Fastify from 'fastify';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { registerCredentialRoutes } from '../src/admin/credentials.js';
import { validateConfig } from '../src/config/load.js';
import { MemoryStore } from '../src/cutover/store.js';
import { extractCredential } from '../src/credentials/extract.js';
import { createFingerprinter } from '../src/credentials/fingerprint.js';
import { CredentialInventory, STORE_KEY } from '../src/credentials/inventory.js';
import { createOutboundAuth, TokenUnavailableError, tokenUnavailableProblem } from '../src/credentials/outbound/index.js';
import { CredentialPolicy } from '../src/credentials/policy.js';
import { createLogger } from '../src/telemetry/logger.js';
import { Telemetry } from '../src/telemetry/metrics.js';
import { startBackend, waitFor } from './helpers/backend.js';
import { spawnProxy } from './helpers/proxy.js';

const secret = (what: string) => `LEAK${what}${randomBytes(8).toString('hex')}`;

/** Unique secrets for every place a client or an upstream can put one, written where config reads them. */
function plantSecrets(fingerprintKey: string) {
  const planted = {
    header: secret('hdr'),
    bearer: secret('bearer'),
    cookie: secret('cookie'),
    query: secret('query'),
    basicPassword: secret('basic'),
    clientSecret: secret('clientsecret'),
    accessToken: secret('accesstoken'),
    mappingHeader: secret('mapping'),
  };
  const dir = mkdtempSync(join(tmpdir(), 'cutover-leak-'));
  writeFileSync(join(dir, 'client.secret'), `${planted.clientSecret}\n`);
  writeFileSync(join(dir, 'partner.value'), planted.mappingHeader);
  writeFileSync(join(dir, 'fp.key'), fingerprintKey);
  return { planted, dir };
}

/** The token endpoint: first the planted token, then (mode `echo`) errors that echo the secret back. */
async function startLeakyTokenEndpoint(planted: { accessToken: string; clientSecret: string }) {
  const state = { mode: 'ok' as 'ok' | 'echo' };
  const backend = await startBackend((_req, res, body) => {
    res.setHeader('content-type', 'application/json');
    if (state.mode === 'ok') {
      res.end(JSON.stringify({ access_token: planted.accessToken, token_type: 'Bearer', expires_in: 3600 }));
      return;
    }
    res.statusCode = 400;
    res.end(JSON.stringify({ error: planted.clientSecret, error_description: `bad ${body.toString()}` }));
  });
  return Object.assign(state, { url: backend.url, close: backend.close });
}

describe('credential values never leave the credential modules', () => {
  it('scans inventory JSON and CSV, the persisted store, logs, metrics, errors and problems', async () => {
    const { planted, dir } = plantSecrets('leak-test-key');
    const tokenEndpoint = await startLeakyTokenEndpoint(planted);

    const logLines: string[] = [];
    const logger = createLogger('trace', { write: (s: string) => void logLines.push(s) });
    const telemetry = new Telemetry({ defaultMetrics: false });
    const store = new MemoryStore();

    const config = validateConfig(
      {
        backends: {
          legacy: { url: 'http://127.0.0.1:9101' },
          new: { url: 'http://127.0.0.1:9102', auth: { type: 'oauth2-client-credentials', tokenUrl: `${tokenEndpoint.url}/token`, clientId: 'cutover', clientSecretFile: 'client.secret', clientAuth: 'body' } },
        },
        credentials: { legacy: [{ header: 'x-api-key' }, { bearer: true }, { cookie: 'session' }], fingerprintKeyFile: 'fp.key' },
      },
      'leak.yaml',
      dir,
    );
    const fp = createFingerprinter('leak-test-key');
    const inventory = new CredentialInventory({ store, telemetry, logger, persistDelayMs: 10_000 });
    const outbound = createOutboundAuth('new', config.backends.new, { logger, recordFetch: telemetry.credentials.tokenFetches('new') });
    const policy = new CredentialPolicy({ revoked: [fp(planted.header)], requireMapping: false, mappings: [{ fingerprint: fp(planted.bearer), header: { name: 'x-partner', valueFile: join(dir, 'partner.value') } }] });

    // A real front listener: credentials arrive on the wire in every location.
    const locations = [...config.credentials.legacy, { query: 'api_key' } as const, { basic: true } as const];
    const front = http.createServer((req, res) => {
      const found = extractCredential(req.rawHeaders, req.url, locations);
      if (found) {
        const fingerprint = fp(found.value);
        const decision = policy.decideNewPath(fingerprint);
        logger.info({ fingerprint, scheme: found.scheme, decision, headers: req.headers }, 'request');
        inventory.record({ fingerprint, scheme: found.scheme, route: 'get-widget', backend: 'legacy', status: decision === 'revoked' ? 401 : 200, client: req.socket.remoteAddress, userAgent: req.headers['user-agent'] });
      }
      res.end();
    });
    await new Promise<void>((resolve) => front.listen(0, '127.0.0.1', resolve));
    const frontUrl = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
    const sends: [string, Record<string, string>][] = [
      ['/w', { 'x-api-key': planted.header }],
      ['/w', { authorization: `Bearer ${planted.bearer}` }],
      ['/w', { cookie: `a=1; session=${planted.cookie}` }],
      [`/w?api_key=${planted.query}`, {}],
      ['/w', { authorization: `Basic ${Buffer.from(`svc:${planted.basicPassword}`).toString('base64')}` }],
    ];
    for (const [path, headers] of sends) {
      const res = await request(`${frontUrl}${path}`, { headers: { ...headers, 'user-agent': 'leak-test/1' } });
      await res.body.dump();
    }

    // Outbound: a token fetched, a purge, then the endpoint answering with the secret echoed back.
    const header = await outbound.headerFor();
    expect(header?.[1]).toBe(`Bearer ${planted.accessToken}`);
    outbound.purge(undefined, header);
    tokenEndpoint.mode = 'echo';
    const err = (await outbound.headerFor().catch((e: unknown) => e)) as TokenUnavailableError;
    expect(err).toBeInstanceOf(TokenUnavailableError);
    logger.error({ err }, 'token unavailable');
    await inventory.flush();

    const admin = Fastify();
    registerCredentialRoutes(admin, { inventory });
    await admin.listen({ host: '127.0.0.1', port: 0 });
    const adminUrl = `http://127.0.0.1:${(admin.server.address() as AddressInfo).port}`;
    const json = await (await fetch(`${adminUrl}/api/credentials`)).text();
    const csv = await (await fetch(`${adminUrl}/api/credentials?format=csv`)).text();
    await admin.close();
    await new Promise<void>((resolve) => front.close(() => resolve()));
    await outbound.close();
    await tokenEndpoint.close();
    await new Promise((r) => setImmediate(r));

    const outputs: Record<string, string> = {
      inventoryJson: json,
      inventoryCsv: csv,
      storeSnapshot: JSON.stringify(store.snapshot()),
      logs: logLines.join(''),
      metrics: await telemetry.exposition(),
      errorMessage: `${err.message} ${String(err)} ${JSON.stringify(err)}`,
      problem: JSON.stringify(tokenUnavailableProblem(err)),
      stragglers: JSON.stringify(inventory.stragglers(['get-widget'])),
    };
    // The scan must see real output: every location was recorded, the log has the token events.
    expect(JSON.parse(json).credentials).toHaveLength(4);
    expect(JSON.parse(json).rejected.requests).toBe(1);
    expect((store.snapshot().extra[STORE_KEY] as { credentials: unknown[] }).credentials).toHaveLength(4);
    expect(outputs.logs).toContain('token fetched');
    expect(outputs.logs).toContain('TOKEN_UNAVAILABLE');
    expect(outputs.metrics).toContain('cutover_credential_requests_total');
    for (const [where, text] of Object.entries(outputs)) {
      for (const [what, value] of Object.entries(planted)) {
        expect(text.includes(value), `${what} leaked into ${where}`).toBe(false);
      }
      expect(/LEAK[a-z]+[0-9a-f]{16}/.test(text), `a planted secret leaked into ${where}`).toBe(false);
    }
  });
});

describe('credential values never leave the running proxy', () => {
  it('scans every byte a `cutover run` child writes: stdout, stderr, state and audit files, every admin answer', async () => {
    const { planted: base, dir } = plantSecrets('leak-run-key');
    const planted = { ...base, bodyField: secret('bodyfield'), answerField: secret('answerfield') };
    const operatorToken = `op-${randomBytes(24).toString('hex')}`;
    writeFileSync(join(dir, 'operator.token'), operatorToken);
    const fp = createFingerprinter('leak-run-key');
    const tokenEndpoint = await startLeakyTokenEndpoint(planted);
    // Both backends answer with a sensitive field whose values differ, so the diffs have it to redact.
    let newRefuses = false;
    const next = await startBackend((_req, res) => {
      res.setHeader('content-type', 'application/json');
      if (newRefuses) {
        res.statusCode = 401;
        res.end(JSON.stringify({ error: 'invalid_token' }));
        return;
      }
      res.end(JSON.stringify({ id: 1, password: `${planted.answerField}-new` }));
    });
    // legacy also echoes its caller's credential under a name no rule knows: only its value can tell.
    const legacy = await startBackend((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? '');
      const caller =
        req.headers['x-api-key'] ??
        /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ??
        /session=([^;]+)/.exec(req.headers.cookie ?? '')?.[1] ??
        url.searchParams.get('api_key') ??
        (basic ? Buffer.from(basic[1], 'base64').toString().split(':')[1] : 'nobody');
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ id: 1, password: `${planted.answerField}-legacy`, caller: `caller ${caller}` }));
    });
    const raw = {
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0, tokens: [{ name: 'ops', role: 'operator', tokenFile: join(dir, 'operator.token') }] },
      backends: {
        legacy: { url: legacy.url },
        new: { url: next.url, auth: { type: 'oauth2-client-credentials', tokenUrl: `${tokenEndpoint.url}/token`, clientId: 'cutover', clientSecretFile: join(dir, 'client.secret'), clientAuth: 'body' } },
      },
      credentials: {
        legacy: [{ header: 'x-api-key' }, { bearer: true }, { cookie: 'session' }, { query: 'api_key' }, { basic: true }],
        fingerprintKeyFile: join(dir, 'fp.key'),
        mappings: [{ fingerprint: fp(planted.bearer), header: { name: 'x-partner', valueFile: join(dir, 'partner.value') } }],
      },
      routes: [
        { name: 'w', match: { path: '/w' }, weight: 100, shadow: { percent: 100, baselinePercent: 100, unsafe: true } },
        { name: 'm', match: { path: '/m' }, weight: 0, shadow: { percent: 100, baselinePercent: 100, unsafe: true } },
      ],
      log: { level: 'trace', access: true },
      cutover: { state: { store: 'file', path: join(dir, 'state.json') }, audit: { path: join(dir, 'audit.jsonl') } },
    };
    const child = await spawnProxy(raw);
    const admin: Record<string, string> = {};
    try {
      const sends: [string, Record<string, string>][] = [
        ['?x=1', { 'x-api-key': planted.header }],
        ['', { authorization: `Bearer ${planted.bearer}` }],
        ['', { cookie: `a=1; session=${planted.cookie}` }],
        [`?api_key=${planted.query}`, {}],
        ['', { authorization: `Basic ${Buffer.from(`svc:${planted.basicPassword}`).toString('base64')}` }],
      ];
      for (const path of ['/w', '/m']) {
        for (const [query, headers] of sends) {
          for (const method of ['GET', 'POST'] as const) {
            const res = await request(`${child.dataUrl}${path}${query}`, { method, headers: { ...headers, 'user-agent': 'leak-test/1', 'content-type': 'application/json' }, body: method === 'POST' ? JSON.stringify({ password: planted.bodyField }) : undefined });
            await res.body.dump();
          }
        }
      }
      // new refuses the token: purge, and the token endpoint now echoes the secret back in its errors.
      newRefuses = true;
      tokenEndpoint.mode = 'echo';
      const refused = await request(`${child.dataUrl}/w`, { headers: { 'x-api-key': planted.header } });
      expect(refused.statusCode).toBe(502);
      admin.tokenUnavailable = await refused.body.text();
      const auth = { authorization: `Bearer ${operatorToken}` };
      await waitFor(async () => {
        const res = await request(`${child.adminUrl}/api/credentials`, { headers: auth });
        return ((await res.body.json()) as { credentials: unknown[] }).credentials.length >= 5;
      }, 10_000, 'five credentials in the inventory');
      const gets = ['/metrics', '/healthz', '/readyz', '/api/credentials', '/api/credentials?format=csv', '/api/routes/w/diffs', '/api/routes/m/diffs', '/api/state', '/api/audit', '/api/report', '/api/report?format=md'];
      for (const path of gets) admin[path] = await (await request(`${child.adminUrl}${path}`, { headers: auth })).body.text();
      admin['POST /api/reload'] = await (await request(`${child.adminUrl}/api/reload`, { method: 'POST', headers: auth })).body.text();
    } finally {
      expect(await child.stop()).toBe(0);
      await Promise.all([tokenEndpoint.close(), next.close(), legacy.close()]);
    }
    const outputs: Record<string, string> = {
      stdout: child.stdout(),
      stderr: child.stderr(),
      state: readFileSync(join(dir, 'state.json'), 'utf8'),
      audit: existsSync(join(dir, 'audit.jsonl')) ? readFileSync(join(dir, 'audit.jsonl'), 'utf8') : '',
      ...admin,
    };
    // The scan must see real output: the access log, the inventory persisted, the diffs of both routes.
    expect(outputs.stdout).toContain('"msg":"request"');
    expect(JSON.parse(admin['/api/credentials']).credentials).toHaveLength(5);
    // The echoed credential is in the diffs, blanked: the example is there, its value is not.
    expect(admin['/api/routes/m/diffs']).toContain('"caller [redacted]"');
    expect(outputs.state).toContain(fp(planted.header));
    expect(JSON.parse(admin.tokenUnavailable).code).toBe('TOKEN_UNAVAILABLE');
    expect(admin['/metrics']).toContain('cutover_token_fetches_total{backend="new",result="error"}');
    for (const [where, text] of Object.entries(outputs)) {
      for (const [what, value] of Object.entries(planted)) {
        expect(text.includes(value), `${what} leaked into ${where}`).toBe(false);
      }
      expect(/LEAK[a-z]+[0-9a-f]{16}/.test(text), `a planted secret leaked into ${where}`).toBe(false);
    }
  }, 60_000);
});
