/**
 * The credential side of the config: the checks that span fields (one secret source, not two;
 * client certificate with its key), relative paths anchored at the config's directory, and the
 * readers of secret files and variables. This is the one place credential material is read from
 * files and the environment, so the rest of `credentials/` never touches either.
 */
import { closeSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { createHmac, randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve as resolvePath } from 'node:path';
import { CutoverError } from '../errors.js';
import type { RawConfig } from './schema.js';

/** A secret given by file or by environment variable (exactly one). */
export interface ValueSource {
  file?: string;
  env?: string;
}

/** A file the proxy will read: there, a file, readable, and for a secret not empty (what `run` would find). */
function readable(file: string | undefined, where: string, problems: string[], secret = false): void {
  if (!file) return;
  try {
    const text = readFileSync(file, 'utf8');
    if (secret && !text.trim()) problems.push(`${where}: ${file} is empty`);
  } catch (err) {
    problems.push(`${where}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}

/**
 * A digest of every secret the config names (files' contents, variables' values), by config path,
 * keyed with a random key of this process (it is never shown, only compared): a reload sees a
 * rotated secret even when the config file is unchanged, and refuses one under a restart-only key
 * rather than ignore it.
 */
export function secretDigests(raw: unknown, configDir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (value: unknown, path: string): void => {
    if (Array.isArray(value)) value.forEach((v, i) => walk(v, `${path}[${i}]`));
    else if (typeof value === 'object' && value !== null) {
      for (const [k, v] of Object.entries(value)) {
        const at = path ? `${path}.${k}` : k;
        if (typeof v === 'string' && /(File|Env)$/.test(k)) out[at] = digestOf(k.endsWith('File') ? fileText(resolvePath(configDir, v)) : process.env[v]);
        else walk(v, at);
      }
    }
  };
  walk(raw, '');
  return out;
}

function fileText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

const DIGEST_KEY = randomBytes(32);

/** Creates `path` (never over an existing file: EEXIST), owner-only, with `text` written and synced. */
function writeNewFile(path: string, text: string): void {
  const fd = openSync(path, 'wx', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * What `secretDigests` would read for a secret file now. A fingerprint key file the proxy creates
 * at start was read as missing when the config loaded; its running digest is taken again from what
 * it holds, or every reload would see a "rotated" restart-only key and be refused.
 */
export function fileSecretDigest(file: string): string {
  return digestOf(fileText(file));
}

function digestOf(text: string | undefined): string {
  return text === undefined ? 'unset' : createHmac('sha256', DIGEST_KEY).update(text.trim()).digest('hex');
}

function oneSource(file: string | undefined, env: string | undefined, where: string, fileKey: string, envKey: string, problems: string[]): void {
  if (file && env) problems.push(`${where}: give ${fileKey} or ${envKey}, not both`);
  else if (!file && !env) problems.push(`${where}: give ${fileKey} or ${envKey}`);
  else if (file) readable(file, `${where}.${fileKey}`, problems, true);
  else if (env && !process.env[env]?.trim()) problems.push(`${where}.${envKey}: environment variable ${env} is not set`);
}

/** Makes every credential file path absolute, relative to the config file's directory (in place). */
export function resolveCredentialPaths(raw: RawConfig, configDir: string): void {
  const abs = (p: string | undefined): string | undefined => (p === undefined ? undefined : resolvePath(configDir, p));
  for (const backend of [raw.backends.legacy, raw.backends.new]) {
    const auth = backend.auth;
    if (auth.type === 'static') auth.valueFile = abs(auth.valueFile);
    if (auth.type === 'oauth2-client-credentials') auth.clientSecretFile = abs(auth.clientSecretFile);
    if (backend.tls) {
      backend.tls.certFile = abs(backend.tls.certFile);
      backend.tls.keyFile = abs(backend.tls.keyFile);
      backend.tls.caFile = abs(backend.tls.caFile);
    }
  }
  const creds = raw.credentials;
  creds.fingerprintKeyFile = abs(creds.fingerprintKeyFile);
  for (const m of creds.mappings) if (m.header) m.header.valueFile = abs(m.header.valueFile);
}

/** Problems spanning credential fields; run after `resolveCredentialPaths`. Each names its path. */
export function credentialProblems(raw: RawConfig): string[] {
  const problems: string[] = [];
  for (const name of ['legacy', 'new'] as const) {
    const backend = raw.backends[name];
    const where = `backends.${name}`;
    const auth = backend.auth;
    if (auth.type === 'static') oneSource(auth.valueFile, auth.valueEnv, `${where}.auth`, 'valueFile', 'valueEnv', problems);
    if (auth.type === 'oauth2-client-credentials') oneSource(auth.clientSecretFile, auth.clientSecretEnv, `${where}.auth`, 'clientSecretFile', 'clientSecretEnv', problems);
    const tls = backend.tls;
    if (tls) {
      if (!backend.url.startsWith('https:')) problems.push(`${where}.tls: the backend url is not https://, so tls settings would not be used`);
      if (Boolean(tls.certFile) !== Boolean(tls.keyFile)) problems.push(`${where}.tls: give certFile and keyFile together`);
      readable(tls.certFile, `${where}.tls.certFile`, problems);
      readable(tls.keyFile, `${where}.tls.keyFile`, problems);
      readable(tls.caFile, `${where}.tls.caFile`, problems);
    }
  }
  const creds = raw.credentials;
  if (creds.fingerprintKeyFile && creds.fingerprintKeyEnv) problems.push('credentials: give fingerprintKeyFile or fingerprintKeyEnv, not both');
  if (creds.fingerprintKeyEnv && !process.env[creds.fingerprintKeyEnv]?.trim()) problems.push(`credentials.fingerprintKeyEnv: environment variable ${creds.fingerprintKeyEnv} is not set`);
  // The key file may not exist yet (the proxy creates it); if it does, it must be a readable file.
  if (creds.fingerprintKeyFile && existsSync(creds.fingerprintKeyFile)) readable(creds.fingerprintKeyFile, 'credentials.fingerprintKeyFile', problems, true);
  const seen = new Map<string, number>();
  creds.mappings.forEach((m, i) => {
    const where = `credentials.mappings[${i}]`;
    const first = seen.get(m.fingerprint);
    if (first !== undefined) problems.push(`${where}.fingerprint: ${m.fingerprint} is already mapped by credentials.mappings[${first}]`);
    else seen.set(m.fingerprint, i);
    if (m.header) oneSource(m.header.valueFile, m.header.valueEnv, `${where}.header`, 'valueFile', 'valueEnv', problems);
    if ((m.scope || m.audience) && raw.backends.new.auth.type !== 'oauth2-client-credentials') {
      problems.push(`${where}: scope and audience need backends.new.auth.type oauth2-client-credentials`);
    }
    if (!m.header && !m.scope && !m.audience) problems.push(`${where}: give a scope, an audience or a header`);
  });
  return problems;
}

/** Reads a secret from its file (trailing whitespace trimmed) or variable; throws CREDENTIAL_SOURCE naming only where. */
export function readSecretValue(source: ValueSource, where: string): string {
  let value: string | undefined;
  if (source.file) {
    try {
      value = readFileSync(source.file, 'utf8').trim();
    } catch (err) {
      throw new CutoverError('CREDENTIAL_SOURCE', `Cannot read ${where} from ${source.file} (${(err as NodeJS.ErrnoException).code ?? 'error'}); check the file and its permissions.`);
    }
  } else if (source.env) {
    value = process.env[source.env]?.trim();
  }
  if (!value) throw new CutoverError('CREDENTIAL_SOURCE', `${where} is empty or not set; check ${source.file ?? `$${source.env ?? '?'}`}.`);
  return value;
}

/** Reads a certificate, key or CA file for the TLS options. */
export function readTlsFile(file: string, where: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new CutoverError('CREDENTIAL_SOURCE', `Cannot read ${where} from ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'}); check the file and its permissions.`);
  }
}

export interface FingerprintKey {
  key: Buffer;
  /** Where it came from: a file, a variable, created now, or made up for this process only. */
  origin: 'file' | 'env' | 'created' | 'ephemeral';
}

/**
 * The fingerprint key: from `fingerprintKeyEnv`, or from `fingerprintKeyFile`, which is created
 * (32 random bytes, hex, mode 0600, never overwritten) when missing and `create` allows it. A fleet
 * must give the same key to every replica, so the Redis store passes `create: false`.
 * Nothing configured: a random key for this process only (fingerprints then change on restart).
 */
export function loadFingerprintKey(creds: { fingerprintKeyFile?: string; fingerprintKeyEnv?: string }, options: { create?: boolean } = {}): FingerprintKey {
  if (creds.fingerprintKeyEnv) return { key: Buffer.from(readSecretValue({ env: creds.fingerprintKeyEnv }, 'credentials.fingerprintKeyEnv')), origin: 'env' };
  const file = creds.fingerprintKeyFile;
  if (!file) return { key: randomBytes(32), origin: 'ephemeral' };
  let existing: string | undefined;
  try {
    existing = readFileSync(file, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || options.create === false) {
      throw new CutoverError('CREDENTIAL_SOURCE', `Cannot read credentials.fingerprintKeyFile ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'}); every replica needs the same key file.`);
    }
  }
  if (existing !== undefined) {
    // An empty key would fingerprint with no secret at all (anyone could compute the fingerprints).
    if (existing === '') throw new CutoverError('CREDENTIAL_SOURCE', `credentials.fingerprintKeyFile ${file} is empty; restore the key every replica uses, or delete the file to have a new one made.`);
    return { key: Buffer.from(existing), origin: 'file' };
  }
  const text = randomBytes(32).toString('hex');
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  // Written whole to a temp file, synced, then linked into place: link() fails if a key is there
  // already (two processes starting together keep the first one's), and no reader ever sees the file
  // half written or empty (a crash between create and write left an empty key file before).
  const temp = join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    writeNewFile(temp, `${text}\n`);
    try {
      linkSync(temp, file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return loadFingerprintKey(creds, { create: false });
      // A file system without hard links (some SMB, FUSE or FAT mounts): created in place instead,
      // still never over an existing key.
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
      try {
        writeNewFile(file, `${text}\n`);
      } catch (inPlace) {
        if ((inPlace as NodeJS.ErrnoException).code === 'EEXIST') return loadFingerprintKey(creds, { create: false });
        throw inPlace;
      }
    }
  } catch (err) {
    if (err instanceof CutoverError) throw err;
    throw new CutoverError('CREDENTIAL_SOURCE', `Cannot create credentials.fingerprintKeyFile ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'}); check the directory's permissions.`);
  } finally {
    try {
      unlinkSync(temp);
    } catch {
      // Never created, or gone already.
    }
  }
  return { key: Buffer.from(text), origin: 'created' };
}
