/**
 * The admin listener: a second fastify instance on its own port. `/metrics`, `/healthz` and
 * `/readyz` are open (scrapers and probes carry no secrets); everything under `/api/` needs the
 * bearer token. Errors are problem+json.
 */
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { problem, PROBLEM_TYPE, type Problem } from '../problem.js';
import type { DiffsReport } from '../analysis/analysis.js';
import type { Telemetry } from '../telemetry/metrics.js';
import { bearerChecker } from './auth.js';
import { registerReload } from './reload.js';
import type { ReloadOutcome } from '../reload.js';

export interface AdminDeps {
  telemetry: Telemetry;
  token: string | undefined;
  /** Whether the proxy is ready to take traffic (config loaded, listeners up, not draining). */
  ready: () => boolean;
  /** The diffs report of a route, or undefined when no route has that name. */
  diffs: (route: string) => DiffsReport | undefined;
  /** Loads the config again (`POST /api/reload`). */
  reload?: (trigger: string) => Promise<ReloadOutcome>;
}

export function sendProblem(reply: FastifyReply, p: Problem): FastifyReply {
  return reply.code(p.status).type(PROBLEM_TYPE).send(p);
}

export function createAdminServer(deps: AdminDeps): FastifyInstance {
  const app = Fastify({ logger: false, requestIdHeader: false, forceCloseConnections: true });
  const authorized = bearerChecker(deps.token);

  app.addHook('onRequest', async (request, reply) => {
    if (!request.url.startsWith('/api/')) return;
    if (authorized(request.headers.authorization)) return;
    const detail = deps.token
      ? 'Send the admin token as "Authorization: Bearer <token>".'
      : 'The admin API has no token configured; set admin.tokenFile or admin.tokenEnv and restart.';
    reply.header('www-authenticate', 'Bearer realm="cutover"');
    return sendProblem(reply, problem(401, 'UNAUTHORIZED', 'Unauthorized', detail));
  });

  app.get('/metrics', async (_request, reply) => {
    const text = await deps.telemetry.exposition();
    return reply.type(deps.telemetry.contentType).send(text);
  });
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    if (deps.ready()) return { status: 'ready' };
    return sendProblem(reply, problem(503, 'NOT_READY', 'Not ready', 'The proxy is starting or draining; retry shortly.'));
  });

  app.get<{ Params: { route: string } }>('/api/routes/:route/diffs', async (request, reply) => {
    const report = deps.diffs(request.params.route);
    if (report === undefined) {
      return sendProblem(reply, problem(404, 'UNKNOWN_ROUTE', 'Unknown route', `No route is named "${request.params.route}"; see the routes in the config.`));
    }
    return report;
  });

  if (deps.reload) registerReload(app, deps.reload);

  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, problem(404, 'NOT_FOUND', 'Not found', `No admin endpoint answers ${request.method} ${request.url.split('?')[0]}.`)),
  );
  app.setErrorHandler((error: { statusCode?: number; message: string }, _request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    return sendProblem(reply, problem(status, status === 500 ? 'ADMIN_ERROR' : 'BAD_REQUEST', status === 500 ? 'Admin error' : 'Bad request', status === 500 ? 'The admin API failed on this request; see the proxy logs.' : error.message));
  });
  return app;
}
