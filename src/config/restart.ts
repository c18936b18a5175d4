/**
 * Which config keys a reload may change. Routes and defaults (matching, rewrites, shadow and compare
 * rules, seed weights) and the credential policy (`credentials.revoked`, `mappings`, `requireMapping`)
 * go live on reload; the keys below shape listeners, pools, the state store, the logger, the sticky
 * split or the fingerprint key, which are built once at start, so a reload that changes them is
 * refused, naming each key.
 */
import type { Config } from './load.js';

/** Keys that only a restart applies (README "Reloading and state" lists them). */
export const RESTART_ONLY_KEYS = [
  'listen',
  'admin',
  'backends',
  'shadow',
  'sticky',
  'credentials.legacy',
  'credentials.fingerprintKeyFile',
  'credentials.fingerprintKeyEnv',
  'credentials.inventory',
  'log',
  'cutover.state',
  // The audit log is opened once at start.
  'cutover.audit',
] as const;

function at(config: Config, path: string): unknown {
  let value: unknown = config;
  for (const part of path.split('.')) value = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[part] : undefined;
  return value;
}

function describe(value: unknown): string {
  if (value === undefined) return '(unset)';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function diff(path: string, before: unknown, after: unknown, out: string[]): void {
  if (JSON.stringify(before) === JSON.stringify(after)) return;
  const plain = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (plain(before) && plain(after)) {
    for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) diff(`${path}.${key}`, before[key], after[key], out);
    return;
  }
  out.push(`${path}: changed from ${describe(before)} to ${describe(after)}, and only a restart applies it; put it back, or restart cutover to change it`);
}

/** One sentence per restart-only key whose value differs between the running and the reloaded config. */
export function restartOnlyChanges(running: Config, next: Config): string[] {
  const out: string[] = [];
  for (const key of RESTART_ONLY_KEYS) diff(key, at(running, key), at(next, key), out);
  // The same file or variable with a new secret in it (a rotated admin token, backend credential or
  // fingerprint key): as much a change as a new path, and as restart-only.
  for (const path of new Set([...Object.keys(running.secrets ?? {}), ...Object.keys(next.secrets ?? {})])) {
    if (running.secrets?.[path] === next.secrets?.[path] || !RESTART_ONLY_KEYS.some((key) => path === key || path.startsWith(`${key}.`))) continue;
    if (out.some((line) => line.startsWith(`${path}:`))) continue;
    out.push(`${path}: the secret it names changed, and only a restart applies it; put the old one back, or restart cutover to change it`);
  }
  return out;
}
