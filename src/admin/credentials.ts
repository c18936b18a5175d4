/**
 * `GET /api/credentials`: the legacy credential inventory (fingerprints only), as JSON or, with
 * `?format=csv`, as CSV with a header row. Viewer role; the admin auth guard in front of `/api/`
 * decides who may call it, this file only answers.
 */
import type { FastifyInstance } from 'fastify';
import { inventoryCsv, type CredentialInventory, type CredentialRecord } from '../credentials/inventory.js';
import { problem, PROBLEM_TYPE } from '../problem.js';

export interface CredentialsRouteDeps {
  inventory: CredentialInventory;
}

/** The JSON shape of one credential: as stored, with readable timestamps. */
function view(c: CredentialRecord): Record<string, unknown> {
  return {
    ...c,
    firstSeen: new Date(c.firstSeen).toISOString(),
    lastSeen: new Date(c.lastSeen).toISOString(),
    routes: Object.fromEntries(Object.entries(c.routes).map(([route, at]) => [route, new Date(at).toISOString()])),
  };
}

export function registerCredentialRoutes(app: FastifyInstance, deps: CredentialsRouteDeps): void {
  app.get<{ Querystring: { format?: string } }>('/api/credentials', async (request, reply) => {
    const format = request.query.format ?? 'json';
    const doc = deps.inventory.list();
    reply.header('cache-control', 'no-store');
    if (format === 'csv') {
      return reply.type('text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="credentials.csv"').send(inventoryCsv(doc));
    }
    if (format !== 'json') {
      return reply.code(400).type(PROBLEM_TYPE).send(problem(400, 'BAD_FORMAT', 'Bad request', 'Unknown format; use format=json or format=csv.'));
    }
    return {
      credentials: doc.credentials.map(view),
      rejected: { ...doc.rejected, lastSeen: doc.rejected.lastSeen === null ? null : new Date(doc.rejected.lastSeen).toISOString() },
      evicted: doc.evicted,
      evictedUnjudged: doc.evictedUnjudged,
    };
  });
}
