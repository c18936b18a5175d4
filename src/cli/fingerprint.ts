/**
 * `cutover fingerprint`: the fingerprint of a key read from stdin, under the config's fingerprint
 * key, so an operator can find a key in the inventory (or revoke it) without the proxy storing it.
 */
import { loadFingerprintKey } from '../config/credentials.js';
import type { Config } from '../config/load.js';
import { createFingerprinter, credentialFromInput } from '../credentials/fingerprint.js';
import { CutoverError } from '../errors.js';

/** Bigger input is not a key; refuse rather than buffer it. */
const MAX_INPUT = 64 * 1024;

export async function fingerprintCommand(config: Config, input: NodeJS.ReadableStream): Promise<string> {
  // Never created here: a new key would print fingerprints that match nothing the proxy recorded.
  const { key, origin } = loadFingerprintKey(config.credentials, { create: false });
  if (origin === 'ephemeral') {
    throw new CutoverError('CUTOVER_NO_FINGERPRINT_KEY', 'The config sets neither credentials.fingerprintKeyFile nor credentials.fingerprintKeyEnv; set the one the proxy uses.');
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of input) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += b.length;
    if (size > MAX_INPUT) throw new CutoverError('CUTOVER_INPUT_TOO_LARGE', 'stdin is larger than 64 KiB; pipe in one key.');
    chunks.push(b);
  }
  const credential = credentialFromInput(Buffer.concat(chunks).toString('utf8'));
  if (!credential) throw new CutoverError('CUTOVER_NO_INPUT', 'No key on stdin; pipe it in, e.g. printf %s "$KEY" | cutover fingerprint --config F.');
  return createFingerprinter(key)(credential);
}
