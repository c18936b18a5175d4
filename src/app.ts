/**
 * Wires the house together for one config: telemetry, route table, upstream pools, shadow engine,
 * the data listener and the admin listener; and takes it down gracefully.
 */
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { fileSecretDigest } from './config/credentials.js';
import type { Config } from './config/load.js';
import { createAdminServer, type AdminRoutes } from './admin/server.js';
import { registerCredentialRoutes } from './admin/credentials.js';
import { connectOptionsFor, Credentials } from './credentials/index.js';
import { outboundAuthInterceptor } from './credentials/outbound/interceptor.js';
import { Analysis, type AnalysisOptions } from './analysis/analysis.js';
import { createCutover, type Cutover } from './cutover/index.js';
import { MemoryStore } from './cutover/store.js';
import { FileStore } from './cutover/store-file.js';
import { Reloader, type ReloadOutcome } from './reload.js';
import { Snapshots } from './proxy/snapshot.js';
import { credentialQueryNames } from './credentials/extract.js';
import { Upstream, type UpstreamShaping } from './forward/upstream.js';
import { ProxyServer } from './proxy/server.js';
import { breakerMessage } from './shadow/breaker.js';
import { ShadowEngine } from './shadow/engine.js';
import { LoadShedder } from './shadow/load.js';
import type { CapturedAnswerPair } from './shadow/pair.js';
import { createLogger, type Logger } from './telemetry/logger.js';
import { Telemetry, type BackendName } from './telemetry/metrics.js';

/** Admin tokens shorter than this are warned about at start. */
const MIN_TOKEN_CHARS = 16;

/** The data listener's accept queue (the kernel caps it at net.core.somaxconn). */
const LISTEN_BACKLOG = 4096;

export interface AppOptions {
  logger?: Logger;
  /** Collect prom-client's process metrics (default true). */
  defaultMetrics?: boolean;
  /** Receives every completed mirror pair (besides the built-in analysis), before the analysis queues it. */
  onPair?: (pair: CapturedAnswerPair) => void;
  analysis?: Partial<AnalysisOptions>;
  /** Extra admin routes (see admin/server.ts for the convention). */
  adminRoutes?: readonly AdminRoutes[];
  /** Loads the config again for a reload (SIGHUP, POST /api/reload); without it reloads are refused. */
  reloadConfig?: () => Promise<Config>;
}

export interface App {
  dataUrl: string;
  adminUrl: string;
  /** The admin fastify instance (its routes: `adminRoutesOf(app.admin)`). */
  admin: FastifyInstance;
  telemetry: Telemetry;
  /** The live config snapshot (`current()` is what a request starting now uses). */
  snapshots: Snapshots;
  /** The state store: live weights and route states by route name. */
  store: MemoryStore;
  /** The cutover controller: steps, gates, levers, audit log, report (its admin routes are registered). */
  cutover: Cutover;
  /** Legacy credentials (inventory, revocation, mappings) and the backends' own credentials. */
  credentials: Credentials;
  /** Loads the config again; a bad file keeps the running one. */
  reload(trigger: string): Promise<ReloadOutcome>;
  proxy: ProxyServer;
  analysis: Analysis;
  shadow: ShadowEngine;
  logger: Logger;
  /** Stops accepting, lets in-flight requests finish for up to `drainMs`, then cuts what is left. */
  close(drainMs?: number): Promise<void>;
}

function urlOf(address: AddressInfo | string | null): string {
  if (address === null || typeof address === 'string') return String(address);
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${address.port}`;
}

export async function startApp(config: Config, options: AppOptions = {}): Promise<App> {
  const logger = options.logger ?? createLogger(config.log.level);
  const telemetry = new Telemetry({ defaultMetrics: options.defaultMetrics });
  const store =
    config.cutover.state.store === 'file'
      ? new FileStore(config.statePath, {
          onCorrupt: ({ path, corruptPath, reason }) =>
            logger.error({ path, corruptPath, reason }, `the state file ${path} is unreadable (${reason}); it was moved to ${corruptPath} and every route starts from its configured weight`),
          onInvalidRoute: ({ path, route, reason }) =>
            logger.error({ path, route, reason }, `the state file ${path} holds an unusable entry for route ${route} (${reason}); that route starts from its configured weight`),
          onRescued: ({ path, rescuePath, version, routes }) =>
            logger.warn({ path, rescuePath, version, routes }, `the state file ${path} lacked changes made while it could not be written (a rollback, the checks before it); they were taken from ${rescuePath}`),
          onRescueUnreadable: ({ rescuePath, reason }) =>
            logger.error({ rescuePath, reason }, `the rescue file ${rescuePath} cannot be read (${reason}): a rollback kept there while the disk was full, if any, is not applied, and nothing more is kept there; fix its permissions`),
          onShared: ({ path, holder }) =>
            logger.error(
              { path, holder: { pid: holder.pid, host: holder.host, since: holder.since } },
              `the state file ${path} is also used by process ${holder.pid} on ${holder.host} (since ${holder.since}): one process per state file, or each writes its state over the other's (a rollback made through one is undone by the other); give each its own cutover.state.path`,
            ),
          onLockFailed: ({ path, reason }) => logger.warn({ path, reason }, `the state file's lock ${path} could not be written (${reason}); running without it`),
        })
      : new MemoryStore();
  await store.load();
  telemetry.watchStateStore(() => store.up());
  const snapshots = new Snapshots(config, telemetry, store.snapshot());
  store.onChange((state) => snapshots.applyWeights(state));
  const routes = snapshots.current().routes;
  // The fingerprint key may be created only by a lone replica (file or memory store, not a fleet's shared one).
  const credentials = await Credentials.create(config, { store, telemetry, logger, createKey: true });
  const keyFile = config.credentials.fingerprintKeyFile;
  if (credentials.keyOrigin === 'created' && keyFile !== undefined && config.secrets !== undefined) config.secrets['credentials.fingerprintKeyFile'] = fileSecretDigest(keyFile);
  // How each backend's requests are shaped (forward/shaping.ts): the proxy's own credential toward
  // it (`outbound`) and its TLS (`connect`), for live, mirror, baseline and upgrade calls alike.
  const shaping = (backend: BackendName): UpstreamShaping => ({
    legacyCredentials: config.credentials.legacy,
    outbound: [outboundAuthInterceptor(backend, credentials.outbound[backend], telemetry.retries(backend, 'unauthorized'))],
    connect: connectOptionsFor(config.backends[backend]) as Record<string, unknown> | undefined,
    retried: telemetry.retries(backend, 'stale_connection'),
  });
  const upstreams = { legacy: new Upstream('legacy', config.backends.legacy, shaping('legacy')), new: new Upstream('new', config.backends.new, shaping('new')) };
  // Mirror pools are bounded by shadow.maxInFlight, not by a queue of their own.
  const shadowLimits = { connections: config.shadow.connections, timeout: config.shadow.timeout, maxPending: 0 };
  const shadowPools = {
    legacy: new Upstream('legacy', config.backends.legacy, shaping('legacy'), shadowLimits),
    new: new Upstream('new', config.backends.new, shaping('new'), shadowLimits),
  };
  const analysis = new Analysis(routes, {
    queueBytes: config.shadow.compareQueueBytes,
    workers: config.shadow.compareWorkers,
    ...options.analysis,
  });
  const shed = new LoadShedder(config.shadow.shedAt);
  // The store's weights are the one source: the controller writes them, and its onWeight only asks
  // the live table to take them again (0 everywhere while the bypass is on, even before the store has it).
  const cutover = await createCutover(config, {
    store,
    analysis,
    telemetry,
    logger,
    onWeight: () => snapshots.applyWeights(store.snapshot()),
    stragglers: (complete) => credentials.inventory.stragglers(complete),
  });
  // The emergency bypass, as the live table, the proxy and the shadow engine (for held mirrors) read it.
  const bypassed = (): boolean => cutover.controller.bypassed();
  snapshots.followBypass(bypassed, store.snapshot());
  const onPair = options.onPair;
  const shadow = new ShadowEngine({
    pools: shadowPools,
    maxInFlight: config.shadow.maxInFlight,
    timeout: config.shadow.timeout,
    hold: config.shadow.hold,
    credentialQuery: credentialQueryNames(config.credentials.legacy),
    shed,
    comparisons: analysis,
    bypassed,
    onBreaker: (backend, event) => (event.open ? logger.warn : logger.info).call(logger, { backend, ...event }, breakerMessage(backend, event)),
    // Called before the pair is queued: once queued, its bodies may move to a comparison worker.
    onPair:
      onPair === undefined
        ? analysis.submitReserved
        : (pair) => {
            // A hook that throws must not keep the pair's reserved place (after enough, no mirror is sent).
            try {
              onPair(pair);
            } catch (err) {
              logger.error({ err }, 'the onPair hook failed');
            }
            analysis.submitReserved(pair);
          },
  });
  const proxy = new ProxyServer({ config, snapshots, upstreams, shadow, logger, credentials, bypassed });
  const reloader = new Reloader({ snapshots, source: options.reloadConfig, store, analysis, shadow, telemetry, logger });
  // Revocations, mappings and locations follow a reload; the backends' own credentials need a restart.
  // The credential policy reads mapping secrets: read them before the swap, so a bad one refuses the reload.
  reloader.onCheck((next) => credentials.check(next));
  reloader.onSwap((next) => credentials.reload(next));
  reloader.onSwap((next) => {
    cutover.reload(next).catch((err: unknown) => logger.error({ err }, 'the cutover controller did not take the reloaded config'));
  });
  const reload = (trigger: string): Promise<ReloadOutcome> => reloader.reload(trigger);
  let ready = false;
  // A short token is guessed quickly (the admin port answers hundreds of tries in a second): say so.
  for (const t of config.adminTokens) {
    if (t.secret.length < MIN_TOKEN_CHARS) logger.warn(`the admin token "${t.name}" is shorter than ${MIN_TOKEN_CHARS} characters: use a long random one (e.g. openssl rand -hex 32)`);
  }
  const admin = createAdminServer({ telemetry, tokens: config.adminTokens, logger, ready: () => ready, diffs: (route) => analysis.diffs(route), reload }, [
    ...(options.adminRoutes ?? []),
    (app) => registerCredentialRoutes(app, { inventory: credentials.inventory }),
    (app) => cutover.register(app, () => snapshots.current().hash, () => shadow.breakerViews()),
  ]);

  try {
    // A gateway takes bursts of new connections: a short accept queue turns a burst into resets.
    await proxy.app.listen({ host: config.listen.host, port: config.listen.port, backlog: LISTEN_BACKLOG });
    try {
      await admin.listen({ host: config.admin.host, port: config.admin.port });
    } catch (err) {
      await proxy.app.close();
      throw err;
    }
    shed.restart();
  } catch (err) {
    await cutover.close();
    await credentials.close();
    await store.close();
    throw err;
  }
  ready = true;
  const dataUrl = urlOf(proxy.app.server.address());
  const adminUrl = urlOf(admin.server.address());
  logger.info({ dataUrl, adminUrl, routes: config.routes.length }, 'cutover listening');

  let closing: Promise<void> | null = null;
  const close = (drainMs = config.listen.drainTimeout): Promise<void> => {
    closing ??= (async () => {
      ready = false;
      const deadline = setTimeout(() => {
        logger.warn({ drainMs }, 'drain deadline reached; closing remaining connections');
        proxy.app.server.closeAllConnections();
        // Upgraded sockets left the HTTP server's bookkeeping; without this they keep relaying.
        proxy.tunnels.destroyAll();
      }, drainMs);
      deadline.unref();
      await proxy.app.close();
      clearTimeout(deadline);
      await admin.close();
      await Promise.all([upstreams.legacy.close(), upstreams.new.close()]);
      // Mirrors still in flight are not worth waiting for: their client answers are long gone.
      await Promise.all([shadowPools.legacy.destroy(), shadowPools.new.destroy()]);
      shed.close();
      await cutover.close();
      await analysis.close();
      // Before the store: the inventory's last changes are written through it.
      await credentials.close();
      await store.close();
      logger.info('cutover stopped');
      logger.flush?.();
    })();
    return closing;
  };

  return { dataUrl, adminUrl, admin, telemetry, snapshots, store, cutover, credentials, reload, proxy, analysis, shadow, logger, close };
}
