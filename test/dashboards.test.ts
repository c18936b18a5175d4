/**
 * What SREs watch: dashboards/cutover.json, dashboards/alerts.yaml,
 * dashboards/recording-rules.yaml and their promtool unit tests.
 *
 * Needs the Debian package `prometheus` (promtool and prometheus on PATH).
 * The last block starts a real Prometheus that scrapes /metrics rendered by
 * the proxy's own telemetry module (src/telemetry/metrics.ts), so every
 * dashboard query, rule and documented example is evaluated against the
 * names and labels the proxy really exports.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { pollUntil, queryInstant, renderGrafanaExpr, SKIP_PROMETHEUS, startPrometheus, waitForTargetsUp, type RunningPrometheus } from './helpers/prometheus.js';
import { OUTCOMES, Telemetry } from '../src/telemetry/metrics.js';
import { runPromtool } from './helpers/promtool.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const DASHBOARD_FILE = join(root, 'dashboards/cutover.json');
const ALERTS_FILE = join(root, 'dashboards/alerts.yaml');
const RECORDING_FILE = join(root, 'dashboards/recording-rules.yaml');
const RULE_TESTS_DIR = join(root, 'dashboards/tests');
const METRICS_DOC = join(root, 'docs/metrics.md');

// ---------------------------------------------------------------- contract

/** docs/contracts.md, "Metrics": the names dashboards and alerts may rely on today. */
const CONTRACT_METRICS = new Set([
  'cutover_requests_total',
  'cutover_comparisons_total',
  'cutover_mismatch_fields_total',
  'cutover_shadow_skipped_total',
  'cutover_traffic_weight',
  'cutover_rejected_requests_total',
  'cutover_status_pairs_total',
  // Which bound an overload skip hit (an addition: the isolation work's).
  'cutover_shadow_overload_total',
  // The controller's (src/cutover/controller.ts).
  'cutover_stage',
  'cutover_state',
  'cutover_gate_status',
  'cutover_rollbacks_total',
  'cutover_config_reloads_total',
  'cutover_config_info',
  'cutover_state_store_up',
  // The credential inventory's (src/credentials/inventory.ts).
  'cutover_legacy_credentials_active',
  // Refused admin requests (an addition: the admin review's).
  'cutover_admin_refused_total',
  // Requests sent again after a stale kept-alive connection (an addition: forward/retry.ts).
  'cutover_upstream_retries_total',
]);
/** Proxy-wide metrics without a route label: dashboards filter them by $job instead of $route. */
const ROUTELESS_METRICS = new Set(['cutover_legacy_credentials_active', 'cutover_admin_refused_total', 'cutover_upstream_retries_total']);
const CONTRACT_HISTOGRAMS = ['cutover_request_duration_seconds', 'cutover_upstream_queue_seconds'];
/** prom-client default metrics and Prometheus' own `up`. */
const PROCESS_METRICS = new Set([
  'nodejs_eventloop_lag_seconds',
  'nodejs_eventloop_lag_p99_seconds',
  'process_resident_memory_bytes',
  'nodejs_heap_size_used_bytes',
  'process_cpu_seconds_total',
  'up',
]);
const VALID_UNITS = new Set(['reqps', 'ops', 'percentunit', 'percent', 's', 'ms', 'bytes', 'short', 'none']);
const PANEL_TYPES = new Set(['timeseries', 'stat', 'table', 'gauge', 'bargauge', 'text']);
const ROWS = ['Cutover', 'Cutover controller', 'Traffic', 'Correctness', 'Latency', 'Shadow health', 'Credentials', 'Process'];
const ALERTS = ['CutoverMismatchRateHigh', 'CutoverNewBackendErrorRateAboveLegacy', 'CutoverShadowOverload', 'CutoverShadowBackendDown', 'CutoverBackendRefusesToken', 'CutoverProxyDown', 'CutoverRolledBack'];
const RECORDS = [
  'route:cutover_mismatch_ratio:rate5m',
  'route_backend_role:cutover_error_ratio:rate5m',
  'route_backend:cutover_request_duration_seconds:p99_rate5m',
  'route:cutover_latency_p99_ratio:rate5m',
];

// ------------------------------------------------------------------- files

interface GridPos { h: number; w: number; x: number; y: number }
interface Target { refId: string; expr: string; instant?: boolean; format?: string; datasource?: unknown }
interface Panel {
  id: number;
  type: string;
  title: string;
  description?: string;
  datasource?: { type?: string; uid?: string };
  gridPos: GridPos;
  targets?: Target[];
  fieldConfig?: { defaults?: { unit?: string } };
  collapsed?: boolean;
  panels?: Panel[];
}
interface TemplateVar {
  name: string;
  type: string;
  query: unknown;
  datasource?: { type?: string; uid?: string };
  multi?: boolean;
  includeAll?: boolean;
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  refresh: string;
  time: { from: string; to: string };
  templating: { list: TemplateVar[] };
  annotations?: { list: Array<{ name: string; expr?: string; datasource?: { type?: string; uid?: string } }> };
  panels: Panel[];
}
interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile { groups: Array<{ name: string; rules: Rule[] }> }
interface RuleTestFile {
  rule_files: string[];
  tests: Array<{
    name: string;
    alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }>;
    promql_expr_test?: Array<{ expr: string; exp_samples?: unknown[] }>;
  }>;
}

const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Dashboard;
const alertRules = (parseYaml(readFileSync(ALERTS_FILE, 'utf8')) as RuleFile).groups.flatMap((g) => g.rules);
const recordingRules = (parseYaml(readFileSync(RECORDING_FILE, 'utf8')) as RuleFile).groups.flatMap((g) => g.rules);
const ruleTestFiles = readdirSync(RULE_TESTS_DIR)
  .filter((f) => f.endsWith('.test.yaml'))
  .map((f) => join(RULE_TESTS_DIR, f));
const ruleTests = ruleTestFiles.flatMap((f) => (parseYaml(readFileSync(f, 'utf8')) as RuleTestFile).tests);

/** Panels in layout order, rows' children included (collapsed rows keep theirs inside). */
const allPanels: Panel[] = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
const queryPanels = allPanels.filter((p) => p.type !== 'row');

/** Which row each panel sits under: the last row above it. */
function rowOf(panel: Panel): string | undefined {
  const rows = dashboard.panels.filter((p) => p.type === 'row' && p.gridPos.y < panel.gridPos.y);
  rows.sort((a, b) => b.gridPos.y - a.gridPos.y);
  const nested = dashboard.panels.find((r) => r.panels?.includes(panel));
  return (nested ?? rows[0])?.title;
}

interface NamedExpr { where: string; expr: string }
const panelExprs: NamedExpr[] = queryPanels.flatMap((p) =>
  (p.targets ?? []).map((t) => ({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr })),
);
const annotationExprs: NamedExpr[] = (dashboard.annotations?.list ?? [])
  .filter((a) => a.datasource?.type === 'prometheus' && a.expr)
  .map((a) => ({ where: `annotation "${a.name}"`, expr: a.expr as string }));
const dashboardExprs = [...panelExprs, ...annotationExprs];
const metricsDoc = readFileSync(METRICS_DOC, 'utf8');
/** ```promql blocks of docs/metrics.md, one query per `#` comment line. */
const docExprs: NamedExpr[] = [...metricsDoc.matchAll(/```promql\n([\s\S]*?)```/g)].flatMap((block, b) => {
  const queries: string[][] = [[]];
  for (const line of block[1].split('\n')) {
    if (/^\s*#/.test(line) || !line.trim()) queries.push([]);
    else queries[queries.length - 1].push(line);
  }
  return queries.filter((q) => q.length).map((q, i) => ({ where: `docs/metrics.md block ${b + 1} query ${i + 1}`, expr: q.join('\n') }));
});
const ruleExprs: NamedExpr[] = [...alertRules, ...recordingRules].map((r) => ({
  where: `rule ${r.alert ?? r.record}`,
  expr: r.expr,
}));

/** Grafana variables as a query would see them with every route selected. */
function renderForPrometheus(expr: string): string {
  return renderGrafanaExpr(expr, { rateInterval: '1m', range: '1h' });
}

// ----------------------------------------------------- metric-name scanning

const PROMQL_KEYWORDS = new Set([
  'and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'inf', 'nan', 'atan2',
]);

/**
 * Metric names a PromQL expression selects. Strings, label matchers, ranges and
 * grouping label lists are blanked first; what is left that is an identifier
 * and not a function call or keyword is a metric name.
 */
function metricNamesIn(expr: string): string[] {
  const s = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, '{}')
    .replace(/\[[^\]]*\]/g, '[]')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const m of s.matchAll(/(?<![\w:.$])([a-zA-Z_:][\w:]*)(\s*\()?/g)) {
    const [, id, call] = m;
    if (call || PROMQL_KEYWORDS.has(id.toLowerCase())) continue;
    names.add(id);
  }
  return [...names].sort();
}

const allowedMetricNames = new Set<string>([
  ...CONTRACT_METRICS,
  ...CONTRACT_HISTOGRAMS.flatMap((h) => [`${h}_bucket`, `${h}_count`, `${h}_sum`]),
  ...PROCESS_METRICS,
  ...recordingRules.map((r) => r.record as string),
]);

// ===================================================================== tests

describe.skipIf(SKIP_PROMETHEUS)('rule files', () => {
  it('pass `promtool check rules`', async () => {
    const res = await runPromtool(['check', 'rules', RECORDING_FILE, ALERTS_FILE]);
    expect(res.stderr + res.stdout, 'promtool check rules').not.toMatch(/FAILED|error/i);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(`SUCCESS: ${recordingRules.length} rules found`);
    expect(res.stdout).toContain(`SUCCESS: ${alertRules.length} rules found`);
  });

  it('pass their `promtool test rules` unit tests', async () => {
    expect(ruleTestFiles.length).toBeGreaterThanOrEqual(2);
    const res = await runPromtool(['test', 'rules', ...ruleTestFiles]);
    expect(res.code, res.stdout + res.stderr).toBe(0);
  });

  it('define the seven alerts, each with for, severity, summary, description and a runbook saying what to do', () => {
    expect(alertRules.map((r) => r.alert).sort()).toEqual([...ALERTS].sort());
    for (const rule of alertRules) {
      const name = rule.alert as string;
      expect(rule.for, `${name}.for`).toMatch(/^\d+[smh]$/);
      expect(['critical', 'warning'], `${name}.labels.severity`).toContain(rule.labels?.severity);
      for (const key of ['summary', 'description', 'runbook']) {
        expect(rule.annotations?.[key], `${name}.annotations.${key}`).toMatch(/\S{10,}/);
      }
      // A runbook names an action: a cutover command or an admin API call.
      expect(rule.annotations?.runbook, `${name} runbook`).toMatch(/`cutover [a-z]+|GET \/api\/|POST \/api\/|curl /);
    }
  });

  it('gate alerts that page on live traffic on the new backend, and select proxies by a job containing "cutover"', () => {
    const byName = new Map(alertRules.map((r) => [r.alert, r]));
    expect(byName.get('CutoverMismatchRateHigh')?.expr).toMatch(/cutover_traffic_weight\)?\s*>\s*0/);
    expect(byName.get('CutoverNewBackendErrorRateAboveLegacy')?.expr).toMatch(/backend="new",role="primary"/);
    expect(byName.get('CutoverShadowOverload')?.expr).toMatch(/reason="overload"/);
    expect(byName.get('CutoverShadowBackendDown')?.expr).toMatch(/reason="shadow_down"/);
    // A 401 to the proxy's own token is a 4xx outcome, which no error-rate alert counts.
    expect(byName.get('CutoverBackendRefusesToken')?.expr).toMatch(/cutover_upstream_retries_total\{reason="unauthorized"\}/);
    const down = byName.get('CutoverProxyDown')?.expr ?? '';
    expect(down).toContain('up{job=~".*cutover.*"} == 0');
    expect(down).toContain('absent(up{job=~".*cutover.*"})');
    // A person's own `cutover rollback` is not news to them; only the controller's rollbacks alert.
    expect(byName.get('CutoverRolledBack')?.expr).toMatch(/increase\(cutover_rollbacks_total\{reason!="manual"\}\[10m\]\)/);
  });

  it('record the fleet gate series under level:metric:operations names', () => {
    const names = recordingRules.map((r) => r.record as string);
    for (const name of RECORDS) expect(names).toContain(name);
    for (const name of names) expect(name).toMatch(/^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$/);
  });

  it('have, for every alert, a promtool case that fires it and one that stays silent', () => {
    const cases = ruleTests.flatMap((t) => t.alert_rule_test ?? []);
    for (const name of alertRules.map((r) => r.alert as string)) {
      const mine = cases.filter((c) => c.alertname === name);
      expect(mine.some((c) => (c.exp_alerts ?? []).length > 0), `${name}: a case where it fires`).toBe(true);
      expect(mine.some((c) => (c.exp_alerts ?? []).length === 0), `${name}: a case where it stays silent`).toBe(true);
    }
  });

  it('have, for every recording rule, a promtool case that checks its values', () => {
    const cases = ruleTests.flatMap((t) => t.promql_expr_test ?? []);
    for (const name of recordingRules.map((r) => r.record as string)) {
      expect(
        cases.some((c) => c.expr.includes(name) && (c.exp_samples ?? []).length > 0),
        `${name}: a promql_expr_test with samples`,
      ).toBe(true);
    }
  });
});

describe('dashboard JSON (Grafana file provisioning)', () => {
  it('has a stable uid, title, schemaVersion, 30s refresh and the last hour', () => {
    expect(dashboard.uid).toBe('cutover');
    expect(dashboard.title).toMatch(/\S/);
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.refresh).toBe('30s');
    expect(dashboard.time).toEqual({ from: 'now-1h', to: 'now' });
    expect(new Set(allPanels.map((p) => p.id)).size, 'panel ids are unique').toBe(allPanels.length);
  });

  it('has a Prometheus datasource variable and a multi-select route variable with All', () => {
    const vars = new Map(dashboard.templating.list.map((v) => [v.name, v]));
    const ds = vars.get('datasource');
    expect(ds?.type).toBe('datasource');
    expect(ds?.query).toBe('prometheus');
    const route = vars.get('route');
    expect(route?.type).toBe('query');
    expect(route?.datasource).toEqual({ type: 'prometheus', uid: '${datasource}' });
    const q = typeof route?.query === 'string' ? route.query : (route?.query as { query?: string } | undefined)?.query;
    expect(q).toBe('label_values(cutover_requests_total, route)');
    expect(route?.multi).toBe(true);
    expect(route?.includeAll).toBe(true);
    // Every variable a query uses is defined (renderForPrometheus knows the same set).
    const used = new Set(dashboardExprs.flatMap((e) => [...e.expr.matchAll(/\$\{?(\w+)/g)].map((m) => m[1])));
    for (const name of used) {
      if (name.startsWith('__')) continue;
      expect(vars.has(name), `variable $${name} is defined`).toBe(true);
    }
  });

  it('has the eight rows in order', () => {
    const rows = dashboard.panels.filter((p) => p.type === 'row');
    expect(rows.map((r) => r.title)).toEqual(ROWS);
  });

  it('gives every panel a type, title, description, the datasource variable, a gridPos and a valid unit', () => {
    for (const p of queryPanels) {
      const where = `panel ${p.id} "${p.title}"`;
      expect(PANEL_TYPES, `${where} type`).toContain(p.type);
      expect(p.title, `${where} title`).toMatch(/\S/);
      expect(p.description ?? '', `${where} description tells what to look for`).toMatch(/\S{3,}.{40,}/);
      expect(p.datasource, `${where} datasource`).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(VALID_UNITS, `${where} unit ${p.fieldConfig?.defaults?.unit}`).toContain(p.fieldConfig?.defaults?.unit);
      const targets = p.targets ?? [];
      expect(targets.length, `${where} targets`).toBeGreaterThan(0);
      for (const t of targets) {
        expect(t.refId, `${where} refId`).toMatch(/^[A-Z]$/);
        expect(t.expr, `${where} ${t.refId} expr`).toMatch(/\S/);
      }
      expect(new Set(targets.map((t) => t.refId)).size, `${where} refIds unique`).toBe(targets.length);
    }
  });

  it('lays panels out on the 24-column grid without overlaps', () => {
    const boxes = allPanels.map((p) => ({ p, g: p.gridPos }));
    for (const { p, g } of boxes) {
      for (const k of ['h', 'w', 'x', 'y'] as const) expect(Number.isInteger(g?.[k]), `${p.title} gridPos.${k}`).toBe(true);
      expect(g.w, `${p.title} width`).toBeGreaterThan(0);
      expect(g.w, `${p.title} width`).toBeLessThanOrEqual(24);
      expect(g.h, `${p.title} height`).toBeGreaterThan(0);
      expect(g.x, `${p.title} x`).toBeGreaterThanOrEqual(0);
      expect(g.x + g.w, `${p.title} right edge`).toBeLessThanOrEqual(24);
      if (p.type === 'row') expect(g.w, `${p.title} row width`).toBe(24);
    }
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i].g;
        const b = boxes[j].g;
        const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
        expect(overlap, `"${boxes[i].p.title}" overlaps "${boxes[j].p.title}"`).toBe(false);
      }
    }
  });

  it('shows what each row is for', () => {
    const inRow = (row: string) =>
      queryPanels.filter((p) => rowOf(p) === row).flatMap((p) => (p.targets ?? []).map((t) => t.expr)).join('\n');
    const required: Array<[string, string, RegExp]> = [
      ['Cutover', 'live weight per route', /max by \(route\) \(cutover_traffic_weight\{/],
      ['Traffic', 'req/s by backend and role', /sum by \(backend, role\) \(rate\(cutover_requests_total\{/],
      ['Traffic', 'requests sent again by reason', /sum by \(backend, role, reason\) \(rate\(cutover_upstream_retries_total\{job=~"\$job"\}/],
      ['Correctness', 'mismatch ratio by route', /sum by \(route\) \(rate\(cutover_comparisons_total\{[^}]*result="mismatch"[^}]*\}[^\n]*\)\) \/ \(?sum by \(route\) \(rate\(cutover_comparisons_total\{/],
      ['Correctness', 'comparisons by result', /sum by \(result\) \(rate\(cutover_comparisons_total\{/],
      ['Correctness', 'top mismatching fields', /topk\(\d+, sum by \([^)]*\bfield\b[^)]*\) \(increase\(cutover_mismatch_fields_total\{/],
      ['Latency', 'p50 by backend', /histogram_quantile\(0\.5, sum by \(le, backend\) /],
      ['Latency', 'p99 by backend', /histogram_quantile\(0\.99, sum by \(le, backend\) /],
      ['Latency', 'p99 ratio new/legacy', /histogram_quantile\(0\.99, [^\n]*backend="new"[^\n]* \/ histogram_quantile\(0\.99, [^\n]*backend="legacy"/],
      ['Cutover controller', 'state per route', /max by \(route, state\) \(cutover_state\{[^}]*\}\) == 1/],
      ['Cutover controller', 'stage per route', /max by \(route\) \(cutover_stage\{/],
      ['Cutover controller', 'weight per route', /max by \(route\) \(cutover_traffic_weight\{/],
      ['Cutover controller', 'gate verdicts', /by \(route, gate\) \(cutover_gate_status\{/],
      ['Cutover controller', 'rollbacks in the range', /sum by \(route, reason\) \(increase\(cutover_rollbacks_total\{[^}]*\}\[\$__range\]\)\)/],
      ['Credentials', 'legacy credentials by window', /max by \(window\) \(cutover_legacy_credentials_active\{/],
      ['Credentials', 'refused requests by reason', /sum by \(reason\) \(rate\(cutover_rejected_requests_total\{/],
      ['Shadow health', 'skipped by reason', /sum by \(reason\) \(rate\(cutover_shadow_skipped_total\{/],
      ['Shadow health', 'shadow errors', /cutover_requests_total\{[^}]*role="shadow",outcome=~"5xx\|timeout\|error"/],
      ['Process', 'event-loop lag', /nodejs_eventloop_lag_p99_seconds\{/],
      ['Process', 'RSS', /process_resident_memory_bytes\{/],
      ['Process', 'heap used', /nodejs_heap_size_used_bytes\{/],
    ];
    for (const [row, what, re] of required) expect(inRow(row), `${row} row: ${what}`).toMatch(re);

    const table = queryPanels.find((p) => p.targets?.some((t) => t.expr.includes('cutover_mismatch_fields_total')));
    expect(table?.type).toBe('table');
    expect(table?.targets?.[0]).toMatchObject({ instant: true, format: 'table' });

    // The gate grid reads as words, not numbers: 1 pass, 0 fail, -1 no data.
    const grid = queryPanels.find((p) => p.targets?.some((t) => t.expr.includes('cutover_gate_status')));
    expect(grid?.type).toBe('table');
    expect(grid?.targets?.[0]).toMatchObject({ instant: true, format: 'table' });
    const mappings = (grid?.fieldConfig?.defaults as { mappings?: Array<{ type: string; options: Record<string, { text: string }> }> } | undefined)?.mappings ?? [];
    const texts = Object.fromEntries(mappings.filter((m) => m.type === 'value').flatMap((m) => Object.entries(m.options).map(([v, o]) => [v, o.text])));
    expect(texts).toEqual({ '1': 'pass', '0': 'fail', '-1': 'no data' });
  });

  it('aggregates every rate with sum by, computes quantiles from summed buckets and filters cutover metrics by $route', () => {
    for (const { where, expr } of panelExprs) {
      const rates = expr.match(/\b(?:rate|irate|increase)\(/g)?.length ?? 0;
      const summed = expr.match(/\bsum(?: by \([^)]*\))? \((?:rate|irate|increase)\(/g)?.length ?? 0;
      expect(summed, `${where}: every rate()/increase() directly inside sum by (...)`).toBe(rates);
      for (const w of expr.match(/\[[^\]]*\]/g) ?? []) {
        expect(['[$__rate_interval]', '[$__range]'], `${where}: range ${w}`).toContain(w);
      }
      const quantiles = expr.match(/histogram_quantile\(/g)?.length ?? 0;
      const wellFormed = expr.match(/histogram_quantile\(0?\.\d+, sum by \(le(?:, \w+)*\) \(rate\(\w+_bucket\{/g)?.length ?? 0;
      expect(wellFormed, `${where}: histogram_quantile(q, sum by (le, ...) (rate(..._bucket...)))`).toBe(quantiles);
      for (const sel of expr.match(/\bcutover_\w+(?:\{[^}]*\})?/g) ?? []) {
        if (ROUTELESS_METRICS.has(sel.replace(/\{.*$/, ''))) expect(sel, `${where}: ${sel} filtered by job`).toContain('job=~"$job"');
        else expect(sel, `${where}: ${sel} filtered by route`).toContain('route=~"$route"');
      }
    }
  });
});

describe('metric names', () => {
  it('the scanner finds metric names and nothing else', () => {
    expect(
      metricNamesIn(
        'sum by (route) (rate(cutover_request_total{route=~"$route",x="a{b}"}[$__rate_interval])) ' +
          '/ on (route) group_left (kind) foo:bar:rate5m > bool 1e3 and absent(up offset 5m) or vector(0)',
      ),
    ).toEqual(['cutover_request_total', 'foo:bar:rate5m', 'up']);
    expect(metricNamesIn('histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))')).toEqual(['x_bucket']);
  });

  it('every dashboard query and rule uses only contract, process or recorded metric names', () => {
    const route = dashboard.templating.list.find((v) => v.name === 'route');
    const variableQuery = JSON.stringify(route?.query ?? '');
    const variableMetric = /label_values\(\s*([a-zA-Z_:][\w:]*)/.exec(variableQuery)?.[1];
    const used: NamedExpr[] = [...dashboardExprs, ...ruleExprs, ...docExprs, { where: 'variable route', expr: variableMetric ?? 'missing_metric' }];
    const unknown = used.flatMap(({ where, expr }) =>
      metricNamesIn(expr)
        .filter((n) => !allowedMetricNames.has(n))
        .map((n) => `${where}: ${n}`),
    );
    expect(unknown).toEqual([]);
    // Names that arrive with later features must not be stubbed in yet.
    const all = used.map((u) => u.expr).join('\n');
    expect(all).not.toMatch(/cutover_(credential_requests|token_fetches)/);
  });
});

describe('docs/metrics.md', () => {
  it('documents every contract metric, recording rule and alert (with its runbook)', () => {
    for (const name of [...CONTRACT_METRICS, ...CONTRACT_HISTOGRAMS]) expect(metricsDoc, name).toContain(`### \`${name}\``);
    for (const name of PROCESS_METRICS) expect(metricsDoc, name).toContain(`\`${name}\``);
    for (const r of recordingRules) expect(metricsDoc, r.record).toContain(`\`${r.record}\``);
    for (const r of alertRules) expect(metricsDoc, `${r.alert} runbook`).toContain(`**${r.alert}**`);
    // The dashboard's controller and credential panels are described where the dashboard is.
    expect(metricsDoc).toMatch(/Cutover controller[\s\S]*cutover_gate_status/);
    expect(docExprs.length).toBeGreaterThanOrEqual(10);
  });
});

// ------------------------------------------------ against a real Prometheus

/**
 * Serves /metrics from the proxy's own telemetry module (src/telemetry), fed
 * with a little traffic of every kind on each scrape so every rate is non-zero:
 * the dashboard and rules are checked against the names and labels the proxy
 * really exports, not against a copy of the contract.
 */
async function startTelemetryExporter(): Promise<{ target: string; close(): Promise<void> }> {
  const telemetry = new Telemetry();
  const routes = ['get-widget', 'list-widgets'].map((name) => telemetry.route(name));
  const other = telemetry.route('other');
  const steps = [0, 1, 5, 25, 50, 100];
  let scrapes = 0;
  const simulate = () => {
    scrapes++;
    for (const route of routes) {
      route.setWeight(steps[scrapes % steps.length]);
      for (const backend of ['legacy', 'new'] as const) {
        for (const role of ['primary', 'shadow'] as const) {
          for (const outcome of OUTCOMES) {
            const slow = backend === 'new' ? 0.6 : 0.3;
            for (let i = 0; i < (outcome === '2xx' ? 20 : 1); i++) route.request(backend, role, outcome, i % 10 === 0 ? slow : 0.02 + i / 1000);
          }
        }
      }
      for (const result of ['match', 'mismatch', 'noise', 'error'] as const) {
        for (let i = 0; i < (result === 'match' ? 10 : 1); i++) route.comparison(result);
      }
      route.mismatchField('$.price', 'type');
      route.mismatchField('$.items', 'order');
      route.statusPair(200, 404);
      route.rejected('saturated');
      for (const reason of ['sampled_out', 'unsafe_method', 'body_too_large', 'overload', 'bypass'] as const) route.shadowSkipped(reason);
    }
    other.request('legacy', 'primary', '2xx', 0.01);
    // The controller's and the credential inventory's gauges, and a rollback now and then.
    for (const [i, name] of ['get-widget', 'list-widgets'].entries()) {
      telemetry.cutover.stage(name, scrapes % 4);
      telemetry.cutover.state(name, i === 0 ? 'shifting' : 'rolled_back');
      telemetry.cutover.gate(name, 'minComparisons', 'pass');
      telemetry.cutover.gate(name, 'maxMismatchRate', i === 0 ? 'pass' : 'fail');
      telemetry.cutover.gate(name, 'maxLatencyRatio', 'no_data');
    }
    if (scrapes % 3 === 0) telemetry.cutover.rollback('list-widgets', 'maxMismatchRate');
    telemetry.credentials.setActive('1h', 3);
    telemetry.credentials.setActive('24h', 5);
  };

  const server: Server = createServer((req, res) => {
    if (req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    simulate();
    telemetry.exposition().then(
      (body) => res.writeHead(200, { 'content-type': telemetry.contentType }).end(body),
      (err: Error) => res.writeHead(500).end(err.message),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    target: `127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((r) => {
        telemetry.registry.clear();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe.skipIf(SKIP_PROMETHEUS)('against a real Prometheus scraping the proxy telemetry module', () => {
  let prom: RunningPrometheus | undefined;
  let exporter: Awaited<ReturnType<typeof startTelemetryExporter>> | undefined;

  beforeAll(async () => {
    exporter = await startTelemetryExporter();
    prom = await startPrometheus({
      scrapeTargets: [exporter.target],
      scrapeInterval: '1s',
      ruleFiles: [RECORDING_FILE, ALERTS_FILE],
    });
  });

  it('scrapes the telemetry exporter under the cutover job', async () => {
    const urls = await waitForTargetsUp(prom!.url, { count: 1 });
    expect(urls).toEqual([`http://${exporter!.target}/metrics`]);
  });

  afterAll(async () => {
    await prom?.stop();
    await exporter?.close();
  });

  it('evaluates every dashboard query without error (variables substituted)', async () => {
    const failures: string[] = [];
    for (const { where, expr } of dashboardExprs) {
      const rendered = renderForPrometheus(expr);
      expect(rendered, `${where}: unknown variable`).not.toContain('$');
      const res = await queryInstant(prom!.url, rendered);
      if (res.status !== 'success') failures.push(`${where}: ${res.error}`);
    }
    expect(failures).toEqual([]);
  });

  it('gets a finite value from every dashboard query once traffic is scraped', async () => {
    let empty: string[] = [];
    const deadline = Date.now() + 25_000;
    do {
      empty = [];
      for (const { where, expr } of dashboardExprs) {
        const res = await queryInstant(prom!.url, renderForPrometheus(expr));
        const values = (res.data?.result ?? []).map((r) => Number(r.value?.[1]));
        if (values.length === 0 || !values.every(Number.isFinite)) empty.push(`${where}: ${JSON.stringify(values)}`);
      }
      if (empty.length === 0) break;
      await new Promise((r) => setTimeout(r, 500));
    } while (Date.now() < deadline);
    expect(empty).toEqual([]);
  });

  it('evaluates every PromQL example in docs/metrics.md without error', async () => {
    const failures: string[] = [];
    for (const { where, expr } of docExprs) {
      const res = await queryInstant(prom!.url, expr);
      if (res.status !== 'success') failures.push(`${where}: ${res.error}`);
    }
    expect(failures).toEqual([]);
  });

  it('lists the routes for the route variable', async () => {
    const routes = await pollUntil('route label values', async () => {
      const res = await fetch(`${prom!.url}/api/v1/label/route/values?${new URLSearchParams({ 'match[]': 'cutover_requests_total' })}`);
      const body = (await res.json()) as { data: string[] };
      return body.data.length >= 3 ? body.data : undefined;
    });
    expect(routes).toEqual(['get-widget', 'list-widgets', 'other']);
  });

  it('records a finite value for every recording rule', async () => {
    for (const name of recordingRules.map((r) => r.record as string)) {
      const values = await pollUntil(`recorded series ${name}`, async () => {
        const res = await queryInstant(prom!.url, name);
        const v = (res.data?.result ?? []).map((r) => Number(r.value?.[1]));
        return v.length > 0 && v.every(Number.isFinite) ? v : undefined;
      }, { timeoutMs: 25_000 });
      expect(values.length, name).toBeGreaterThan(0);
    }
  });

  it('loads every rule and evaluates it without error', async () => {
    interface ApiRule { name: string; health: string; lastError?: string }
    const rules = await pollUntil('every rule evaluated', async () => {
      const res = await fetch(`${prom!.url}/api/v1/rules`);
      const body = (await res.json()) as { data: { groups: Array<{ rules: ApiRule[] }> } };
      const list = body.data.groups.flatMap((g) => g.rules);
      return list.length > 0 && list.every((r) => r.health !== 'unknown') ? list : undefined;
    });
    expect(rules.length).toBe(alertRules.length + recordingRules.length);
    expect(rules.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.lastError}`)).toEqual([]);
  });
});
