/** Summaries for non-JSON bodies: where two texts part, and a digest for binary bodies. */
import { createHash } from 'node:crypto';

const LINE_PREVIEW = 80;

function clip(line: string): string {
  return line.length > LINE_PREVIEW ? `${line.slice(0, LINE_PREVIEW)}…` : line;
}

/**
 * Trims the common leading and trailing lines (linear, no LCS) and describes the differing block of
 * each side: `lines 12-14 of 40: "first differing line"`.
 */
export function textSummary(a: string, b: string): { legacy: string; candidate: string } {
  const la = a.split('\n');
  const lb = b.split('\n');
  let top = 0;
  while (top < la.length && top < lb.length && la[top] === lb[top]) top++;
  let endA = la.length;
  let endB = lb.length;
  while (endA > top && endB > top && la[endA - 1] === lb[endB - 1]) {
    endA--;
    endB--;
  }
  const describe = (lines: string[], end: number): string => {
    if (end <= top) return `no lines at ${top + 1} of ${lines.length}`;
    const span = end - top === 1 ? `line ${top + 1}` : `lines ${top + 1}-${end}`;
    return `${span} of ${lines.length}: ${JSON.stringify(clip(lines[top]))}`;
  };
  return { legacy: describe(la, endA), candidate: describe(lb, endB) };
}

export function digest(body: Buffer): string {
  return `sha256:${createHash('sha256').update(body).digest('hex')} (${body.length} bytes)`;
}
