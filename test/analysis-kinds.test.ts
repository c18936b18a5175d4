/**
 * Issue 13, "every kind counts" and "a status matrix per route": what the diffs report and the
 * metrics scrape show after real comparisons run through the analysis.
 */
import { describe, expect, it } from 'vitest';
import { Analysis, type AnalysisOptions } from '../src/analysis/analysis.js';
import { ExampleStore } from '../src/analysis/examples.js';
import { compileRules } from '../src/compare/index.js';
import { BUILTIN_COMPARE, validateConfig } from '../src/config/load.js';
import type { UpstreamAnswer } from '../src/forward/capture.js';
import { RouteTable } from '../src/routing/table.js';
import { Telemetry } from '../src/telemetry/metrics.js';

function answer(body: string, status = 200): UpstreamAnswer {
  const outcome = status >= 500 ? '5xx' : status >= 400 ? '4xx' : status >= 300 ? '3xx' : '2xx';
  return { outcome, status, headers: { 'content-type': 'application/json' }, body: Buffer.from(body), truncated: false, seconds: 0.01 };
}

function setup(options: Partial<AnalysisOptions> = {}) {
  const config = validateConfig({
    backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
      // These pairs carry no baseline replay: with baselines on, the first ones would wait for one.
      defaults: { shadow: { baselinePercent: 0 } },
    routes: [{ name: 'r', match: { path: '/r' } }],
  });
  const telemetry = new Telemetry({ defaultMetrics: false });
  const routes = new RouteTable(config.routes, config.defaults, telemetry);
  let now = 1_000_000;
  const analysis = new Analysis(routes, { now: () => now, ...options });
  const pair = (legacy: UpstreamAnswer, candidate: UpstreamAnswer) =>
    analysis.process({ route: routes.get('r')!, method: 'GET', path: '/r', primaryIsNew: false, primary: legacy, shadow: candidate, baseline: null });
  return { analysis, pair, telemetry, advance: (ms: number) => (now += ms) };
}

const field = (analysis: Analysis, name: string) => analysis.diffs('r')!.fields.find((f) => f.field === name);

describe('every kind counts', () => {
  it('counts each kind of a field once per comparison, in the report and in the metrics', async () => {
    const { analysis, pair, telemetry } = setup();
    // A list without ids that lost its first element and gained two: `$[]` is both missing and extra.
    for (let i = 0; i < 3; i++) pair(answer('[1,2,3,4]'), answer('[2,3,4,5,6]'));
    const f = field(analysis, '$[]')!;
    expect(f.mismatches).toBe(3);
    expect(f.kinds).toEqual({ missing: 3, extra: 3 });
    const scrape = await telemetry.exposition();
    expect(scrape).toMatch(/cutover_mismatch_fields_total\{route="r",field="\$\[\]",kind="missing"\} 3/);
    expect(scrape).toMatch(/cutover_mismatch_fields_total\{route="r",field="\$\[\]",kind="extra"\} 3/);
  });

  it('counts each field and kind once per comparison also when a comparison has many differing fields', () => {
    const { analysis, pair } = setup();
    // 30 differing members, then a list that lost two elements and gained three (its length, two
    // missing and three extra elements): past the first
    // sixteen fields, differences are grouped through an index, with the same counts.
    const members = (v: number) => Array.from({ length: 30 }, (_, i) => `"f${i}":${v}`).join(',');
    for (let i = 0; i < 3; i++) pair(answer(`{${members(1)},"list":[1,2,3,4]}`), answer(`{${members(2)},"list":[3,4,5,6,7]}`));
    const report = analysis.diffs('r')!;
    expect(report.fields).toHaveLength(32);
    for (let i = 0; i < 30; i++) expect(field(analysis, `$.f${i}`)).toMatchObject({ mismatches: 3, kinds: { value: 3 } });
    expect(field(analysis, '$.list')).toMatchObject({ mismatches: 3, kinds: { length: 3 } });
    expect(field(analysis, '$.list[]')).toMatchObject({ mismatches: 3, kinds: { missing: 3, extra: 3 } });
  });

  it('keeps an example of a rare kind while a frequent kind of the same field keeps coming', () => {
    const { analysis, pair, advance } = setup({ examplesPerField: 2 });
    pair(answer('{"a":1}'), answer('{"a":"1"}'));
    for (let i = 0; i < 20; i++) {
      advance(10);
      pair(answer('{"a":1}'), answer(`{"a":${i + 2}}`));
    }
    const f = field(analysis, '$.a')!;
    expect(f.kinds).toEqual({ type: 1, value: 20 });
    const kinds = f.examples.map((e) => e.kind);
    expect(kinds).toContain('type');
    expect(kinds.filter((k) => k === 'value')).toHaveLength(1);
  });

  it('drops examples with the window', () => {
    const { analysis, pair, advance } = setup({ windowMs: 60_000, slices: 6 });
    pair(answer('{"a":1}'), answer('{"a":2}'));
    expect(field(analysis, '$.a')!.examples).toHaveLength(1);
    advance(61_000);
    pair(answer('{"b":1}'), answer('{"b":2}'));
    expect(field(analysis, '$.a')).toBeUndefined();
    const report = analysis.diffs('r')!;
    expect(report.fields.flatMap((f) => f.examples.map((e) => e.location))).toEqual(['$.b']);
  });

  it('gives examples to fields first seen after the example store is full (the least recently updated go)', () => {
    // maxFields 2 → at most 4 (field, kind) entries; one field per slice, so none folds into _other.
    const { analysis, pair, advance } = setup({ maxFields: 2, windowMs: 100_000, slices: 10 });
    for (let i = 0; i < 6; i++) {
      pair(answer(`{"f${i}":1}`), answer(`{"f${i}":2}`));
      advance(10_000);
    }
    const report = analysis.diffs('r')!;
    const withExamples = report.fields.filter((f) => f.examples.length > 0).map((f) => f.field).sort();
    expect(withExamples).toEqual(['$.f2', '$.f3', '$.f4', '$.f5']);
  });

  it('still gives examples to new fields after 200 fields had them, once those age out', () => {
    const { analysis, pair, advance } = setup({ windowMs: 60_000, slices: 6 });
    for (let i = 0; i < 200; i++) pair(answer(`{"f${i}":1}`), answer(`{"f${i}":2}`));
    advance(61_000);
    pair(answer('{"late":1}'), answer('{"late":2}'));
    expect(field(analysis, '$.late')!.examples).toHaveLength(1);
  });
});

describe('status matrix', () => {
  it('counts legacy → new statuses per route, with bounded labels, in the report and as cutover_status_pairs_total', async () => {
    const { analysis, pair, telemetry } = setup();
    pair(answer('{}'), answer('{}'));
    pair(answer('{"id":1}'), answer('{"error":"not found"}', 404));
    pair(answer('{"id":2}'), answer('{"error":"not found"}', 404));
    pair(answer('{}'), answer('{}', 418));
    pair(answer('{}', 404), answer('{}', 404));
    expect(analysis.diffs('r')!.statusPairs).toEqual([
      { legacy: '200', new: '404', count: 2 },
      { legacy: '200', new: '200', count: 1 },
      { legacy: '200', new: '4xx', count: 1 },
      { legacy: '404', new: '404', count: 1 },
    ]);
    const scrape = await telemetry.exposition();
    expect(scrape).toMatch(/cutover_status_pairs_total\{route="r",legacy="200",new="404"\} 2/);
    expect(scrape).toMatch(/cutover_status_pairs_total\{route="r",legacy="200",new="4xx"\} 1/);
    // Series appear as pairs are seen: four pairs seen, four series.
    expect(scrape.split('\n').filter((l) => l.startsWith('cutover_status_pairs_total{'))).toHaveLength(4);
  });
});

describe('example store', () => {
  it('drops (field, kind) entries whose newest example left the window, also after the clock went back', () => {
    const rules = compileRules(BUILTIN_COMPARE);
    const store = new ExampleStore(100, 5, 1_000);
    const add = (field: string, at: number): void => store.add(field, 'value', { at, method: 'GET', path: '/', diff: { field, path: field, kind: 'value' }, rules, baseline: false });
    add('a', 0);
    add('b', 500);
    add('c', 1_200); // a (0) is out of the window
    expect(store.hasField('a')).toBe(false);
    add('c', 1_300);
    add('d', 1_600); // b (500) is out
    expect([store.hasField('b'), store.size]).toEqual([false, 2]);
    add('e', 100); // the clock went back
    add('f', 2_400); // c (newest 1,300) is out; d is not, and the walk stops there
    expect([store.hasField('c'), store.hasField('d'), store.size]).toEqual([false, true, 3]);
    add('g', 3_000); // d (1,600) and e (100) are out
    expect([store.hasField('d'), store.hasField('e'), store.size]).toEqual([false, false, 2]);
  });

  it('evicts the (field, kind) updated least recently at its bound: an update makes an entry the newest again', () => {
    const rules = compileRules(BUILTIN_COMPARE);
    const store = new ExampleStore(3, 2, 1_000_000);
    const add = (field: string, kind: 'value' | 'type', at: number): void => store.add(field, kind, { at, method: 'GET', path: `/${at}`, diff: { field, path: field, kind }, rules, baseline: false });
    add('a', 'value', 1);
    add('b', 'value', 2);
    add('a', 'type', 3);
    add('b', 'value', 4); // b/value is the newest now; a/value the least recently updated
    add('c', 'value', 5); // at the bound: a/value goes, a/type stays
    expect([store.size, store.hasField('a'), store.hasField('b'), store.hasField('c')]).toEqual([3, true, true, true]);
    const examples = store.byField(0);
    expect(examples.get('a')!.map((e) => [e.diff.kind, e.at])).toEqual([['type', 3]]);
    // Newest first, two per (field, kind).
    add('b', 'value', 6);
    expect(store.byField(0).get('b')!.map((e) => e.at)).toEqual([6, 4]);
    add('d', 'value', 7); // a/type (3) goes: a has no examples left
    add('e', 'value', 8); // c (5) goes
    expect([store.size, store.hasField('a'), store.hasField('c'), store.hasField('b')]).toEqual([3, false, false, true]);
    expect([...store.byField(0).keys()]).toEqual(['b', 'd', 'e']);
  });
});
