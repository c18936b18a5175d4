/**
 * The front listener: fastify with one catch-all route and a raw-buffer body parser. For each
 * request it resolves the route, picks the primary backend (sticky split), streams the primary's
 * answer to the client, and hands the request to the shadow engine, which the client never waits for.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyError } from 'fastify';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Config } from '../config/load.js';
import { problem, PROBLEM_TYPE, sendProblem } from '../problem.js';
import { credentialHeaderNames, TrustedProxies, upstreamHeaders, type ForwardedContext } from '../forward/headers.js';
import { ClientExchange, dispatchOptions, type OnSettled } from '../forward/exchange.js';
import type { Upstream } from '../forward/upstream.js';
import type { Route } from '../routing/table.js';
import type { Snapshot, Snapshots } from './snapshot.js';
import { createStickyExtractor, type StickyExtractor } from '../routing/sticky.js';
import type { Logger } from '../telemetry/logger.js';
import { tunnelUpgrade } from './upgrade.js';
import { BodyBudget, BodyHold, BodyRejectedError, readBody, type BodyLimits } from './body.js';
import type { ShadowEngine } from '../shadow/engine.js';

export interface Upstreams {
  legacy: Upstream;
  new: Upstream;
}

interface Decision {
  url: string;
  method: string;
  path: string;
  query: string;
  route: Route;
  match: RegExpExecArray | null;
  ctx: ForwardedContext;
  clientIp: string;
  toNew: boolean;
  primary: Upstream;
  headers: string[];
}

export interface ProxyDeps {
  /** The config at start, for what only a restart changes (listener options, sticky key, trusted proxies). */
  config: Config;
  /** The live config snapshot: read once per request. */
  snapshots: Snapshots;
  upstreams: Upstreams;
  shadow: ShadowEngine | null;
  logger: Logger;
}

function firstForwardedFor(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? value[0] : value;
  const comma = text.indexOf(',');
  return (comma === -1 ? text : text.slice(0, comma)).trim() || undefined;
}

export class ProxyServer {
  readonly app: FastifyInstance;
  private readonly deps: ProxyDeps;
  private readonly trusted: TrustedProxies;
  private readonly sticky: StickyExtractor | null;
  private readonly credentialHeaders: ReadonlySet<string>;
  private readonly preserveHost: boolean;
  private readonly accessLog: boolean;
  /** The client address is only worked out when the sticky key or the access log uses it. */
  private readonly needsClientIp: boolean;
  /** Emergency bypass: everything to legacy, nothing mirrored. */
  bypass = false;
  /** Request-body bytes held across all connections (listen.maxBufferedBodyBytes). */
  readonly bodyBudget: BodyBudget;
  private readonly bodyLimits: BodyLimits;
  private readonly bodyHolds = new WeakMap<IncomingMessage, BodyHold>();

  constructor(deps: ProxyDeps) {
    this.deps = deps;
    const { config } = deps;
    this.trusted = new TrustedProxies(config.listen.trustedProxies);
    this.sticky = createStickyExtractor(config.sticky?.key, config.credentials.legacy);
    this.credentialHeaders = credentialHeaderNames(config.credentials.legacy);
    this.preserveHost = config.listen.preserveHost;
    this.accessLog = config.log.access;
    this.needsClientIp = config.sticky?.key === 'ip' || this.accessLog;
    this.app = Fastify({
      logger: false,
      bodyLimit: config.listen.bodyLimit,
      keepAliveTimeout: config.listen.keepAliveTimeout,
      // While draining, requests arriving on kept-alive connections get 503 + Connection: close.
      return503OnClosing: true,
      forceCloseConnections: 'idle',
      requestIdHeader: false,
      exposeHeadRoutes: false,
      routerOptions: { maxParamLength: 65_535, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false },
    });
    this.bodyBudget = new BodyBudget(config.listen.maxBufferedBodyBytes);
    this.bodyLimits = { bodyLimit: config.listen.bodyLimit, requestTimeout: config.listen.requestTimeout, bodyIdleTimeout: config.listen.bodyIdleTimeout };
    // A body's bytes stay reserved until its response is over (sent, failed or abandoned).
    this.app.addHook('onRequest', (request, reply, done) => {
      const raw = request.raw;
      if (raw.headers['content-length'] !== undefined || raw.headers['transfer-encoding'] !== undefined) {
        const hold = new BodyHold(this.bodyBudget);
        this.bodyHolds.set(raw, hold);
        reply.raw.once('close', () => hold.release());
      }
      done();
    });
    this.app.removeAllContentTypeParsers();
    this.app.addContentTypeParser('*', (request, payload, done) => {
      let hold = this.bodyHolds.get(request.raw);
      if (hold === undefined) {
        // Not announced by its headers (the hook saw neither length nor chunked): held until the request closes.
        const late = new BodyHold(this.bodyBudget);
        request.raw.once('close', () => late.release());
        hold = late;
      }
      readBody(request.raw, payload, hold, this.bodyLimits, done);
    });
    // `all` covers every method fastify supports; anything else still reaches the not-found handler.
    this.app.all('*', this.handle);
    this.app.setNotFoundHandler(this.handle);
    this.app.setErrorHandler(this.onError);
    this.app.server.on('upgrade', this.onUpgrade);
  }

  private forwardedContext(req: IncomingMessage): ForwardedContext {
    const peer = req.socket.remoteAddress ?? '';
    return { peer, peerTrusted: this.trusted.has(peer), host: req.headers.host, proto: 'http', preserveHost: this.preserveHost };
  }

  /**
   * Where a request goes: its route, whether new serves it, and its upstream headers. One decision
   * for plain requests and upgrades, so a client's WebSocket lands where its HTTP calls do.
   */
  private decide(req: IncomingMessage, snapshot: Snapshot): Decision {
    const url = req.url ?? '/';
    const method = req.method ?? 'GET';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const query = q === -1 ? '' : url.slice(q);
    const { upstreams } = this.deps;
    const { routes } = snapshot;
    const { route, match } = routes.resolve(method, path);
    const ctx = this.forwardedContext(req);
    // Behind a trusted proxy the client is the first X-Forwarded-For entry; parsed only when used.
    const clientIp = this.needsClientIp && ctx.peerTrusted ? (firstForwardedFor(req.headers['x-forwarded-for']) ?? ctx.peer) : ctx.peer;
    const key = this.sticky === null ? undefined : this.sticky(req.headers, clientIp);
    const toNew = !this.bypass && route !== routes.other && route.servesNew(key);
    const primary = toNew ? upstreams.new : upstreams.legacy;
    const headers = upstreamHeaders(req.rawHeaders, ctx, toNew && !route.forwardCredentials ? this.credentialHeaders : null);
    return { url, method, path, query, route, match, ctx, clientIp, toNew, primary, headers };
  }

  private readonly handle = (request: FastifyRequest, reply: FastifyReply): void => {
    reply.hijack();
    const req = request.raw;
    const res = reply.raw;
    // One snapshot for the whole request: a reload swaps the next one in for later requests only.
    const { url, method, path, query, route, match, ctx, clientIp, toNew, primary, headers } = this.decide(req, this.deps.snapshots.current());
    // Checked before planning a mirror: a refused request takes no mirror slot.
    if (primary.saturated()) {
      route.metrics.rejected('saturated');
      res.setHeader('retry-after', '1');
      sendProblem(res, problem(503, 'UPSTREAM_SATURATED', 'Upstream saturated', `Too many requests are waiting for the ${primary.name} backend; retry shortly.`, { backend: primary.name }));
      return;
    }
    const { shadow } = this.deps;
    const body = (request.body as Buffer | undefined) ?? null;
    const job = shadow === null || this.bypass ? null : shadow.plan(route, method, body, toNew);
    const newPath = toNew || job !== null ? route.newPath(match, path, query) : url;
    let onSettled: OnSettled | null = job === null ? null : job.onPrimary;
    if (this.accessLog) {
      const toJob = onSettled;
      // The query string stays out of the log: it carries tokens and personal data too often.
      onSettled = (answer) => {
        toJob?.(answer);
        this.deps.logger.info(
          { route: route.name, method, path, backend: primary.name, status: answer.status, outcome: answer.error === 'client_aborted' ? 'aborted' : answer.outcome, ms: Math.round(answer.seconds * 10_000) / 10, client: clientIp, mirrored: job !== null },
          'request',
        );
      };
    }
    const exchange = new ClientExchange(res, primary, route.metrics, job === null ? 0 : job.captureLimit, onSettled);
    primary.pool.dispatch(dispatchOptions(primary, { method, path: toNew ? newPath : url, headers, body }), exchange);
    // Dispatched right after the primary, so both backends see the same moment and latencies compare.
    if (job !== null) job.mirror({ primaryIsNew: toNew, method, legacyPath: url, newPath, rawHeaders: req.rawHeaders, ctx, body });
  };

  private readonly onError = (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void => {
    if (error instanceof BodyRejectedError) {
      const raw = request.raw;
      if (error.reason !== null) this.deps.snapshots.current().routes.resolve(raw.method ?? 'GET', (raw.url ?? '/').split('?', 1)[0]).route.metrics.rejected(error.reason);
      const title = error.statusCode === 408 ? 'Request timeout' : error.statusCode === 413 ? 'Payload too large' : 'Request bodies buffer full';
      // The rest of this body is not read: the connection cannot carry another request.
      void reply
        .code(error.statusCode)
        .header('connection', 'close')
        .headers(error.statusCode === 503 ? { 'retry-after': '1' } : {})
        .type(PROBLEM_TYPE)
        .send(problem(error.statusCode, error.code, title, error.message));
      return;
    }
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500;
    const p =
      status === 413
        ? problem(413, 'BODY_TOO_LARGE', 'Payload too large', `The request body is larger than the proxy accepts (${this.deps.config.listen.bodyLimit} bytes); send a smaller body or raise listen.bodyLimit.`)
        : status < 500
          ? problem(status, 'BAD_REQUEST', 'Bad request', 'The proxy could not read this request; check its framing and headers.')
          : problem(500, 'PROXY_ERROR', 'Proxy error', 'The proxy failed on this request; see its logs.');
    if (status >= 500) this.deps.logger.error({ err: error }, 'proxy error');
    void reply.code(status).type(PROBLEM_TYPE).send(p);
  };

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const { url, path, query, route, match, toNew, primary: upstream, headers } = this.decide(req, this.deps.snapshots.current());
    tunnelUpgrade(
      req,
      socket,
      head,
      {
        origin: upstream.origin,
        path: upstream.basePath + (toNew ? route.newPath(match, path, query) : url),
        headers,
        connectTimeout: upstream.connectTimeout,
      },
      upstream.name,
      (err) => this.deps.logger.warn({ backend: upstream.name, err: err.message }, 'upgrade tunnel failed'),
    );
  };
}
