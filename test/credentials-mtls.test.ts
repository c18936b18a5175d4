import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../src/config/load.js';
import { connectOptionsFor } from '../src/credentials/outbound/index.js';
import { ConfigError } from '../src/errors.js';
import { startBackend, waitFor } from './helpers/backend.js';
import { baseConfig, startProxy } from './helpers/proxy.js';

const dir = mkdtempSync(join(tmpdir(), 'cutover-mtls-'));
const f = (name: string) => join(dir, name);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** A CA, and a certificate it signs (server or client) for `cn`. */
function makeCa(name: string): void {
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`);
}
function makeCert(name: string, ca: string, cn: string, ext: string): void {
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
  writeFileSync(f(`${name}.ext`), ext);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
}

interface Server {
  url: string;
  clients: string[];
  close(): Promise<void>;
}

/** An https server that requires a client certificate signed by `ca`. */
async function startMtlsServer(cert: string, ca: string): Promise<Server> {
  const clients: string[] = [];
  const server = https.createServer({ key: readFileSync(f(`${cert}.key`)), cert: readFileSync(f(`${cert}.crt`)), ca: readFileSync(f(`${ca}.crt`)), requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate();
    clients.push(String(peer.subject?.CN));
    res.end('hello over mTLS');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    clients,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

let good: Server;
let rogue: Server;

beforeAll(async () => {
  makeCa('ca');
  makeCa('rogue-ca');
  makeCert('server', 'ca', 'legacy.internal', 'subjectAltName=DNS:legacy.internal,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  makeCert('client', 'ca', 'cutover-proxy', 'extendedKeyUsage=clientAuth\n');
  makeCert('rogue-server', 'rogue-ca', 'legacy.internal', 'subjectAltName=DNS:legacy.internal,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  good = await startMtlsServer('server', 'ca');
  rogue = await startMtlsServer('rogue-server', 'ca');
}, 60_000);

afterAll(async () => {
  await good?.close();
  await rogue?.close();
});

/** One GET through an undici Agent built with the backend's connect options, as the proxy's pools will. */
async function get(url: string, tls: Record<string, string> | undefined): Promise<string> {
  const config = validateConfig({ backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url, ...(tls ? { tls } : {}) } } }, 'test.yaml', dir);
  const agent = new Agent({ connect: connectOptionsFor(config.backends.new) });
  try {
    const res = await request(`${url}/`, { dispatcher: agent });
    return await res.body.text();
  } finally {
    await agent.close();
  }
}

describe('mTLS toward a backend (certificates made by openssl)', () => {
  it('connects with the client certificate from config', async () => {
    expect(await get(good.url, { certFile: 'client.crt', keyFile: 'client.key', caFile: 'ca.crt', serverName: 'legacy.internal' })).toBe('hello over mTLS');
    expect(good.clients).toContain('cutover-proxy');
  });

  it('fails without the client certificate', async () => {
    await expect(get(good.url, { caFile: 'ca.crt', serverName: 'legacy.internal' })).rejects.toThrow(/certificate required|alert|socket|other side closed|ECONNRESET/i);
  });

  it('fails against a server whose certificate the CA did not sign', async () => {
    await expect(get(rogue.url, { certFile: 'client.crt', keyFile: 'client.key', caFile: 'ca.crt', serverName: 'legacy.internal' })).rejects.toThrow(/certificate|self.signed|verify/i);
  });

  it('fails when the server name does not match the certificate', async () => {
    await expect(get(good.url, { certFile: 'client.crt', keyFile: 'client.key', caFile: 'ca.crt', serverName: 'other.internal' })).rejects.toThrow(/altnames|Hostname|does not match/i);
  });

  it('never turns verification off', () => {
    const config = validateConfig({ backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: good.url, tls: { caFile: 'ca.crt' } } } }, 'test.yaml', dir);
    expect(connectOptionsFor(config.backends.new)?.rejectUnauthorized).toBe(true);
    expect(connectOptionsFor(config.backends.legacy)).toBeUndefined();
  });

  it('config problems name their path: cert without key, unreadable files, tls on http', () => {
    let problems: readonly string[] = [];
    try {
      validateConfig({ backends: { legacy: { url: 'http://127.0.0.1:1', tls: { caFile: 'ca.crt' } }, new: { url: good.url, tls: { certFile: 'client.crt', caFile: 'missing.crt' } } } }, 'test.yaml', dir);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems = err.problems;
    }
    expect(problems).toContain('backends.legacy.tls: the backend url is not https://, so tls settings would not be used');
    expect(problems).toContain('backends.new.tls: give certFile and keyFile together');
    expect(problems.some((p) => p.startsWith('backends.new.tls.caFile: cannot read'))).toBe(true);
  });
});

describe('mTLS through the running proxy', () => {
  it('live and mirrored requests reach an https backend that requires the client certificate', async () => {
    const legacy = await startBackend();
    const tls = { certFile: f('client.crt'), keyFile: f('client.key'), caFile: f('ca.crt'), serverName: 'legacy.internal' };
    const config = (weight: number) =>
      baseConfig(legacy.url, good.url, {
        backends: { legacy: { url: legacy.url }, new: { url: good.url, tls } },
        routes: [{ name: 'm', match: { path: '/m' }, weight, shadow: { percent: 100, baselinePercent: 0 } }],
        cutover: { state: { store: 'memory' } },
      });
    const before = good.clients.length;
    let proxy = await startProxy(config(100));
    try {
      const res = await request(`${proxy.dataUrl}/m`);
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe('hello over mTLS');
      expect(good.clients.length).toBe(before + 1);
      await proxy.close(100);
      // The mirror pool (weight 0: new only gets mirrors) has the certificate too.
      proxy = await startProxy(config(0));
      expect((await request(`${proxy.dataUrl}/m`)).statusCode).toBe(200);
      await waitFor(() => good.clients.length === before + 2, 5_000, 'the mirror over mTLS');
      expect(good.clients.slice(before)).toEqual(['cutover-proxy', 'cutover-proxy']);
    } finally {
      await proxy.close(100);
      await legacy.close();
    }
  });
});
