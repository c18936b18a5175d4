/**
 * `POST /api/reload`: loads the config file again. An operator's lever (`config.role`, read by the
 * admin auth guard). 200 with the new version and hash; a refused reload is problem+json naming every
 * problem, and the running config stays.
 */
import type { FastifyInstance } from 'fastify';
import { problem, PROBLEM_TYPE } from '../problem.js';
import type { ReloadOutcome } from '../reload.js';
import { callerOf } from './auth.js';

const STATUS = { CONFIG_INVALID: 422, CONFIG_NEEDS_RESTART: 409, RELOAD_UNAVAILABLE: 409 } as const;
const TITLE = { CONFIG_INVALID: 'Config invalid', CONFIG_NEEDS_RESTART: 'Config needs a restart', RELOAD_UNAVAILABLE: 'Reload unavailable' } as const;

export function registerReload(app: FastifyInstance, reload: (trigger: string) => Promise<ReloadOutcome>): void {
  app.post('/api/reload', { config: { role: 'operator' } }, async (request, reply) => {
    // The admin guard has put the authenticated caller on the request.
    const who = callerOf(request)?.name ?? 'admin';
    const outcome = await reload(`api:${who}`);
    if (outcome.ok) return { status: outcome.changed ? 'reloaded' : 'unchanged', version: outcome.version, hash: outcome.hash, routes: outcome.routes };
    return reply
      .code(STATUS[outcome.code])
      .type(PROBLEM_TYPE)
      .send(problem(STATUS[outcome.code], outcome.code, TITLE[outcome.code], outcome.detail, { problems: outcome.problems, version: outcome.version, hash: outcome.hash }));
  });
}
