/**
 * The diffs report's bounds on examples: each value is cut, and all examples of one answer share a
 * character budget spent in report order (real mismatches first), so the answer never grows with
 * the number of fields a backend can make differ.
 */
import { describe, expect, it } from 'vitest';
import { compileRules, DEFAULT_NOISE_THRESHOLDS } from '../src/compare/index.js';
import { BUILTIN_COMPARE } from '../src/config/load.js';
import { buildDiffsReport, MAX_EXAMPLE_VALUE_CHARS, MAX_EXAMPLES_CHARS, type StoredExample } from '../src/analysis/report.js';
import { Slice } from '../src/analysis/window.js';

const rules = compileRules({ ...BUILTIN_COMPARE });

describe('diffs report', () => {
  it('cuts example values and keeps all examples within one budget, the first fields keeping theirs', () => {
    const slice = new Slice();
    slice.reset(0);
    slice.comparisons = 100;
    const examples = new Map<string, StoredExample[]>();
    const big = 'x'.repeat(10 * MAX_EXAMPLE_VALUE_CHARS);
    for (let i = 0; i < 400; i++) {
      const field = `$.f${String(i).padStart(3, '0')}`;
      // Fewer mismatches further down the list: the report sorts f000 first.
      slice.field(field).mismatches = 1000 - i;
      const list: StoredExample[] = [];
      for (let k = 0; k < 5; k++) {
        list.push({ at: 0, method: 'GET', path: '/x', diff: { field, path: field, kind: 'value', legacy: big, candidate: big }, rules, baseline: false });
      }
      examples.set(field, list);
    }
    const report = buildDiffsReport({ route: 'r', windowSeconds: 300, live: [slice], examples, errors: [], dropped: 0, noise: DEFAULT_NOISE_THRESHOLDS });
    expect(report.fields).toHaveLength(400);
    expect(report.fields[0].field).toBe('$.f000');
    expect(report.fields[0].examples).toHaveLength(5);
    for (const e of report.fields[0].examples) expect((e.legacy as string).length).toBe(MAX_EXAMPLE_VALUE_CHARS);
    expect(report.fields[399].examples).toHaveLength(0);
    const kept = report.fields.reduce((n, f) => n + f.examples.length, 0);
    expect(kept).toBeGreaterThan(0);
    expect(report.examplesOmitted).toBe(400 * 5 - kept);
    // The budget counts approximate JSON characters (a fixed allowance per example for its other members).
    expect(JSON.stringify(report.fields.map((f) => f.examples)).length).toBeLessThanOrEqual(MAX_EXAMPLES_CHARS * 1.05);
  });
});
