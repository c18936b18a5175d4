/**
 * TLS toward a backend: client certificate and key (mTLS), a CA of its own, the server name. The
 * server's certificate is always verified; there is deliberately no setting that turns that off.
 */
import { readTlsFile } from '../../config/credentials.js';
import type { BackendConfig } from '../../config/schema.js';

/** A subset of undici's `buildConnector.BuildOptions` (TLS branch); `rejectUnauthorized` is always true. */
export interface ConnectOptions {
  rejectUnauthorized: true;
  cert?: Buffer;
  key?: Buffer;
  ca?: Buffer;
  servername?: string;
}

/**
 * undici `connect` options for a backend (`new Pool(url, { connect: connectOptionsFor(b) })`), or
 * undefined when it has no `tls` block (the defaults already verify against the system CAs).
 */
export function connectOptionsFor(backend: Pick<BackendConfig, 'tls' | 'url'>): ConnectOptions | undefined {
  const tls = backend.tls;
  if (!tls) return undefined;
  const options: ConnectOptions = { rejectUnauthorized: true };
  if (tls.certFile) options.cert = readTlsFile(tls.certFile, 'the client certificate (tls.certFile)');
  if (tls.keyFile) options.key = readTlsFile(tls.keyFile, 'the client key (tls.keyFile)');
  if (tls.caFile) options.ca = readTlsFile(tls.caFile, 'the CA bundle (tls.caFile)');
  if (tls.serverName) options.servername = tls.serverName;
  return options;
}
