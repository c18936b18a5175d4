/**
 * Fingerprints of legacy credentials: HMAC-SHA256 under a key of the proxy's own, truncated to 64
 * bits and shown as `fp_` + 16 hex digits. A plain hash would not do: API keys are often short or
 * patterned, and anyone holding an unkeyed hash could try candidates offline. The fingerprint is
 * all the proxy keeps, shows or logs of a credential.
 */
import { createHmac } from 'node:crypto';

export const FINGERPRINT_PATTERN = /^fp_[0-9a-f]{16}$/;

export type Fingerprinter = (credential: string) => string;

/** A fingerprint function bound to `key` (the key stays inside the closure). */
export function createFingerprinter(key: Buffer | string): Fingerprinter {
  const k = typeof key === 'string' ? Buffer.from(key) : Buffer.from(key);
  return (credential) => `fp_${createHmac('sha256', k).update(credential, 'utf8').digest('hex').slice(0, 16)}`;
}

/** What `cutover fingerprint` reads from stdin: the key as typed or piped, without the line ending. */
export function credentialFromInput(text: string): string {
  return text.replace(/\r?\n$/, '');
}
