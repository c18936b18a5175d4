/**
 * `cutover status | promote | pause | resume | rollback | weight N | bypass on|off | reload | report`:
 * thin clients of the admin API (like `kubectl argo rollouts`). Exit 0 ok, 1 runtime failure (the
 * admin API unreachable or refusing), 2 bad usage (and a refused reload), 3 for `report` when NOT READY.
 */
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { clientSettings, type ClientSettings } from '../config/client.js';
import { isSplitPercent } from '../config/schema.js';
// Types only (erased): the admin clients load none of the proxy's modules.
import type { BreakerView } from '../shadow/breaker.js';

export const LEVER_COMMANDS = new Set(['status', 'promote', 'pause', 'resume', 'rollback', 'weight', 'bypass', 'reload', 'report']);

export const LEVER_USAGE = `  status   [--route R]            every route: state, step, weight, gates
  promote  --route R [--full]     next step (or straight to 100% with --full)
  pause    --route R              the controller leaves the route alone
  resume   --route R              the controller walks the route again
  rollback --route R              back to step 0 (weight 0), paused
  weight N --route R              set the weight by hand (pauses the controller for the route)
  bypass   on|off                 emergency: all live traffic to legacy, mirroring off
  reload                          load the running proxy's config file again (also: SIGHUP to its process)
  report   [--route R] [--json]   readiness report (of one route with --route); exit 3 when NOT READY

lever client options:
  --admin URL       admin API (default http://127.0.0.1:9090 or $CUTOVER_ADMIN_URL)
  --token-file F    file holding the admin token (without it: the token itself in $CUTOVER_ADMIN_TOKEN)
  --reason TEXT     why, for the audit log
  --json            print the API's JSON answer`;

const EXIT_OK = 0;
const EXIT_RUNTIME = 1;
const EXIT_USAGE = 2;
const EXIT_NOT_READY = 3;
const TIMEOUT_MS = 10_000;

class ClientFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

interface Out {
  out: (text: string) => void;
  err: (text: string) => void;
}

/** The JSON shapes the admin API answers with (as far as the tables read them). */
interface GateJson {
  gate: string;
  verdict: 'pass' | 'fail' | 'no_data';
  value: number | null;
  threshold: number;
  detail: string;
}
interface RouteJson {
  route: string;
  state: string;
  step: number;
  stepValue: number | 'pause';
  weight: number;
  effectiveWeight: number;
  paused: boolean;
  sinceIso: string;
  passes: number;
  failures: number;
  gates: GateJson[];
  waitingFor: string[];
  reason: string;
}
interface StateJson {
  mode: string;
  bypass: { bypass: boolean; changedBy: string; reason: string };
  routes: RouteJson[];
  /** Each shadow backend's circuit breaker (absent from a proxy older than it). */
  shadowBackends?: Record<string, BreakerView>;
}

/**
 * One admin API call. A 4xx/5xx answer becomes a one-sentence failure (exit 1); with `refused`, an
 * answer that refuses what was asked (409, 422: a bad config file) exits with that code instead.
 */
async function call(settings: ClientSettings, method: 'GET' | 'POST', path: string, body?: unknown, opts: { refused?: { exit: number; prefix: string } } = {}): Promise<{ json: unknown; text: string }> {
  const url = `${settings.admin}${path}`;
  let res;
  try {
    res = await request(url, {
      method,
      headers: {
        accept: 'application/json, application/problem+json, text/markdown',
        ...(settings.token ? { authorization: `Bearer ${settings.token}` } : {}),
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      headersTimeout: TIMEOUT_MS,
      bodyTimeout: TIMEOUT_MS,
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (err) {
    if (timedOut(err)) throw new ClientFailure(`The admin API at ${settings.admin} did not answer within ${TIMEOUT_MS / 1000} s; is the proxy overloaded or stopped?`, EXIT_RUNTIME);
    const code = String((err as NodeJS.ErrnoException).code ?? (err as Error).name);
    throw new ClientFailure(`Cannot reach the admin API at ${settings.admin} (${code}); is the proxy running, and is --admin right?`, EXIT_RUNTIME);
  }
  let text: string;
  try {
    text = await res.body.text();
  } catch (err) {
    throw new ClientFailure(`The admin API at ${settings.admin} ${timedOut(err) ? `stopped answering within ${TIMEOUT_MS / 1000} s` : 'broke off'} in the middle of its answer.`, EXIT_RUNTIME);
  }
  let json: unknown;
  if (String(res.headers['content-type'] ?? '').includes('json')) {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  if (res.statusCode >= 400) {
    const answer = json as { detail?: string; problems?: unknown[] } | undefined;
    // A refused config lists every problem, one a line, each naming its path.
    const problems = Array.isArray(answer?.problems) ? answer.problems.map((p) => `\n  ${String(p)}`).join('') : '';
    const hint = res.statusCode !== 401 ? '' : settings.token ? ' The token given was refused: check its file or variable (the proxy reads its tokens at start).' : ' Pass --token-file or set CUTOVER_ADMIN_TOKEN.';
    const refused = opts.refused !== undefined && (res.statusCode === 409 || res.statusCode === 422) ? opts.refused : undefined;
    throw new ClientFailure(`${refused?.prefix ?? ''}${answer?.detail ?? `The admin API answered ${res.statusCode}.`}${problems}${hint}`, refused?.exit ?? EXIT_RUNTIME);
  }
  return { json, text };
}

/** An abort by AbortSignal.timeout, or undici's own header or body timeout. */
function timedOut(err: unknown): boolean {
  const e = err as { name?: unknown; code?: unknown };
  return e?.name === 'TimeoutError' || e?.code === 'UND_ERR_HEADERS_TIMEOUT' || e?.code === 'UND_ERR_BODY_TIMEOUT' || e?.code === 23;
}

function pct(v: number | null): string {
  return v === null ? 'n/a' : `${(v * 100).toFixed(2)}%`;
}

function gateValue(g: GateJson, value: number | null): string {
  if (value === null) return 'n/a';
  if (g.gate === 'maxMismatchRate' || g.gate === 'maxErrorRateIncrease') return pct(value);
  if (g.gate === 'maxLatencyRatio') return value.toFixed(2);
  return String(value);
}

const MARK: Record<GateJson['verdict'], string> = { pass: 'pass', fail: 'FAIL', no_data: 'wait' };

/** A plain text table: columns padded to their widest cell. */
export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

function statusText(state: StateJson, only?: string): string {
  const routes = state.routes.filter((r) => only === undefined || r.route === only);
  const lines: string[] = [];
  lines.push(`mode ${state.mode}${state.bypass.bypass ? `   BYPASS ON (by ${state.bypass.changedBy}: ${state.bypass.reason})` : ''}`, '');
  lines.push(
    table(
      ['ROUTE', 'STATE', 'STEP', 'WEIGHT', 'GATES', 'EVIDENCE SINCE'],
      routes.map((r) => [
        r.route,
        r.state + (r.waitingFor.length ? ` (after ${r.waitingFor.join(',')})` : ''),
        `${r.step}${r.stepValue === 'pause' ? ' (pause)' : ''}`,
        `${r.weight}%${r.effectiveWeight !== r.weight ? ` (applied ${r.effectiveWeight}%)` : ''}`,
        r.gates.length ? r.gates.map((g) => MARK[g.verdict]).join(' ') : 'not checked',
        r.sinceIso,
      ]),
    ),
  );
  // A backend that mirrors cannot reach: no evidence accumulates on the routes mirrored to it.
  for (const [backend, b] of Object.entries(state.shadowBackends ?? {})) {
    if (b.open) lines.push('', `MIRRORS TO ${backend.toUpperCase()} SKIPPED since ${b.since ?? '?'}: ${b.detail ?? 'its circuit breaker is open'}`);
  }
  for (const r of routes) {
    if (!r.gates.length) continue;
    lines.push('', `${r.route}: ${r.reason}`);
    lines.push(table(['  GATE', 'VALUE', 'THRESHOLD', 'VERDICT', 'DETAIL'], r.gates.map((g) => [`  ${g.gate}`, gateValue(g, g.value), gateValue(g, g.threshold), g.verdict, g.detail])));
  }
  return lines.join('\n');
}

function routeLine(route: string, s: { state: string; weight: number; step: number }): string {
  return `${route}: ${s.state} at ${s.weight}% (step ${s.step})`;
}

/** Runs one client command; returns the exit code. Never throws. */
export async function runLeverCommand(command: string, argv: string[], io: Out = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) }): Promise<number> {
  try {
    return await run(command, argv, io);
  } catch (err) {
    if (err instanceof ClientFailure) {
      io.err(`cutover: ${err.message}\n`);
      return err.exitCode;
    }
    const e = err as NodeJS.ErrnoException;
    const parse = typeof e?.code === 'string' && e.code.startsWith('ERR_PARSE_ARGS');
    if (e?.code === 'CUTOVER_USAGE' || parse) {
      io.err(`cutover: ${e.message}${parse ? '; run "cutover --help"' : ''}\n`);
      return EXIT_USAGE;
    }
    io.err(`cutover: Unexpected failure: ${e?.message ?? String(err)}\n`);
    return EXIT_RUNTIME;
  }
}

async function run(command: string, argv: string[], io: Out): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      route: { type: 'string' },
      admin: { type: 'string' },
      'token-file': { type: 'string' },
      json: { type: 'boolean', default: false },
      full: { type: 'boolean', default: false },
      reason: { type: 'string' },
      debug: { type: 'boolean', default: false },
    },
  });
  const usage = (message: string) => new ClientFailure(`${message}; run "cutover --help".`, EXIT_USAGE);
  const settings = clientSettings({ admin: values.admin, tokenFile: values['token-file'] });
  const print = (json: unknown, text: string) => io.out(`${values.json ? JSON.stringify(json, null, 2) : text}\n`);
  const route = values.route;
  const needRoute = () => {
    if (!route) throw usage(`"${command}" needs --route NAME`);
    return encodeURIComponent(route);
  };
  const maxPositionals = command === 'weight' || command === 'bypass' ? 1 : 0;
  if (positionals.length > maxPositionals) throw usage(`Unexpected argument "${positionals[maxPositionals]}" for "${command}"`);
  const reason = values.reason === undefined ? {} : { reason: values.reason };

  switch (command) {
    case 'status': {
      const { json } = await call(settings, 'GET', '/api/state');
      const state = json as StateJson;
      if (route && !state.routes.some((r) => r.route === route)) throw new ClientFailure(`No route is named "${route}"; run "cutover status" for the list.`, EXIT_RUNTIME);
      print(route ? { ...state, routes: state.routes.filter((r) => r.route === route) } : state, statusText(state, route));
      return EXIT_OK;
    }
    case 'promote':
    case 'pause':
    case 'resume':
    case 'rollback': {
      const path = `/api/routes/${needRoute()}/${command}`;
      const { json } = await call(settings, 'POST', path, { ...reason, ...(values.full ? { full: true } : {}) });
      const s = (json as { state: { state: string; weight: number; step: number } }).state;
      print(json, routeLine(route!, s));
      return EXIT_OK;
    }
    case 'weight': {
      const raw = positionals[0];
      // A plain decimal only: Number('') is 0 and Number('0x10') 16, so `cutover weight "$PCT"` with PCT unset would set 0 %.
      const weight = raw === undefined || !/^\d+(\.\d+)?$/.test(raw) ? NaN : Number(raw);
      if (!isSplitPercent(weight)) throw usage('"weight" needs a percent from 0 to 100 in steps of 0.01, e.g. cutover weight 25 --route R');
      const { json } = await call(settings, 'POST', `/api/routes/${needRoute()}/weight`, { weight, ...reason });
      print(json, `${routeLine(route!, (json as { state: { state: string; weight: number; step: number } }).state)}; the controller is paused for it`);
      return EXIT_OK;
    }
    case 'bypass': {
      const on = positionals[0];
      if (on !== 'on' && on !== 'off') throw usage('"bypass" needs on or off');
      const { json } = await call(settings, 'POST', '/api/bypass', { on: on === 'on', ...reason });
      print(json, on === 'on' ? 'bypass ON: all live traffic goes to legacy, mirroring is off, the controller is paused' : 'bypass off: weights and mirroring are back');
      return EXIT_OK;
    }
    case 'reload': {
      // 0 reloaded (or unchanged), 2 the file was refused (every problem listed), 1 the API could not be asked.
      const { json } = await call(settings, 'POST', '/api/reload', undefined, { refused: { exit: EXIT_USAGE, prefix: 'reload refused: ' } });
      const { status, version, hash, routes } = json as { status: string; version: number; hash: string; routes: string[] };
      print(json, `cutover: config ${status}: version ${version}, hash ${hash}, ${routes.length} route${routes.length === 1 ? '' : 's'}`);
      return EXIT_OK;
    }
    case 'report': {
      // One request either way, so the verdict and what is printed are the same report.
      const only = route ? `route=${encodeURIComponent(route)}` : '';
      if (values.json) {
        const { json } = await call(settings, 'GET', `/api/report${only ? `?${only}` : ''}`);
        print(json, '');
        return (json as { ready?: boolean }).ready === true ? EXIT_OK : EXIT_NOT_READY;
      }
      const { text } = await call(settings, 'GET', `/api/report?format=markdown${only ? `&${only}` : ''}`);
      io.out(text);
      // The verdict is the first line, and only it: the rest holds text from the traffic.
      return text.split('\n', 1)[0] === '# Cutover readiness: READY' ? EXIT_OK : EXIT_NOT_READY;
    }
    default:
      throw usage(`Unknown command "${command}"`);
  }
}
