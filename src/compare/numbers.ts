/**
 * Lossless number comparison. JSON.parse turns every number into a 64-bit float, so two different
 * texts can parse to one value (`9007199254740993` and `…992`, `1e400` and `1e401`, `1` and `1.0`).
 * This module scans the JSON text itself for the numbers whose text is not what the parsed value
 * prints as (`String(value) !== text`): only those can hide a difference behind an equal value.
 *
 * Cost: the first scan (`hasLossyNumber`) is one pass over the text that jumps over strings with
 * indexOf and formats only numbers longer than 15 characters or written with `.`/`e`; it runs only
 * when the bodies' bytes differ. The second scan, which tracks paths, runs only for a body the first
 * one flagged.
 */
import type { PathKey } from './path.js';

export interface NumberText {
  keys: PathKey[];
  text: string;
}

/** Index just past the string that starts at `start` (a `"`). */
function skipString(text: string, start: number): number {
  let j = text.indexOf('"', start + 1);
  while (j !== -1) {
    let bs = 0;
    for (let k = j - 1; text.charCodeAt(k) === 92; k--) bs++;
    if (bs % 2 === 0) return j + 1;
    j = text.indexOf('"', j + 1);
  }
  return text.length;
}

function isNumberChar(c: number): boolean {
  return (c >= 48 && c <= 57) || c === 46 || c === 101 || c === 69 || c === 43 || c === 45;
}

function numberEnd(text: string, start: number): number {
  let j = start + 1;
  while (j < text.length && isNumberChar(text.charCodeAt(j))) j++;
  return j;
}

/** The text is not how its parsed value prints, so an equal parsed value does not mean an equal text. */
export function isLossy(token: string): boolean {
  if (token.length <= 15) {
    let plain = true;
    for (let i = 0; i < token.length; i++) {
      const c = token.charCodeAt(i);
      if (c === 46 || c === 101 || c === 69) {
        plain = false;
        break;
      }
    }
    // Short integers print as written; only `-0` prints differently ("0").
    if (plain) return token === '-0';
  }
  return String(Number(token)) !== token;
}

/**
 * Number tokens that might print differently from their text: a fraction ending in 0, an exponent,
 * 16 or more digits, `-0`, or a fraction below 1e-6. Every lossy token matches (a ≤ 15-digit decimal
 * maps to one double and prints as written, within 1e-6 ≤ |x| < 1e21); text inside strings may match
 * too, which only costs the exact check below. A native regex keeps the common body at a few µs.
 */
const CANDIDATE = /(?:^|[:[,])\s*(-?\d+\.\d*0(?!\d)|-?[\d.]*[eE]|-?(?:\d\.?){16}|-0(?![\d.eE])|-?0\.0{6})/g;

/** Does this JSON text hold a number whose text its parsed value does not reproduce? */
export function hasLossyNumber(text: string): boolean {
  // A fresh regex per call: a shared global one would carry lastIndex between calls (module state).
  const re = new RegExp(CANDIDATE);
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const start = m.index + m[0].length - m[1].length;
    const end = numberEnd(text, start);
    if (isLossy(text.slice(start, end))) return true;
    re.lastIndex = end;
  }
  return false;
}

interface Level {
  array: boolean;
  key: PathKey;
  expectKey: boolean;
  /** An object's keys read so far (made at its first key). */
  seen?: Set<string>;
}

/**
 * The lossy numbers of a valid JSON text by concrete path (keys joined by NUL). A key repeated in one
 * object keeps its last number, as JSON.parse keeps the last value.
 */
export function lossyNumbers(text: string): Map<string, NumberText> {
  const out = new Map<string, NumberText>();
  const stack: Level[] = [];
  const n = text.length;
  for (let i = 0; i < n; ) {
    const c = text.charCodeAt(i);
    const top = stack.length ? stack[stack.length - 1] : undefined;
    if (c === 34) {
      const end = skipString(text, i);
      if (top !== undefined && !top.array && top.expectKey) {
        top.key = JSON.parse(text.slice(i, end)) as string;
        top.expectKey = false;
        // A repeated key: JSON.parse keeps the last value, so whatever an earlier one held (a number,
        // or numbers deep in an array or object) no longer stands. Only a repeat scans what was kept.
        const seen = (top.seen ??= new Set<string>());
        if (seen.has(top.key as string) && out.size > 0) {
          const path = stack.map((l) => l.key).join('\u0000');
          for (const k of out.keys()) if (k === path || k.startsWith(`${path}\u0000`)) out.delete(k);
        } else seen.add(top.key as string);
      }
      i = end;
    } else if (c === 123 || c === 91) {
      stack.push({ array: c === 91, key: c === 91 ? 0 : '', expectKey: c === 123 });
      i++;
    } else if (c === 125 || c === 93) {
      stack.pop();
      i++;
    } else if (c === 44) {
      if (top !== undefined) {
        if (top.array) (top.key as number)++;
        else top.expectKey = true;
      }
      i++;
    } else if (c === 45 || (c >= 48 && c <= 57)) {
      const end = numberEnd(text, i);
      const token = text.slice(i, end);
      if (isLossy(token)) {
        const keys = stack.map((l) => l.key);
        out.set(keys.join('\u0000'), { keys, text: token });
      }
      i = end;
    } else i++;
  }
  return out;
}

/**
 * The exact decimal value of a JSON number text as `[-]digits e exponent` with no leading or trailing
 * zeros in `digits`, so two texts have equal canonical forms exactly when they denote one number.
 */
export function canonicalDecimal(token: string): string {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(token);
  if (m === null) return token;
  const frac = m[3] ?? '';
  let digits = (m[2] + frac).replace(/^0+/, '');
  if (digits === '') return '0';
  let exp = BigInt(m[4] ?? '0') - BigInt(frac.length);
  const trimmed = digits.replace(/0+$/, '');
  exp += BigInt(digits.length - trimmed.length);
  digits = trimmed;
  return `${m[1]}${digits}e${exp}`;
}

/** How two texts of one parsed value differ: `value` (different numbers), `format` (same number), or not at all. */
export function textDifference(a: string, b: string): 'value' | 'format' | undefined {
  if (a === b) return undefined;
  return canonicalDecimal(a) === canonicalDecimal(b) ? 'format' : 'value';
}
