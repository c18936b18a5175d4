/**
 * Bounds on attacker-chosen names. JSON keys come from backend answers, so their length is not
 * ours to choose: a 1 MB key must not become a 1 MB metric label, stored path or admin answer.
 * Long names are cut and suffixed with a short hash of the whole name, so two distinct long keys
 * with the same beginning stay two distinct fields. Pure: no I/O, no clock, no globals.
 */

/** Longest body key kept as is in a field path. */
export const MAX_KEY_CHARS = 128;
/** Longest rendered path (field or concrete location). */
export const MAX_PATH_CHARS = 1024;

/** FNV-1a (32 bit) over UTF-16 code units, as 8 hex digits: short, stable, and enough to tell keys apart. */
function fnv1a(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

/** `name` when it has at most `max` characters, else its beginning, "…" and a hash of all of it (exactly `max` characters). */
export function boundName(name: string, max = MAX_KEY_CHARS): string {
  if (name.length <= max) return name;
  let head = name.slice(0, max - 9);
  // Never leave half of a surrogate pair at the cut.
  const last = head.charCodeAt(head.length - 1);
  if (last >= 0xd800 && last <= 0xdbff) head = head.slice(0, -1);
  return `${head}…${fnv1a(name)}`;
}
