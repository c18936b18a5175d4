/**
 * The controller's admin routes: state, levers, audit log and readiness report. Registered on the
 * admin fastify instance by `registerLeverRoutes`; the auth guard decides on each route's declared
 * `config.role` (viewer reads, operator pulls levers). Errors are problem+json.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { problem } from '../problem.js';
import type { AuditLog } from '../cutover/audit.js';
import { LeverError, type Controller } from '../cutover/controller.js';
import { CutoverError } from '../errors.js';
import { buildReport, renderMarkdown, type ReportFieldInput, type ReportStraggler } from '../cutover/report.js';
import { callerOf } from './auth.js';
import { sendProblem } from './server.js';
import type { BreakerView } from '../shadow/breaker.js';

export interface LeverDeps {
  controller: Controller;
  audit: AuditLog;
  /** The loaded config's hash, for the report. */
  configHash: () => string;
  /** The analysis's differing fields of a route (see `fieldsFromDiffs`), for the report. */
  fields?: (route: string) => ReportFieldInput[] | undefined;
  /** Each shadow backend's circuit breaker (open: mirrors to it skipped as shadow_down), shown by GET /api/state. */
  shadowBackends?: () => { legacy: BreakerView; new: BreakerView };
  /** The credential inventory's stragglers on complete routes, for the report's revocation to-do list. */
  stragglers?: (complete: ReadonlyMap<string, number>) => ReportStraggler[];
}

/** Longest reason kept in the audit log. */
const MAX_REASON = 500;
const LEVERS = ['promote', 'pause', 'resume', 'rollback'] as const;
type Lever = (typeof LEVERS)[number];

/** Who is calling, for the audit log: the admin auth guard put the caller on the request. */
function callerName(request: FastifyRequest): string {
  return callerOf(request)?.name ?? 'unknown';
}

function badRequest(reply: FastifyReply, detail: string): FastifyReply {
  return sendProblem(reply, problem(400, 'BAD_REQUEST', 'Bad request', detail));
}

/** The body as an object ({} when absent), or a sentence saying what is wrong. */
function bodyOf(request: FastifyRequest): Record<string, unknown> | string {
  const body = request.body;
  if (body === undefined || body === null || body === '') return {};
  if (typeof body !== 'object' || Array.isArray(body)) return 'The body must be a JSON object.';
  return body as Record<string, unknown>;
}

function reasonOf(body: Record<string, unknown>): string | undefined | Error {
  const r = body.reason;
  if (r === undefined || r === null) return undefined;
  if (typeof r !== 'string') return new Error('"reason" must be a string.');
  return r.slice(0, MAX_REASON);
}

function leverFailure(reply: FastifyReply, err: unknown): FastifyReply {
  if (err instanceof LeverError) {
    const titles: Record<string, string> = { UNKNOWN_ROUTE: 'Unknown route', ALREADY_COMPLETE: 'Already complete', PAUSE_STEP: 'At a pause step', BAD_WEIGHT: 'Bad weight' };
    return sendProblem(reply, problem(err.status, err.code, titles[err.code] ?? 'Lever refused', err.message));
  }
  // The store could not take the change: say so (503, retry), not "the admin API failed".
  if (err instanceof CutoverError && err.code === 'CUTOVER_STATE_WRITE_FAILED') return sendProblem(reply, problem(503, 'STATE_WRITE_FAILED', 'State store unavailable', err.message));
  throw err;
}

export function registerLeverRoutes(app: FastifyInstance, deps: LeverDeps): void {
  const { controller } = deps;
  const viewer = { config: { role: 'viewer' as const } };
  const operator = { config: { role: 'operator' as const } };

  app.get('/api/state', viewer, async () => {
    const shadowBackends = deps.shadowBackends?.();
    return shadowBackends === undefined ? controller.view() : { ...controller.view(), shadowBackends };
  });

  for (const lever of LEVERS) {
    app.post<{ Params: { route: string } }>(`/api/routes/:route/${lever}`, operator, async (request, reply) => {
      const body = bodyOf(request);
      if (typeof body === 'string') return badRequest(reply, body);
      const reason = reasonOf(body);
      if (reason instanceof Error) return badRequest(reply, reason.message);
      if (body.full !== undefined && typeof body.full !== 'boolean') return badRequest(reply, '"full" must be true or false.');
      const opts = { who: callerName(request), reason, full: body.full === true };
      const route = request.params.route;
      try {
        const state = await pull(controller, lever, route, opts);
        return { route, state };
      } catch (err) {
        return leverFailure(reply, err);
      }
    });
  }

  app.post<{ Params: { route: string } }>('/api/routes/:route/weight', operator, async (request, reply) => {
    const body = bodyOf(request);
    if (typeof body === 'string') return badRequest(reply, body);
    const reason = reasonOf(body);
    if (reason instanceof Error) return badRequest(reply, reason.message);
    if (typeof body.weight !== 'number') return badRequest(reply, 'Send { "weight": N } with N from 0 to 100.');
    try {
      const state = await controller.setWeight(request.params.route, body.weight, { who: callerName(request), reason });
      return { route: request.params.route, state };
    } catch (err) {
      return leverFailure(reply, err);
    }
  });

  app.post('/api/bypass', operator, async (request, reply) => {
    const body = bodyOf(request);
    if (typeof body === 'string') return badRequest(reply, body);
    const reason = reasonOf(body);
    if (reason instanceof Error) return badRequest(reply, reason.message);
    if (typeof body.on !== 'boolean') return badRequest(reply, 'Send { "on": true } or { "on": false }.');
    try {
      const global = await controller.bypass(body.on, { who: callerName(request), reason });
      return { bypass: global };
    } catch (err) {
      return leverFailure(reply, err);
    }
  });

  app.get<{ Querystring: { limit?: string } }>('/api/audit', viewer, async (request, reply) => {
    const limit = request.query.limit === undefined ? 100 : Number(request.query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) return badRequest(reply, '"limit" must be a whole number from 1 to 1000.');
    return { entries: await deps.audit.read(limit) };
  });

  app.get<{ Querystring: { format?: string; route?: string } }>('/api/report', viewer, async (request, reply) => {
    const format = request.query.format ?? 'json';
    if (format !== 'json' && format !== 'markdown') return badRequest(reply, '"format" must be json or markdown.');
    const input = await controller.reportInput({ configHash: deps.configHash(), fields: deps.fields, stragglers: deps.stragglers });
    const only = request.query.route;
    if (only !== undefined) {
      // One route's report: its verdict, rollbacks and stragglers only.
      if (!input.routes.some((r) => r.route === only)) return sendProblem(reply, problem(404, 'UNKNOWN_ROUTE', 'Unknown route', `No route is named "${only}"; see GET /api/state for the routes.`));
      input.routes = input.routes.filter((r) => r.route === only);
      input.rollbacks = input.rollbacks.filter((r) => r.route === only);
      input.stragglers = input.stragglers?.filter((s) => s.routes.includes(only)).map((s) => ({ ...s, routes: [only] }));
    }
    const report = buildReport(input);
    if (format === 'markdown') return reply.type('text/markdown; charset=utf-8').send(renderMarkdown(report));
    return report;
  });
}

function pull(controller: Controller, lever: Lever, route: string, opts: { who: string; reason?: string; full: boolean }) {
  switch (lever) {
    case 'promote':
      return controller.promote(route, opts);
    case 'pause':
      return controller.pause(route, opts);
    case 'resume':
      return controller.resume(route, opts);
    case 'rollback':
      return controller.rollback(route, opts);
  }
}
