/**
 * The readiness report a change owner signs: per route where it stands and on what evidence, and
 * overall READY / NOT READY with the reasons. Pure: everything it needs comes in `ReportInput`
 * (states, evidence, the analysis's field summaries, gate results, rollbacks, the config hash, now).
 *
 * READY means: bypass off, no route rolled back, and every route either complete or passing every
 * gate on the evidence since its last weight change. Anything inconclusive is NOT READY (say so, and
 * why), never READY by default.
 */
import { LATENCY_ALPHA, LATENCY_BASIS_WORDS, latencySummaries, materialShift, shownLatency, wilson, type LatencyBasis } from './gates.js';
import type { GateResult, RouteEvidence, RouteStateName } from './types.js';
import type { DiffsReport } from '../analysis/analysis.js';

/** One differing field as the analysis reports it (`DiffsReport.fields[]` maps onto it, see `fieldsFromDiffs`). */
export interface ReportFieldInput {
  field: string;
  mismatches: number;
  /** Explained by noise (differs between two answers of the same backend as often). */
  noise: boolean;
  /** One example: the request and both values (already redacted by the analysis). */
  example?: { method: string; path: string; legacy?: unknown; new?: unknown };
}

export interface ReportRouteInput {
  route: string;
  state: RouteStateName;
  weight: number;
  step: number;
  /** Epoch ms since which the evidence counts (the route's last weight change). */
  since: number;
  /** The evidence since then; null when the analysis has none. */
  evidence: RouteEvidence | null;
  /** The latest check's gates ([] before the first check). */
  gates: GateResult[];
  fields?: ReportFieldInput[];
}

export interface ReportRollback {
  route: string;
  /** ISO time. */
  at: string;
  who: string;
  reason: string;
}

/** A legacy credential still seen on a route after that route's cutover completed: revoke it, or find its owner. */
export interface ReportStraggler {
  fingerprint: string;
  scheme: string;
  routes: string[];
  /** Epoch ms. */
  lastSeen: number;
  requests: number;
}

export interface ReportInput {
  routes: ReportRouteInput[];
  /** From the credential inventory; absent when the proxy keeps none. */
  stragglers?: ReportStraggler[];
  rollbacks: ReportRollback[];
  configHash: string;
  bypass: boolean;
  mode: 'auto' | 'observe';
  /** Epoch ms. */
  now: number;
}

export interface LatencyLine {
  p50: number | null;
  p99: number | null;
  count: number;
}

export interface RouteReport {
  route: string;
  state: RouteStateName;
  weight: number;
  step: number;
  evidenceSince: string;
  samples: number;
  mismatches: number;
  mismatchRate: number | null;
  mismatchInterval: { low: number; high: number } | null;
  topFields: { field: string; mismatches: number; example?: ReportFieldInput['example'] }[];
  noiseFields: string[];
  /** `basis`: which samples the figures are from, compared pairs or live answers (see gates.ts); null with neither. */
  latency: { basis: LatencyBasis | null; legacy: LatencyLine; new: LatencyLine; p99Ratio: number | null; newClearlySlower: boolean };
  errorRates: { legacy: number | null; new: number | null; legacyRequests: number; newRequests: number };
  gates: GateResult[];
  rollbacks: ReportRollback[];
  ready: boolean;
  reasons: string[];
}

export interface Report {
  verdict: 'READY' | 'NOT READY';
  ready: boolean;
  reasons: string[];
  generatedAt: string;
  configHash: string;
  mode: 'auto' | 'observe';
  bypass: boolean;
  routes: RouteReport[];
  /** The revocation to-do list: legacy credentials still in use on routes whose cutover is complete. */
  stragglers: (Omit<ReportStraggler, 'lastSeen'> & { lastSeen: string })[];
}

/** Fields shown per route. */
export const TOP_FIELDS = 5;

/** The analysis's diffs report as report fields (the first example of each field). */
export function fieldsFromDiffs(diffs: Pick<DiffsReport, 'fields'>): ReportFieldInput[] {
  return diffs.fields.map((f) => {
    const e = f.examples[0];
    return { field: f.field, mismatches: f.mismatches, noise: f.noise, example: e && { method: e.method, path: e.path, legacy: e.legacy, new: e.new } };
  });
}

function routeReport(r: ReportRouteInput, input: ReportInput): RouteReport {
  const e = r.evidence;
  const samples = e?.comparisons ?? 0;
  const mismatches = e?.mismatches ?? 0;
  // The figures shown are those of the comparison that finds new clearly slower, if one does.
  const summaries = e === null ? null : latencySummaries(e);
  const slower = summaries?.find((s) => s.pSlower !== null && s.shift !== null && s.pSlower < LATENCY_ALPHA && s.shift > materialShift(s.legacy.p50 ?? 0, 0.2));
  const lat = slower ?? (summaries === null ? null : shownLatency(summaries));
  const newClearlySlower = r.gates.find((g) => g.gate === 'maxLatencyRatio')?.verdict === 'fail' || slower !== undefined;
  const fields = [...(r.fields ?? [])];
  const rollbacks = input.rollbacks.filter((b) => b.route === r.route);
  const reasons: string[] = [];
  if (r.state === 'rolled_back') reasons.push(`${r.route} was rolled back (${rollbacks.at(-1)?.reason ?? 'see the audit log'}).`);
  else if (r.state !== 'complete') {
    if (r.gates.length === 0) reasons.push(`${r.route} has not been checked yet.`);
    for (const g of r.gates) {
      if (g.verdict === 'fail') reasons.push(`${r.route}: ${g.gate} failed: ${g.detail}`);
      else if (g.verdict === 'no_data') reasons.push(`${r.route}: ${g.gate} is inconclusive: ${g.detail}`);
    }
  }
  return {
    route: r.route,
    state: r.state,
    weight: r.weight,
    step: r.step,
    evidenceSince: new Date(r.since).toISOString(),
    samples,
    mismatches,
    mismatchRate: samples > 0 ? mismatches / samples : null,
    mismatchInterval: samples > 0 ? wilson(mismatches, samples) : null,
    topFields: fields
      .filter((f) => !f.noise && f.mismatches > 0)
      .sort((a, b) => b.mismatches - a.mismatches)
      .slice(0, TOP_FIELDS)
      .map((f) => ({ field: f.field, mismatches: f.mismatches, example: f.example })),
    noiseFields: fields.filter((f) => f.noise).map((f) => f.field),
    latency: {
      basis: lat !== null && (lat.legacy.count > 0 || lat.new.count > 0) ? lat.basis : null,
      legacy: lat ? lat.legacy : { p50: null, p99: null, count: 0 },
      new: lat ? lat.new : { p50: null, p99: null, count: 0 },
      p99Ratio: lat?.p99Ratio ?? null,
      newClearlySlower,
    },
    errorRates: {
      legacy: e && e.legacy.requests > 0 ? e.legacy.errors / e.legacy.requests : null,
      new: e && e.new.requests > 0 ? e.new.errors / e.new.requests : null,
      legacyRequests: e?.legacy.requests ?? 0,
      newRequests: e?.new.requests ?? 0,
    },
    gates: r.gates,
    rollbacks,
    ready: reasons.length === 0,
    reasons,
  };
}

export function buildReport(input: ReportInput): Report {
  const routes = input.routes.map((r) => routeReport(r, input));
  const reasons: string[] = [];
  if (input.bypass) reasons.push('The emergency bypass is on: all live traffic goes to legacy.');
  if (routes.length === 0) reasons.push('No routes are configured.');
  for (const r of routes) reasons.push(...r.reasons);
  for (const r of routes) {
    if (r.latency.newClearlySlower && r.ready) reasons.push(`${r.route}: the new backend is clearly slower (p50 ${ms(r.latency.new.p50)} vs ${ms(r.latency.legacy.p50)}); within the gate, but look.`);
  }
  const blocking = input.bypass || routes.length === 0 || routes.some((r) => !r.ready);
  return {
    verdict: blocking ? 'NOT READY' : 'READY',
    ready: !blocking,
    reasons,
    generatedAt: new Date(input.now).toISOString(),
    configHash: input.configHash,
    mode: input.mode,
    bypass: input.bypass,
    routes,
    stragglers: (input.stragglers ?? []).map((s) => ({ ...s, lastSeen: new Date(s.lastSeen).toISOString() })),
  };
}

function ms(seconds: number | null): string {
  return seconds === null ? 'n/a' : `${(seconds * 1000).toFixed(1)} ms`;
}

function pct(rate: number | null): string {
  return rate === null ? 'n/a' : `${(rate * 100).toFixed(2)}%`;
}

/**
 * Text from the traffic (a field name is a backend's JSON key, a path is a client's) put in one line
 * of the markdown: line breaks, pipes and backticks escaped, so it can never start a line of its own
 * (a key holding "\n# Cutover readiness: READY" must not read as the verdict).
 */
function inline(text: string): string {
  return text.replace(/[\r\n\u2028\u2029]/g, (c) => JSON.stringify(c).slice(1, -1)).replace(/\|/g, '\\|').replace(/`/g, "'");
}

function cell(value: unknown): string {
  const text = value === undefined ? '—' : JSON.stringify(value);
  const short = text.length > 60 ? `${text.slice(0, 57)}...` : text;
  return short.replace(/\|/g, '\\|').replace(/`/g, "'");
}

function gateValue(g: GateResult): string {
  if (g.value === null) return 'n/a';
  if (g.gate === 'maxMismatchRate' || g.gate === 'maxErrorRateIncrease') return pct(g.value);
  if (g.gate === 'maxLatencyRatio') return g.value.toFixed(2);
  return String(g.value);
}

function gateThreshold(g: GateResult): string {
  if (g.gate === 'maxMismatchRate' || g.gate === 'maxErrorRateIncrease') return pct(g.threshold);
  return String(g.threshold);
}

/** The report for people: a heading with the verdict, then one section per route. */
export function renderMarkdown(report: Report): string {
  const out: string[] = [];
  out.push(`# Cutover readiness: ${report.verdict}`, '');
  out.push(`Made ${report.generatedAt} · config ${report.configHash} · mode ${report.mode}${report.bypass ? ' · **bypass on**' : ''}`, '');
  if (report.reasons.length) {
    out.push(report.ready ? 'Notes:' : 'Why not ready:', '');
    for (const r of report.reasons) out.push(`- ${inline(r)}`);
    out.push('');
  }
  out.push('| route | state | weight | samples | mismatch rate (95% interval) | p99 legacy / new | errors legacy / new | ready |', '| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of report.routes) {
    const interval = r.mismatchInterval ? ` (${pct(r.mismatchInterval.low)}–${pct(r.mismatchInterval.high)})` : '';
    out.push(
      `| ${r.route} | ${r.state} | ${r.weight}% | ${r.samples} | ${pct(r.mismatchRate)}${interval} | ${ms(r.latency.legacy.p99)} / ${ms(r.latency.new.p99)} | ${pct(r.errorRates.legacy)} / ${pct(r.errorRates.new)} | ${r.ready ? 'yes' : 'no'} |`,
    );
  }
  for (const r of report.routes) {
    out.push('', `## ${r.route}: ${r.state} at ${r.weight}% (step ${r.step})`, '');
    out.push(`Evidence since ${r.evidenceSince}: ${r.samples} comparisons, ${r.mismatches} with a real difference.`, '');
    out.push(
      `Latency${r.latency.basis === null ? '' : ` ${LATENCY_BASIS_WORDS[r.latency.basis]}`}: p50 legacy ${ms(r.latency.legacy.p50)}, new ${ms(r.latency.new.p50)}; p99 legacy ${ms(r.latency.legacy.p99)}, new ${ms(r.latency.new.p99)}${r.latency.p99Ratio === null ? '' : ` (ratio ${r.latency.p99Ratio.toFixed(2)})`}.${r.latency.newClearlySlower ? ' **The new backend is clearly slower.**' : ''}`,
      '',
    );
    if (r.gates.length) {
      out.push('| gate | value | threshold | verdict | detail |', '| --- | --- | --- | --- | --- |');
      for (const g of r.gates) out.push(`| ${g.gate} | ${gateValue(g)} | ${gateThreshold(g)} | ${g.verdict} | ${g.detail.replace(/\|/g, '\\|')} |`);
      out.push('');
    }
    if (r.topFields.length) {
      out.push('Top differing fields:', '', '| field | mismatches | example (legacy → new) |', '| --- | --- | --- |');
      for (const f of r.topFields) {
        const ex = f.example ? `${inline(f.example.method)} ${inline(f.example.path)}: ${cell(f.example.legacy)} → ${cell(f.example.new)}` : '—';
        out.push(`| \`${inline(f.field)}\` | ${f.mismatches} | ${ex} |`);
      }
      out.push('');
    }
    if (r.noiseFields.length) out.push(`Noise fields (ignored): ${r.noiseFields.map((f) => `\`${inline(f)}\``).join(', ')}.`, '');
    if (r.rollbacks.length) {
      out.push('Rollbacks:', '');
      for (const b of r.rollbacks) out.push(`- ${b.at} by ${inline(b.who)}: ${inline(b.reason)}`);
      out.push('');
    }
  }
  if (report.stragglers.length) {
    out.push('', '## Legacy credentials still in use on completed routes (revocation to-do)', '');
    out.push('| fingerprint | scheme | routes | requests | last seen |', '| --- | --- | --- | --- | --- |');
    for (const s of report.stragglers) out.push(`| \`${s.fingerprint}\` | ${s.scheme} | ${s.routes.join(', ')} | ${s.requests} | ${s.lastSeen} |`);
  }
  return `${out.join('\n').trimEnd()}\n`;
}

export function renderJson(report: Report): string {
  return `${JSON.stringify(report, null, 2)}\n`;
}
