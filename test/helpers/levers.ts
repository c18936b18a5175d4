/**
 * A real admin server for lever and CLI tests: fastify on 127.0.0.1:0 with the lever routes over a
 * controller on a MemoryStore, behind a small stand-in for the named-token guard (issue 10) that
 * reads each route's declared role and puts the caller's name on the request.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { registerLeverRoutes } from '../../src/admin/levers.js';
import type { BreakerView } from '../../src/shadow/breaker.js';
import { setCaller } from '../../src/admin/auth.js';
import { AuditLog } from '../../src/cutover/audit.js';
import { Controller, type ControllerRoute, type Step } from '../../src/cutover/controller.js';
import { MemoryStore } from '../../src/cutover/store.js';
import type { GateThresholds } from '../../src/cutover/types.js';
import { Telemetry } from '../../src/telemetry/metrics.js';
import { TestEvidence } from './evidence.js';

export const TOKENS: Record<string, { name: string; role: 'viewer' | 'operator' }> = {
  'operator-secret': { name: 'alice', role: 'operator' },
  'viewer-secret': { name: 'victor', role: 'viewer' },
};

export const TEST_GATES: GateThresholds = { minComparisons: 50, maxMismatchRate: 0.05, maxErrorRateIncrease: 0.02, maxLatencyRatio: 1.5 };

export interface LeverServer {
  url: string;
  /** What GET /api/state shows of the shadow breakers (set by a test; no proxy behind this server). */
  breakers: { legacy: BreakerView; new: BreakerView };
  app: FastifyInstance;
  controller: Controller;
  store: MemoryStore;
  traffic: TestEvidence;
  audit: AuditLog;
  clock: { t: number };
  close(): Promise<void>;
}

export async function startLeverServer(opts: { routes?: Partial<ControllerRoute>[]; steps?: Step[] } = {}): Promise<LeverServer> {
  const clock = { t: Date.UTC(2026, 0, 1) };
  const now = () => clock.t;
  const store = new MemoryStore();
  const traffic = new TestEvidence(now);
  const audit = new AuditLog(join(mkdtempSync(join(tmpdir(), 'cutover-levers-')), 'audit.jsonl'));
  const routes = (opts.routes ?? [{ name: 'get-widget' }, { name: 'list-widgets' }]).map((r) => ({ name: 'r', weight: 0, after: [], gates: TEST_GATES, ...r }));
  const controller = new Controller({ steps: opts.steps ?? [0, 1, 5, 25, 50, 100], intervalMs: 30_000, holdIntervals: 1, failureThreshold: 3, mode: 'auto' }, routes, {
    store,
    evidence: traffic,
    audit,
    now,
    metrics: new Telemetry({ defaultMetrics: false }).cutover,
  });
  await controller.init();
  const app = Fastify({ logger: false, forceCloseConnections: true });
  app.addHook('onRequest', async (request, reply) => {
    const role = (request.routeOptions.config as { role?: string }).role;
    if (role === undefined) return;
    const token = request.headers.authorization?.replace(/^Bearer\s+/i, '');
    const caller = token === undefined ? undefined : TOKENS[token];
    if (caller === undefined) return reply.code(401).type('application/problem+json').send({ status: 401, code: 'UNAUTHORIZED', detail: 'Send the admin token.' });
    if (role === 'operator' && caller.role !== 'operator') return reply.code(403).type('application/problem+json').send({ status: 403, code: 'FORBIDDEN', detail: 'This needs an operator token.' });
    setCaller(request, caller);
  });
  const breakers: LeverServer['breakers'] = { legacy: { open: false, stalls: 0 }, new: { open: false, stalls: 0 } };
  registerLeverRoutes(app, { controller, audit, configHash: () => 'cafe1234', shadowBackends: () => breakers });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}`, app, controller, store, traffic, audit, clock, breakers, close: () => app.close() };
}
