/**
 * The credential side of the demo: legacy v1 takes an `x-api-key` per integration, new v2 takes a
 * bearer token from a small bundled OAuth2 token endpoint (client credentials, RFC 6749 §4.4).
 * cutover gets its own token for v2 (config/demo.yaml `backends.new.auth`), strips the clients'
 * keys toward v2, and inventories the keys it sees (GET /api/credentials).
 *
 * The client secret is made fresh for each run and handed to the proxy through the environment
 * variable config/demo.yaml names, so the demo never writes a secret to disk.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CutoverError } from '../errors.js';
import type { DemoBackendName } from './backends.js';

/** The variables config/demo.yaml reads its client secret and fingerprint key from. */
export const DEMO_CLIENT_SECRET_ENV = 'CUTOVER_DEMO_CLIENT_SECRET';
export const DEMO_FINGERPRINT_KEY_ENV = 'CUTOVER_DEMO_FINGERPRINT_KEY';
export const DEMO_CLIENT_ID = 'cutover-demo';
const TOKEN_LIFETIME_S = 300;
/** Tokens remembered by the endpoint (one per fetch; the proxy fetches one per lifetime). */
const MAX_TOKENS = 1024;

/** The integrations calling the API, each with its legacy key (demo values, not secrets). */
export const DEMO_INTEGRATIONS: readonly { name: string; key: string }[] = [
  { name: 'erp-sync', key: 'nw_live_erp_sync_4c1f9a' },
  { name: 'warehouse-bot', key: 'nw_live_warehouse_bot_77d2e0' },
  { name: 'billing-export', key: 'nw_live_billing_export_a93b51' },
  { name: 'partner-portal', key: 'nw_live_partner_portal_0e6c38' },
  { name: 'nightly-report', key: 'nw_live_nightly_report_5b27fd' },
];

/** The legacy key a demo client (x-client-id) sends: clients share a handful of integrations. */
export function demoApiKeyFor(clientId: string): string {
  let h = 0;
  for (const c of clientId) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return DEMO_INTEGRATIONS[h % DEMO_INTEGRATIONS.length].key;
}

const LEGACY_KEYS = new Set(DEMO_INTEGRATIONS.map((i) => i.key));

export interface DemoTokenEndpoint {
  url: string;
  /** The token URL (`${url}/oauth/token`). */
  tokenUrl: string;
  /** Tokens issued so far. */
  issued(): number;
  close(): Promise<void>;
}

export interface DemoCredentials {
  endpoint: DemoTokenEndpoint;
  /** Calls to v2 that carried a legacy x-api-key (cutover strips them: stays 0). */
  legacyKeysAtNew(): number;
  /** Calls refused by a backend for a missing or wrong credential, by backend. */
  refused(): Record<DemoBackendName, number>;
  /** The backends' check: null lets the call through, else the 401 to answer. */
  guard(backend: DemoBackendName, req: IncomingMessage): { status: number; body: unknown } | null;
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** The client id and secret of a token request (HTTP Basic or form body, RFC 6749 §2.3.1). */
function clientOf(req: IncomingMessage, form: URLSearchParams): { id: string; secret: string } {
  const auth = req.headers.authorization ?? '';
  if (auth.startsWith('Basic ')) {
    const [id, secret] = Buffer.from(auth.slice(6), 'base64').toString('utf8').split(':').map((s) => decodeURIComponent(s.replace(/\+/g, ' ')));
    return { id: id ?? '', secret: secret ?? '' };
  }
  return { id: form.get('client_id') ?? '', secret: form.get('client_secret') ?? '' };
}

/** One per process, so demos started side by side in one process (tests) agree on them. */
const RUN_SECRET = randomBytes(24).toString('hex');
const RUN_FINGERPRINT_KEY = randomBytes(32).toString('hex');

/**
 * Puts this run's client secret and fingerprint key where config/demo.yaml reads them: the
 * environment of this process only. Called before the demo config is loaded (its check wants them).
 */
export function provideDemoSecrets(): void {
  process.env[DEMO_CLIENT_SECRET_ENV] = RUN_SECRET;
  process.env[DEMO_FINGERPRINT_KEY_ENV] = RUN_FINGERPRINT_KEY;
}

/** Starts the token endpoint on `host:port` and returns the backends' credential check. */
export async function startDemoCredentials(host: string, port: number): Promise<DemoCredentials> {
  provideDemoSecrets();
  const secret = RUN_SECRET;
  const tokens = new Set<string>();
  let issued = 0;
  let legacyKeysAtNew = 0;
  const refused: Record<DemoBackendName, number> = { legacy: 0, new: 0 };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      res.setHeader('cache-control', 'no-store');
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const client = clientOf(req, form);
      if (req.method !== 'POST' || new URL(req.url ?? '/', 'http://x').pathname !== '/oauth/token' || form.get('grant_type') !== 'client_credentials') {
        res.statusCode = 400;
        res.end(JSON.stringify({ error: 'unsupported_grant_type' }));
        return;
      }
      if (client.id !== DEMO_CLIENT_ID || !same(client.secret, secret)) {
        res.statusCode = 401;
        res.end(JSON.stringify({ error: 'invalid_client' }));
        return;
      }
      const token = `v2_${randomBytes(16).toString('hex')}`;
      if (tokens.size >= MAX_TOKENS) tokens.delete(tokens.values().next().value as string);
      tokens.add(token);
      issued++;
      res.end(JSON.stringify({ access_token: token, token_type: 'Bearer', expires_in: TOKEN_LIFETIME_S }));
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' ? new CutoverError('CUTOVER_DEMO_PORT_IN_USE', `Port ${port} on ${host} is already in use, so the demo token endpoint cannot start; stop what uses it, or pass --config with a copy of config/demo.yaml that uses other ports.`, { cause: err }) : err),
    );
    server.listen(port, host, () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${actual}`;
  let closing: Promise<void> | undefined;

  return {
    endpoint: {
      url,
      tokenUrl: `${url}/oauth/token`,
      issued: () => issued,
      close: () => {
        closing ??= new Promise<void>((done) => {
          server.close(() => done());
          server.closeAllConnections();
        });
        return closing;
      },
    },
    legacyKeysAtNew: () => legacyKeysAtNew,
    refused: () => ({ ...refused }),
    guard: (backend, req) => {
      const path = (req.url ?? '/').split('?', 1)[0];
      // Health checks stay open, like on most real APIs.
      if (!path.startsWith('/v')) return null;
      if (backend === 'legacy') {
        const key = req.headers['x-api-key'];
        if (typeof key === 'string' && LEGACY_KEYS.has(key)) return null;
        refused.legacy++;
        return { status: 401, body: { error: 'unauthorized', message: 'send a valid x-api-key' } };
      }
      if (req.headers['x-api-key'] !== undefined) legacyKeysAtNew++;
      const auth = req.headers.authorization ?? '';
      if (auth.startsWith('Bearer ') && tokens.has(auth.slice(7))) return null;
      refused.new++;
      return { status: 401, body: { error: 'invalid_token', message: 'send a bearer token from the v2 token endpoint' } };
    },
  };
}
