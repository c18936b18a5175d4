#!/usr/bin/env node
// Comparator micro-benchmark: cutover's compareResponses against json-diff and microdiff.
//
//   npx tsc -p tsconfig.build.json && node bench/compare.mjs [--quick] [--baseline DIR]
//
// --baseline DIR: DIR holds an older build (DIR/compare/index.js, e.g. main's dist copied aside);
// then each case times the old and the new comparator in interleaved rounds (the machine may be
// shared) and reports the medians and their ratio.
//
// Ours is timed from the captured Buffers, so it includes two JSON.parse calls (and the fast path
// for equal bodies); json-diff and microdiff get already-parsed objects and do no parsing at all.
// The "JSON.parse ×2" row gives the parsing share so the two can be set side by side honestly.
// Each case is bounded by time (1 s, 0.3 s with --quick) after a warm-up of a fifth of that.
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import jsonDiff from 'json-diff';
import microdiff from 'microdiff';
import { Analysis } from '../dist/analysis/analysis.js';
import { compareResponses, compileRules, RecentPairs } from '../dist/compare/index.js';
import { validateConfig } from '../dist/config/load.js';
import { RouteTable } from '../dist/routing/table.js';
import { Telemetry } from '../dist/telemetry/metrics.js';
import { itemDocument } from './lib/item-doc.mjs';

const ctx = { route: 'bench', method: 'GET', path: '/bench' };
const settings = {
  headers: ['content-type'],
  ignoreHeaders: [],
  ignore: ['$.meta.requestId'],
  unordered: [],
  tolerance: { absolute: 0, relative: 0 },
  mappings: [],
  sensitive: [],
  maxBodyBytes: 1024 * 1024,
};

/** A realistic ~5 KB API answer: an envelope, a page of records with nested objects and arrays. */
function widgetPage() {
  return {
    meta: { requestId: 'req-1', page: 1, pageSize: 20, total: 20 },
    items: Array.from({ length: 20 }, (_, i) => ({
      id: 1000 + i,
      name: `Widget number ${i}`,
      price: 9.99 + i,
      currency: 'EUR',
      tags: ['blue', 'large', `batch-${i % 3}`],
      stock: { warehouse: 'FRA-1', quantity: 40 + i, reserved: i % 5 },
      createdAt: '2024-05-01T12:00:00.000Z',
      owner: { id: 77, email: 'owner@example.com' },
    })),
  };
}

/** One of bench/backend.mjs's answers, with its per-answer request id filled in. */
function backendDoc(flavor, padTo, requestId) {
  const doc = itemDocument(1, flavor, padTo);
  doc.meta.requestId = requestId;
  return doc;
}

const captured = (value) => ({ status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(value)), truncated: false });

function cases() {
  const page = widgetPage();
  const changed = structuredClone(page);
  changed.items[9].stock.quantity = 1;
  const items = Array.from({ length: 500 }, (_, i) => ({ sku: `sku-${i}`, qty: i, active: i % 2 === 0 }));
  const inserted = [...items.slice(0, 250), { sku: 'sku-new', qty: -1, active: true }, ...items.slice(250)];
  // About 1 MB: the envelope of a big export, with the noisy fields of real answers up front.
  const big = { meta: { requestId: 'req-1', generatedAt: '2024-05-01T12:00:00.000Z', page: 1 }, items: [] };
  for (let p = 0; JSON.stringify(big.items).length < 1_000_000; p++) big.items.push(...widgetPage().items.map((it) => ({ ...it, id: it.id + p * 20 })));
  const noisy = structuredClone(big);
  noisy.meta.requestId = 'req-2';
  noisy.meta.generatedAt = '2024-05-01T12:00:00.417Z';
  const oneField = structuredClone(big);
  oneField.items[Math.floor(big.items.length / 2)].stock.quantity = 1;
  return [
    { name: 'equal 5 KB', legacy: page, candidate: structuredClone(page) },
    { name: 'one-field mismatch 5 KB', legacy: page, candidate: changed },
    { name: '500 items, 1 inserted', legacy: { items }, candidate: { items: inserted } },
    { name: 'noisy meta in 1 MB', legacy: big, candidate: noisy },
    { name: 'one field in 1 MB', legacy: big, candidate: oneField },
    // bench/backend.mjs's legacy and new answers (the load runs' bodies): differences at both ends.
    { name: 'backend legacy vs new 2.4 KB', legacy: backendDoc('legacy', 0, 'legacy-1-1'), candidate: backendDoc('new', 0, 'new-1-1') },
    { name: 'backend legacy vs new 940 KB', legacy: backendDoc('legacy', 940_000, 'legacy-1-1'), candidate: backendDoc('new', 940_000, 'new-1-1') },
  ];
}

/** Runs fn for warm-up then for `budgetMs`, at least once each; returns ns per call. */
function measure(fn, budgetMs) {
  let sink = 0;
  const warmEnd = performance.now() + budgetMs / 5;
  do sink += fn() ? 1 : 0;
  while (performance.now() < warmEnd);
  let ops = 0;
  let batch = 1;
  const start = performance.now();
  let elapsed = 0;
  for (;;) {
    for (let i = 0; i < batch; i++) sink += fn() ? 1 : 0;
    ops += batch;
    elapsed = performance.now() - start;
    if (elapsed >= budgetMs) break;
    // Grow batches so the clock is read rarely for fast functions.
    if (elapsed < budgetMs / 20) batch *= 2;
  }
  return { nsPerOp: (elapsed * 1e6) / ops, ops, sink };
}

const round = (x) => (x >= 100 ? Math.round(x) : Math.round(x * 10) / 10);

export async function runCompareBench({ quick = false } = {}) {
  const budget = quick ? 300 : 1000;
  const rules = compileRules(settings);
  const rows = [];
  for (const c of cases()) {
    const a = captured(c.legacy);
    const b = captured(c.candidate);
    const ours = compareResponses(a, b, rules, ctx);
    const bytes = a.body.length;
    const la = JSON.parse(a.body.toString());
    const lb = JSON.parse(b.body.toString());
    const impls = [
      { impl: 'cutover compareResponses (incl. JSON.parse)', fn: () => compareResponses(a, b, rules, ctx), diffs: ours.differences.length },
      { impl: 'JSON.parse ×2 (share of the above)', fn: () => JSON.parse(a.body.toString()) !== JSON.parse(b.body.toString()), diffs: null },
      { impl: 'microdiff (parsed objects)', fn: () => microdiff(la, lb), diffs: microdiff(la, lb).length },
      // json-diff takes seconds on a megabyte: left out there, so the run stays short.
      ...(bytes > 100_000 ? [] : [{ impl: 'json-diff diff (parsed objects)', fn: () => jsonDiff.diff(la, lb), diffs: null }]),
    ];
    const baseline = { ns: 0 };
    for (const impl of impls) {
      const m = measure(impl.fn, budget);
      if (impl.impl.startsWith('cutover')) baseline.ns = m.nsPerOp;
      rows.push({
        case: c.name,
        bytes,
        impl: impl.impl,
        'ns/op': round(m.nsPerOp),
        'µs/op': round(m.nsPerOp / 1000),
        'vs cutover': impl.impl.startsWith('cutover') || impl.impl.startsWith('JSON') ? '' : `${round(m.nsPerOp / baseline.ns)}×`,
        ops: m.ops,
        reported: impl.diffs === null ? '' : impl.impl.startsWith('cutover') ? ours.differences.map((d) => `${d.kind} ${d.field}`).join('; ') || ours.result : `${impl.diffs} changes`,
      });
    }
  }
  rows.push(...polledRows(budget));
  return rows;
}

/**
 * What the load runs' traffic costs per pair: bench/backend.mjs's 16 item answers, polled over and
 * over with a new request id each time, so from a path's third pair on its last pair (compare/recent.ts)
 * serves it. Timed twice: the comparison alone, and comparing plus recording (the window, examples,
 * metrics and evidence of Analysis.process, as the proxy does on its main thread for small answers).
 */
export function polledRows(budget) {
  const config = validateConfig({
    backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
    defaults: { shadow: { baselinePercent: 0 } },
    routes: [{ name: 'items', match: { path: '/items/:id' } }],
  });
  const routes = new RouteTable(config.routes, config.defaults, new Telemetry({ defaultMetrics: false }));
  const route = routes.get('items');
  const answer = (flavor, id, n) => ({
    outcome: '2xx',
    status: 200,
    headers: { 'content-type': 'application/json; charset=utf-8' },
    body: Buffer.from(JSON.stringify(backendDoc(flavor, 0, `${flavor}-${id}-${n}`))),
    truncated: false,
    seconds: 0.001,
  });
  const pairs = Array.from({ length: 1024 }, (_, n) => {
    const id = (n % 16) + 1;
    return { route, method: 'GET', path: `/items/${id}`, primaryIsNew: false, primary: answer('legacy', id, n), shadow: answer('new', id, n), baseline: null };
  });
  const rules = route.rules.shadow;
  const state = { recent: new RecentPairs(4 * 1024 * 1024) };
  const analysis = new Analysis(routes, { workers: 0 });
  let i = 0;
  let j = 0;
  const impls = [
    {
      impl: 'cutover compareResponses, recent pairs kept',
      fn: () => {
        const p = pairs[i++ % pairs.length];
        return compareResponses(p.primary, p.shadow, rules, { route: 'items', method: p.method, path: p.path }, state).result === 'mismatch';
      },
      served: () => ({ hits: state.recent.stats().hits, calls: i }),
    },
    { impl: 'cutover Analysis.process: compared and recorded', fn: () => analysis.process(pairs[j++ % pairs.length]) === 'mismatch', served: () => ({ hits: analysis.recentPairs()[0].hits, calls: j }) },
  ];
  return impls.map((impl) => {
    const m = measure(impl.fn, budget);
    const { hits, calls } = impl.served();
    return {
      case: 'backend pairs polled (16 paths, new request id each)',
      bytes: pairs[0].primary.body.length,
      impl: impl.impl,
      'ns/op': round(m.nsPerOp),
      'µs/op': round(m.nsPerOp / 1000),
      'vs cutover': '',
      ops: m.ops,
      reported: `${hits} of ${calls} pairs (warm-up included) served by a recent pair`,
    };
  });
}

export function toMarkdown(rows) {
  const keys = ['case', 'bytes', 'impl', 'µs/op', 'vs cutover', 'ops', 'reported'];
  const lines = [`| ${keys.join(' | ')} |`, `| ${keys.map(() => '---').join(' | ')} |`];
  for (const r of rows) lines.push(`| ${keys.map((k) => r[k]).join(' | ')} |`);
  return lines.join('\n');
}

/** Old against new comparator, interleaved rounds per case; medians in µs and new/old ratio. */
export async function runBaselineBench(dir, { rounds = 9, budgetMs = 200 } = {}) {
  const old = await import(pathToFileURL(`${dir}/compare/index.js`).href);
  const builds = [
    { name: 'before', mod: old, rules: old.compileRules(settings) },
    { name: 'after', mod: { compareResponses }, rules: compileRules(settings) },
  ];
  const rows = [];
  for (const c of cases()) {
    const a = captured(c.legacy);
    const b = captured(c.candidate);
    const times = { before: [], after: [] };
    for (let r = 0; r < rounds; r++) {
      // Alternate which build goes first, so neither always meets a warmer or colder machine.
      const order = r % 2 ? [...builds].reverse() : builds;
      for (const bld of order) times[bld.name].push(measure(() => bld.mod.compareResponses(a, b, bld.rules, ctx), budgetMs).nsPerOp / 1000);
    }
    const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    const before = median(times.before);
    const after = median(times.after);
    rows.push({ case: c.name, 'before µs': round(before), 'after µs': round(after), ratio: Math.round((after / before) * 100) / 100 });
  }
  return rows;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const at = process.argv.indexOf('--baseline');
  if (at !== -1) {
    const rows = await runBaselineBench(process.argv[at + 1], { budgetMs: process.argv.includes('--quick') ? 100 : 200 });
    console.log(`node ${process.version}; interleaved rounds, medians; ratio = after / before.\n`);
    console.table(rows);
    process.exit(0);
  }
  const rows = await runCompareBench({ quick: process.argv.includes('--quick') });
  console.log(`node ${process.version}; ours includes JSON.parse of both bodies, the others get parsed objects.\n`);
  console.log(toMarkdown(rows));
}
