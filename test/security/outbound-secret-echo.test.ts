/**
 * A new backend that echoes the credential it received (an error text, a debug field): the proxy's
 * own credential toward it (a static value, an OAuth2 token) is blanked from diff examples and the
 * report like a client's, including on requests that carry no client credential at all. Viewers
 * (dashboards) read those; the proxy's credential grants its identity on the new API.
 */
import { request } from 'undici';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startBackend, waitFor, type TestBackend } from '../helpers/backend.js';
import { baseConfig, startProxy, type InProcessProxy } from '../helpers/proxy.js';

const STATIC = 'nk_live_9f8e7d6c5b4a39281706';
const TOKEN = 'at_0a1b2c3d4e5f60718293a4b5';
const dir = mkdtempSync(join(tmpdir(), 'cutover-outbound-'));
writeFileSync(join(dir, 'new.key'), STATIC);
writeFileSync(join(dir, 'client.secret'), 's3cret-client-secret');
writeFileSync(join(dir, 'viewer.token'), 'outbound-viewer-token-0123456789');
const viewer = { authorization: 'Bearer outbound-viewer-token-0123456789' };

const open: { close(): Promise<unknown> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

async function run(auth: Record<string, unknown>, headers: Record<string, string>): Promise<{ text: string; next: TestBackend }> {
  const idp = await startBackend((_req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ access_token: TOKEN, token_type: 'Bearer', expires_in: 3600 }));
  });
  const legacy = await startBackend((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ message: `request made with ${req.headers['x-api-key'] ?? 'no key'} is fine` }));
  });
  const next = await startBackend((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ message: `request made with ${String(req.headers.authorization).replace(/^Bearer /, '')} is deprecated` }));
  });
  open.push(idp, legacy, next);
  if (auth.type === 'oauth2-client-credentials') auth.tokenUrl = `${idp.url}/token`;
  const proxy: InProcessProxy = await startProxy({
    ...baseConfig(legacy.url, next.url),
    admin: { host: '127.0.0.1', port: 0, tokens: [{ name: 'dash', role: 'viewer', tokenFile: join(dir, 'viewer.token') }] },
    backends: { legacy: { url: legacy.url }, new: { url: next.url, auth } },
    credentials: { legacy: [{ header: 'x-api-key' }] },
    routes: [{ name: 'r', match: { path: '/x' }, weight: 0, shadow: { percent: 100, baselinePercent: 0 } }],
  });
  open.push({ close: () => proxy.close(100) });
  for (let i = 0; i < 3; i++) await (await request(`${proxy.dataUrl}/x`, { headers })).body.dump();
  const diffs = async () => (await (await request(`${proxy.adminUrl}/api/routes/r/diffs`, { headers: viewer })).body.json()) as { comparisons: { total: number } };
  await waitFor(async () => (await diffs()).comparisons.total === 3, 10_000, 'the comparisons');
  let text = '';
  for (const path of ['/api/routes/r/diffs', '/api/report', '/api/report?format=markdown']) text += await (await request(`${proxy.adminUrl}${path}`, { headers: viewer })).body.text();
  return { text, next };
}

describe("the proxy's own credential toward new, echoed by new", () => {
  for (const [name, auth, secret] of [
    ['a static value', { type: 'static', header: 'authorization', valueFile: join(dir, 'new.key') }, STATIC],
    ['an OAuth2 token', { type: 'oauth2-client-credentials', tokenUrl: 'set later', clientId: 'c', clientSecretFile: join(dir, 'client.secret') }, TOKEN],
  ] as const) {
    for (const [who, headers] of [
      ['a client with a legacy key', { 'x-api-key': 'legacy_client_key_5566778899' }],
      ['a client without one', {}],
    ] as const) {
      it(`is blanked from diff examples and the report: ${name}, ${who}`, async () => {
        const { text, next } = await run({ ...auth }, headers);
        // new really got it, and echoed it: the example exists, blanked.
        expect(next.received.some((r) => String(r.headers.authorization).includes(secret))).toBe(true);
        expect(text).toContain('is deprecated');
        expect(text).not.toContain(secret);
        expect(text).not.toContain('legacy_client_key_5566778899');
      });
    }
  }
});
