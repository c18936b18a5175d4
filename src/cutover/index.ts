/**
 * The controller, its audit log and its admin routes put together from a loaded config: what the
 * app wires in a few lines (see `createCutover`).
 */
import type { FastifyInstance } from 'fastify';
import { registerLeverRoutes, type LeverDeps } from '../admin/levers.js';
import type { DiffsReport } from '../analysis/analysis.js';
import type { Config } from '../config/load.js';
import type { Telemetry } from '../telemetry/metrics.js';
import { AuditLog } from './audit.js';
import { Controller, controllerConfig, type ControllerLogger, type WeightListener } from './controller.js';
import { fieldsFromDiffs, type ReportStraggler } from './report.js';
import type { EvidenceSource, StateStore } from './types.js';

export interface CutoverDeps {
  store: StateStore;
  /** The analysis: evidence for the gates, diffs for the report's fields. */
  analysis: EvidenceSource & { diffs(route: string): DiffsReport | undefined };
  telemetry: Telemetry;
  logger?: ControllerLogger;
  /** Applies a route's effective weight in the proxy (0 while bypass is on). */
  onWeight: WeightListener;
  /** The credential inventory's stragglers (see `Inventory.stragglers`), for the readiness report. */
  stragglers?: (complete: ReadonlyMap<string, number>) => ReportStraggler[];
  now?: () => number;
}

export interface Cutover {
  controller: Controller;
  audit: AuditLog;
  /** Registers the lever routes on the admin fastify instance (`shadowBackends`: the breakers GET /api/state shows). */
  register(app: FastifyInstance, configHash: () => string, shadowBackends?: LeverDeps['shadowBackends']): void;
  /** A reloaded config: new steps, gates and routes; stored state is kept by route name. */
  reload(config: Config): Promise<void>;
  close(): Promise<void>;
}

/** Builds, seeds and starts the controller. The proxy gets every route's weight through `onWeight` before this resolves. */
export async function createCutover(config: Config, deps: CutoverDeps): Promise<Cutover> {
  const audit = new AuditLog(config.cutover.audit.path, (err) => deps.logger?.error({ err }, 'cutover audit log write failed'));
  const { settings, routes } = controllerConfig(config);
  const controller = new Controller(settings, routes, {
    store: deps.store,
    evidence: deps.analysis,
    audit,
    now: deps.now ?? Date.now,
    metrics: deps.telemetry.cutover,
    logger: deps.logger,
  });
  controller.onWeight(deps.onWeight);
  await controller.init();
  controller.start();
  return {
    controller,
    audit,
    register(app, configHash, shadowBackends) {
      registerLeverRoutes(app, {
        controller,
        audit,
        configHash,
        shadowBackends,
        fields: (route) => {
          const diffs = deps.analysis.diffs(route);
          return diffs && fieldsFromDiffs(diffs);
        },
        stragglers: deps.stragglers,
      });
    },
    async reload(next) {
      const c = controllerConfig(next);
      await controller.configure(c.settings, c.routes);
    },
    async close() {
      controller.stop();
      await audit.flush();
    },
  };
}
