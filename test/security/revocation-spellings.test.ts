/**
 * A revoked legacy credential is refused in every spelling a backend may read, not only in the
 * first one the proxy finds: behind a fragment, in a second Cookie line, quoted or percent-encoded,
 * repeated after an empty value, behind a decoy in another location, or followed by a second word.
 * Each of these reached legacy with the revoked key before (found by review).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFingerprinter } from '../../src/credentials/fingerprint.js';
import { startBackend, type TestBackend } from '../helpers/backend.js';
import { baseConfig, startProxy, type InProcessProxy } from '../helpers/proxy.js';
import { rawExchange } from './raw.js';

const KEY = 'revocation-spellings-key';
const REVOKED = 'REVOKED-KEY-123';
const dir = mkdtempSync(join(tmpdir(), 'cutover-revoked-'));
const keyFile = join(dir, 'fp.key');
writeFileSync(keyFile, KEY);

let legacy: TestBackend;
let next: TestBackend;
let proxy: InProcessProxy;

beforeAll(async () => {
  legacy = await startBackend();
  next = await startBackend();
  proxy = await startProxy(
    baseConfig(legacy.url, next.url, {
      routes: [{ name: 'r', match: { path: '/v1/x' } }],
      credentials: { legacy: [{ bearer: true }, { basic: true }, { header: 'x-api-key' }, { cookie: 'sid' }, { query: 'api_key' }], fingerprintKeyFile: keyFile, revoked: [createFingerprinter(KEY)(REVOKED)] },
    }),
  );
});
afterAll(async () => {
  await proxy.close(100);
  await legacy.close();
  await next.close();
});

const request = (target: string, headers: string[] = []): string => `GET ${target} HTTP/1.1\r\nHost: a\r\n${headers.map((h) => `${h}\r\n`).join('')}Connection: close\r\n\r\n`;

describe('a revoked credential, however it is spelled', () => {
  it.each([
    ['in the query', request(`/v1/x?api_key=${REVOKED}`)],
    ['in the query, before a fragment', request(`/v1/x?api_key=${REVOKED}#frag`)],
    ['in the query, repeated after an empty value', request(`/v1/x?api_key=&api_key=${REVOKED}`)],
    ['in a second Cookie line', request('/v1/x', ['Cookie: lang=en', `Cookie: sid=${REVOKED}`])],
    ['in a quoted cookie', request('/v1/x', [`Cookie: sid="${REVOKED}"`])],
    ['in a percent-encoded cookie', request('/v1/x', [`Cookie: sid=${REVOKED.replace('R', '%52')}`])],
    ['in a cookie repeated after an empty one', request('/v1/x', [`Cookie: sid=; sid=${REVOKED}`])],
    ['in x-api-key behind a decoy bearer token', request('/v1/x', ['Authorization: Bearer decoy', `X-Api-Key: ${REVOKED}`])],
    ['as a bearer token followed by a second word', request('/v1/x', [`Authorization: Bearer ${REVOKED} x`])],
    ['in a second x-api-key line', request('/v1/x', ['X-Api-Key: decoy', `X-Api-Key: ${REVOKED}`])],
    ['as the password of Basic', request('/v1/x', [`Authorization: Basic ${Buffer.from(`u:${REVOKED}`).toString('base64')}`])],
    ['as the user of Basic with no password (Stripe)', request('/v1/x', [`Authorization: Basic ${Buffer.from(`${REVOKED}:`).toString('base64')}`])],
    ['as the user of Basic with a filler password (Freshdesk)', request('/v1/x', [`Authorization: Basic ${Buffer.from(`${REVOKED}:X`).toString('base64')}`])],
  ])('%s: 401, and no backend sees it', async (_name, text) => {
    const before = legacy.received.length + next.received.length;
    const answer = await rawExchange(proxy.dataUrl, text);
    expect(answer.status).toBe(401);
    expect(answer.text).toContain('"code":"REVOKED"');
    expect(legacy.received.length + next.received.length).toBe(before);
  });

  it('a credential that is not revoked, with the same decoys, is served', async () => {
    const answer = await rawExchange(proxy.dataUrl, request('/v1/x?api_key=fine#frag', ['Cookie: lang=en', 'Cookie: sid=also-fine']));
    expect(answer.status).toBe(200);
  });
});
