/**
 * The admin listener: a second fastify instance on its own port. Deny by default (see auth.ts):
 * only `OPEN_ADMIN_PATHS` answer without a token, decided on the matched route. Errors are
 * problem+json; every 500 is logged with its cause.
 *
 * Adding admin routes from another module: pass a registrar as `extraRoutes`, e.g.
 *
 *   createAdminServer(deps, [(app) => {
 *     app.post('/api/reload', { config: { role: 'operator' } }, async (request) => {
 *       const who = callerOf(request); // { name, role } for the audit log
 *       ...
 *     });
 *   }]);
 *
 * A route that pulls a lever declares `config: { role: 'operator' }`; anything else needs at least a
 * viewer token. A viewer on an operator route gets 403. Never add a path to OPEN_ADMIN_PATHS for
 * convenience: open paths are for probes and scrapers only.
 */
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import type { Duplex } from 'node:stream';
import { answerClientError, problem, PROBLEM_TYPE, type Problem } from '../problem.js';
import type { DiffsReport } from '../analysis/analysis.js';
import type { Telemetry } from '../telemetry/metrics.js';
import type { Logger } from '../telemetry/logger.js';
import { OPEN_ADMIN_PATHS, roleAllows, setCaller, tokenChecker, type AdminToken } from './auth.js';
import { registerReload } from './reload.js';
import type { ReloadOutcome } from '../reload.js';

export interface AdminDeps {
  telemetry: Telemetry;
  /** Named tokens with roles; empty means the API (all but the open paths) is locked. */
  tokens: readonly AdminToken[];
  /** Whether the proxy is ready to take traffic (config loaded, listeners up, not draining). */
  ready: () => boolean;
  /** The diffs report of a route, or undefined when no route has that name. */
  diffs: (route: string) => DiffsReport | undefined;
  /** Loads the config again (`POST /api/reload`). */
  reload?: (trigger: string) => Promise<ReloadOutcome>;
  /** Where admin failures are logged (with their cause). */
  logger?: Logger;
}

/** Registers admin routes on the admin instance; see the module comment for the convention. */
export type AdminRoutes = (app: FastifyInstance) => void;

export interface RegisteredAdminRoute {
  method: string;
  url: string;
}

const registered = new WeakMap<FastifyInstance, RegisteredAdminRoute[]>();

/** Every route registered on an admin instance (method and template), for tests and docs. */
export function adminRoutesOf(app: FastifyInstance): readonly RegisteredAdminRoute[] {
  return registered.get(app) ?? [];
}

export function sendProblem(reply: FastifyReply, p: Problem): FastifyReply {
  return reply.code(p.status).type(PROBLEM_TYPE).send(p);
}

/** Client errors fastify raises itself, named as the status does. */
const CLIENT_ERRORS: Record<number, { code: string; title: string; detail: string }> = {
  413: { code: 'BODY_TOO_LARGE', title: 'Body too large', detail: 'The admin API takes small JSON bodies only.' },
  415: { code: 'UNSUPPORTED_MEDIA_TYPE', title: 'Unsupported media type', detail: 'Send the body as application/json, or send none.' },
};

export function createAdminServer(deps: AdminDeps, extraRoutes: readonly AdminRoutes[] = []): FastifyInstance {
  const app = Fastify({
    logger: false,
    requestIdHeader: false,
    forceCloseConnections: true,
    // Framing errors (bad chunk sizes, Transfer-Encoding with Content-Length, NUL in the target) get
    // problem+json, as on the data port (fastify's own answer is plain JSON).
    clientErrorHandler: (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket),
    // A URL the router cannot decode matches no route: nothing to authorise, and nothing leaks.
    frameworkErrors: (_error, _request, reply) => void sendProblem(reply, problem(400, 'BAD_REQUEST', 'Bad request', 'The URL has a malformed percent-encoding.')),
  });
  // A lever's body is optional: `Content-Type: application/json` with no body is no body (fastify
  // refused it with 400); anything else goes to fastify's own parser (prototype poisoning refused).
  const json = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (typeof body === 'string' && body.trim() === '') done(null, undefined);
    else json(request, String(body), done);
  });
  const authenticate = tokenChecker(deps.tokens);
  const routes: RegisteredAdminRoute[] = [];
  registered.set(app, routes);
  app.addHook('onRoute', (options) => {
    for (const method of [options.method].flat()) routes.push({ method, url: options.url });
  });

  // onRequest runs after routing, so `routeOptions.url` is the matched template (undefined when
  // nothing matched): the one thing an encoded or absolute-form URL cannot disguise.
  app.addHook('onRequest', async (request, reply) => {
    const template = request.routeOptions.url;
    if (template !== undefined && OPEN_ADMIN_PATHS.has(template)) return;
    const caller = authenticate(request.headers.authorization);
    if (caller === null) {
      const detail = deps.tokens.length
        ? 'Send an admin token as "Authorization: Bearer <token>".'
        : 'The admin API has no token configured; set admin.tokens (or admin.tokenFile) and restart.';
      deps.telemetry.adminRefusedTotal.series('unauthorized').value++;
      reply.header('www-authenticate', 'Bearer realm="cutover"');
      return sendProblem(reply, problem(401, 'UNAUTHORIZED', 'Unauthorized', detail));
    }
    const need = request.routeOptions.config?.role ?? 'viewer';
    if (!roleAllows(caller.role, need)) {
      deps.telemetry.adminRefusedTotal.series('forbidden').value++;
      return sendProblem(reply, problem(403, 'FORBIDDEN', 'Forbidden', `The token "${caller.name}" has the ${caller.role} role; this endpoint needs ${need}.`));
    }
    setCaller(request, caller);
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
  for (const register of extraRoutes) register(app);

  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, problem(404, 'NOT_FOUND', 'Not found', `No admin endpoint answers ${request.method} ${request.url.split('?')[0]}.`)),
  );
  app.setErrorHandler((error: { statusCode?: number; message: string }, request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) deps.logger?.error({ err: error, method: request.method, route: request.routeOptions.url }, 'admin request failed');
    if (status === 500) return sendProblem(reply, problem(500, 'ADMIN_ERROR', 'Admin error', 'The admin API failed on this request; see the proxy logs.'));
    // The code and title say what the status says (a 415 is not a "bad request").
    const named = CLIENT_ERRORS[status];
    return sendProblem(reply, problem(status, named?.code ?? 'BAD_REQUEST', named?.title ?? 'Bad request', named?.detail ?? error.message));
  });
  return app;
}
