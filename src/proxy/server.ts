/**
 * The front listener: fastify with one catch-all route and a raw-buffer body parser. For each
 * request it resolves the route, picks the primary backend (sticky split), streams the primary's
 * answer to the client, and hands the request to the shadow engine, which the client never waits for.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifyError } from 'fastify';
import { METHODS, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Config } from '../config/load.js';
import type { ServerResponse } from 'node:http';
import { answerClientError, problem, PROBLEM_TYPE, sendProblem, writeRawProblem, type Problem } from '../problem.js';
import { clientAddress, TrustedProxies, type ForwardedContext } from '../forward/headers.js';
import type { OutboundIntent } from '../forward/shaping.js';
import { canonicalPath, canonicalTarget, isTargetProblem } from '../routing/canonical.js';
import type { RejectReason } from '../telemetry/metrics.js';
import { ClientExchange, dispatchOptions, type OnSettled } from '../forward/exchange.js';
import type { Upstream } from '../forward/upstream.js';
import type { Route } from '../routing/table.js';
import type { Snapshot, Snapshots } from './snapshot.js';
import { createStickyExtractor, type StickyExtractor } from '../routing/sticky.js';
import type { Logger } from '../telemetry/logger.js';
import { Tunnels, tunnelled } from './upgrade.js';
import { blankSecrets, secretSpellings } from '../compare/redact.js';
import { BodyBudget, BodyHold, BodyRejectedError, readBody, type BodyLimits } from './body.js';
import type { ShadowEngine } from '../shadow/engine.js';
import { revokedProblem, type CredentialInventory, type CredentialSighting, type Credentials, type RequestCredential } from '../credentials/index.js';

/** Methods the proxy relays, for the Allow header of `OPTIONS *`. */
const ALLOWED_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS';

/** What the access log's `request` line says of the kind of live call. */
const LIVE_TAGS = { request: { mirrored: false }, mirrored: { mirrored: true }, upgrade: { upgrade: true } } as const;

/** Requests that arrive on open connections once the drain has begun (SIGTERM, a close). */
const DRAINING = problem(503, 'DRAINING', 'Shutting down', 'This proxy is shutting down; retry on another connection.');
const TRACE_REFUSED = problem(405, 'METHOD_NOT_ALLOWED', 'Method not allowed', 'TRACE is not forwarded: its echo would show the credentials the proxy adds. A route may allow it in match.methods.');

/** A failure of the proxy's own (a bug): logged, and the client told so. */
const PROXY_ERROR = problem(500, 'PROXY_ERROR', 'Proxy error', 'The proxy failed on this request; see its logs.');

function saturatedProblem(primary: Upstream): Problem {
  return problem(503, 'UPSTREAM_SATURATED', 'Upstream saturated', `Too many requests are waiting for the ${primary.name} backend; retry shortly.`, { backend: primary.name });
}

/**
 * `next`, then the inventory told of this credential's sighting once the live answer's status is
 * known. The sighting is this request's own object (the inventory keeps no reference to it), so
 * the status is filled in rather than copied into a new one.
 */
function inventoried(next: OnSettled | null, inventory: CredentialInventory, sighting: CredentialSighting): OnSettled {
  return (answer) => {
    next?.(answer);
    sighting.status = answer.status;
    inventory.record(sighting);
  };
}

export interface Upstreams {
  legacy: Upstream;
  new: Upstream;
}

interface Decision {
  method: string;
  /** Canonical path (no query). */
  path: string;
  /** Canonical path and query, as legacy receives it. */
  legacyPath: string;
  /** The route match and query `newPathOf` rewrites from. */
  match: RegExpExecArray | null;
  query: string;
  /** The same call in the new API's shape (`rewrite.path`): read it through `newPathOf`, which fills it when first needed. */
  newPath?: string;
  route: Route;
  ctx: ForwardedContext;
  clientIp: string;
  toNew: boolean;
  primary: Upstream;
  intent: OutboundIntent;
  /** The request's legacy credential (fingerprint, what it may do); null without credential wiring. */
  credential: RequestCredential | null;
}

interface Rejection {
  route: Route;
  problem: Problem;
  reason: RejectReason;
}

/** The call in the new API's shape, rewritten once per request and only when asked for (no closure per request). */
function newPathOf(d: Decision): string {
  return (d.newPath ??= d.route.newPath(d.match, d.path, d.query));
}

/**
 * The request-target as the client sent it. fastify's router is handed '/' (rewriteUrl) and keeps
 * the original in `originalUrl`; an upgrade never passes the router and keeps its own `url`.
 */
function requestTarget(req: IncomingMessage): string {
  return (req as IncomingMessage & { originalUrl?: string }).originalUrl ?? req.url ?? '/';
}

/** Whether a request's head announces a body (a length above zero, or chunked). */
function declaresBody(headers: IncomingMessage['headers']): boolean {
  const length = headers['content-length'];
  return headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

function hostValues(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) if (raw[i].length === 4 && raw[i].toLowerCase() === 'host') out.push(raw[i + 1]);
  return out;
}

export interface ProxyDeps {
  /** The config at start, for what only a restart changes (listener options, sticky key, trusted proxies). */
  config: Config;
  /** The live config snapshot: read once per request. */
  snapshots: Snapshots;
  upstreams: Upstreams;
  shadow: ShadowEngine | null;
  logger: Logger;
  /** Legacy credentials: revocation, mappings toward new, the inventory (credentials/index.ts). */
  credentials?: Credentials | null;
  /** The controller's emergency bypass: while true, live traffic goes to legacy and nothing is mirrored. */
  bypassed?: () => boolean;
}

export class ProxyServer {
  readonly app: FastifyInstance;
  private readonly deps: ProxyDeps;
  private readonly trusted: TrustedProxies;
  private readonly sticky: StickyExtractor | null;
  /** Upgraded connections, tracked so a drain can cut them at its deadline. */
  readonly tunnels = new Tunnels();
  private readonly preserveHost: boolean;
  private readonly accessLog: boolean;
  /** The client address is only worked out when the sticky key or the access log uses it. */
  private readonly needsClientIp: boolean;
  /** Set when the listener starts closing: new requests on open connections get 503. */
  private draining = false;
  /** Emergency bypass (the controller's switch): everything to legacy, nothing mirrored. */
  private readonly bypassed: () => boolean;
  /** Request-body bytes held across all connections (listen.maxBufferedBodyBytes). */
  readonly bodyBudget: BodyBudget;
  private readonly bodyLimits: BodyLimits;
  /** listen.sendTimeout, for each live answer (forward/exchange.ts). */
  private readonly sendTimeout: number;
  private readonly bodyHolds = new WeakMap<IncomingMessage, BodyHold>();

  constructor(deps: ProxyDeps) {
    this.deps = deps;
    this.bypassed = deps.bypassed ?? (() => false);
    const { config } = deps;
    this.trusted = new TrustedProxies(config.listen.trustedProxies);
    this.sticky = createStickyExtractor(config.sticky?.key, config.credentials.legacy);
    this.preserveHost = config.listen.preserveHost;
    this.accessLog = config.log.access;
    this.needsClientIp = config.sticky?.key === 'ip' || this.accessLog;
    this.app = Fastify({
      logger: false,
      bodyLimit: config.listen.bodyLimit,
      keepAliveTimeout: config.listen.keepAliveTimeout,
      // listen.requestTimeout covers the headers too: Node's own 60 s, checked every 30 s, let a
      // client sending its headers a byte at a time hold a connection for ~90 s. Node's whole-request
      // limit stays a backstop behind the proxy's own body timers (body.ts), never before them.
      http: {
        headersTimeout: config.listen.requestTimeout,
        requestTimeout: Math.max(300_000, config.listen.requestTimeout),
        connectionsCheckingInterval: Math.max(250, Math.min(5_000, Math.floor(config.listen.requestTimeout / 4))),
      },
      // While draining, requests arriving on kept-alive connections get 503 + Connection: close,
      // as problem+json from `handle` (fastify's own 503 is plain JSON).
      return503OnClosing: false,
      forceCloseConnections: 'idle',
      requestIdHeader: false,
      exposeHeadRoutes: false,
      routerOptions: { maxParamLength: 65_535, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false },
      // Framing errors (smuggling attempts, bad chunk sizes, bare LF...) get problem+json too.
      clientErrorHandler: (err: NodeJS.ErrnoException, socket: Duplex) => answerClientError(err, socket, () => deps.snapshots.current().routes.other.metrics.rejected('body_timeout')),
      // The router sees one path, always: routing is the route table's, on the canonical target
      // (decide). find-my-way's own decoding refused targets a backend accepts (Latin-1
      // `/search/caf%E9` got 400); the target as sent is kept in `originalUrl` (requestTarget).
      rewriteUrl: () => '/',
      // Anything the router still refuses never reaches the handler: answered the same way.
      frameworkErrors: (_error, _request, reply) => {
        reply.hijack();
        this.reject(reply.raw, { route: deps.snapshots.current().routes.other, reason: 'bad_path', problem: problem(400, 'BAD_PATH', 'Bad path', 'The request path has a malformed percent-encoding; encode "%" as %25.') });
      },
    });
    this.bodyBudget = new BodyBudget(config.listen.maxBufferedBodyBytes);
    this.bodyLimits = { bodyLimit: config.listen.bodyLimit, requestTimeout: config.listen.requestTimeout, bodyIdleTimeout: config.listen.bodyIdleTimeout };
    this.sendTimeout = config.listen.sendTimeout;
    // A body's bytes stay reserved until its response is over (sent, failed or abandoned).
    this.app.addHook('onRequest', (request, reply, done) => {
      const raw = request.raw;
      // Every body is read as bytes and forwarded as sent (from rawHeaders): fastify must not judge
      // its media type first (it refused "json", "text" or an empty Content-Type with 415, unforwarded).
      if (raw.headers['content-type'] !== undefined) raw.headers['content-type'] = 'application/octet-stream';
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
    // Every method a client may send carries its body through, GET's and WebDAV's too (an
    // Elasticsearch-style GET _search is its body): fastify reads none for GET and sends methods it
    // does not list to the not-found handler unread, so both backends got the request without it.
    for (const method of METHODS) if (method !== 'HEAD' && method !== 'CONNECT' && method !== 'TRACE') this.app.addHttpMethod(method, { hasBody: true, overrideExisting: true });
    // `all` covers every method fastify supports; anything else still reaches the not-found handler.
    this.app.all('*', this.handle);
    this.app.setNotFoundHandler(this.handle);
    this.app.setErrorHandler(this.onError);
    this.app.addHook('preClose', async () => {
      this.draining = true;
    });
    this.app.server.on('upgrade', this.onUpgrade);
  }

  private forwardedContext(req: IncomingMessage, authority: string | undefined): ForwardedContext {
    const peer = req.socket.remoteAddress ?? '';
    // An absolute-form target's authority replaces Host (RFC 9112 §3.2.2).
    return { peer, peerTrusted: this.trusted.has(peer), host: authority ?? req.headers.host, proto: 'http', preserveHost: this.preserveHost };
  }

  /**
   * Where a request goes: its canonical target, route, whether new serves it, and what the
   * shaping layer needs. One decision for plain requests and upgrades, so a client's WebSocket
   * lands where its HTTP calls do. A target that cannot be made canonical is refused.
   */
  private decide(req: IncomingMessage, snapshot: Snapshot): Decision | Rejection {
    const method = req.method ?? 'GET';
    const { upstreams } = this.deps;
    const { routes } = snapshot;
    const target = canonicalTarget(requestTarget(req), hostValues(req.rawHeaders));
    if (isTargetProblem(target)) {
      const bad = target.problem === 'BAD_HOST';
      return { route: routes.other, reason: bad ? 'bad_host' : 'bad_path', problem: problem(400, target.problem, bad ? 'Bad host' : 'Bad path', target.detail) };
    }
    const { path, query } = target;
    const { route, match, unsafe } = routes.resolve(method, path);
    if (unsafe) {
      return { route, reason: 'bad_path', problem: problem(400, 'BAD_PATH', 'Bad path', 'A path parameter holds an encoded separator or a dot-segment; send the plain value.') };
    }
    // A backend's TRACE echo would show the client what the proxy adds on the way, its own
    // credential toward new first (cross-site tracing): refused, as nginx does, unless a route names it.
    if (method === 'TRACE' && !route.names(method)) return { route, reason: 'bad_method', problem: TRACE_REFUSED };
    // Once per request, synchronous: fingerprint, revocation and the identity toward new.
    // The query as forwarded (no fragment): what the backend will read is what is judged.
    const credential = this.deps.credentials?.inspect(req.rawHeaders, query) ?? null;
    if (credential?.decision === 'revoked') return { route, reason: 'revoked', problem: revokedProblem() };
    const ctx = this.forwardedContext(req, target.authority);
    const clientIp = this.needsClientIp ? clientAddress(ctx, req.headers['x-forwarded-for'], this.trusted) : ctx.peer;
    const key = this.sticky === null ? undefined : this.sticky(req.headers, clientIp, query);
    const newAllowed = credential === null || credential.decision === 'allowed';
    const toNew = !this.bypassed() && newAllowed && route !== routes.other && route.servesNew(key);
    const primary = toNew ? upstreams.new : upstreams.legacy;
    const legacyPath = path + query;
    const intent: OutboundIntent = { kind: 'live', rawHeaders: req.rawHeaders, ctx, forwardCredentials: route.forwardCredentials, mapping: credential?.mapping };
    return { method, path, legacyPath, match, query, newPath: undefined, route, ctx, clientIp, toNew, primary, intent, credential };
  }

  /**
   * What a live exchange's end is told to, after `first` (the mirror job's, if any): the credential
   * inventory (the sighting with the live answer's status) and the access log. Requests (mirrored
   * or not) and upgrades alike.
   */
  private settledHooks(req: IncomingMessage, decision: Decision, first: OnSettled | null, live: keyof typeof LIVE_TAGS): OnSettled | null {
    const { route, primary, credential, clientIp, method, path } = decision;
    let onSettled = first;
    const inventory = this.deps.credentials?.inventory;
    if (inventory !== undefined && credential?.fingerprint && credential.scheme) {
      onSettled = inventoried(onSettled, inventory, { fingerprint: credential.fingerprint, scheme: credential.scheme, route: route.name, backend: primary.name, status: 0, client: this.needsClientIp ? clientIp : clientAddress(decision.ctx, req.headers['x-forwarded-for'], this.trusted), userAgent: req.headers['user-agent'] });
    }
    if (this.accessLog) {
      const before = onSettled;
      // The query string stays out of the log: it carries tokens and personal data too often. A
      // path segment holding the request's own key (`/keys/<key>`) is blanked.
      onSettled = (answer) => {
        before?.(answer);
        // The access log is opt-in and its line costs more than this: every spelling is looked for
        // (a first look at the raw key's start missed Basic passwords, encoded and quoted keys).
        const secrets = credential?.fingerprint ? this.deps.credentials?.secretsIn(req.rawHeaders, decision.query) : undefined;
        const shown = secrets === undefined || secrets.length === 0 ? path : blankSecrets(path, secretSpellings(secrets));
        this.deps.logger.info(
          { route: route.name, method, path: shown, backend: primary.name, status: answer.status, outcome: answer.error === 'client_aborted' ? 'aborted' : answer.outcome, ms: Math.round(answer.seconds * 10_000) / 10, client: clientIp, ...LIVE_TAGS[live] },
          'request',
        );
      };
    }
    return onSettled;
  }

  private reject(res: ServerResponse, rejection: Rejection): void {
    rejection.route.metrics.rejected(rejection.reason);
    res.setHeader('connection', 'close');
    if (rejection.problem.status === 405) res.setHeader('allow', ALLOWED_METHODS);
    this.condemn(res.req?.socket);
    sendProblem(res, rejection.problem);
  }

  /**
   * Connections answered with `Connection: close`: a request pipelined behind the refused one on
   * the same connection is never forwarded, since its answer could never be sent (a write the
   * backend ran, for a client that saw no answer and may send it again).
   */
  private readonly condemned = new WeakSet<object>();

  private condemn(socket: object | undefined | null): void {
    if (socket) this.condemned.add(socket);
  }

  private readonly handle = (request: FastifyRequest, reply: FastifyReply): void => {
    reply.hijack();
    const req = request.raw;
    const res = reply.raw;
    if (this.condemned.has(req.socket)) {
      res.destroy();
      return;
    }
    if (requestTarget(req) === '*') {
      // `OPTIONS *` asks about the server itself (RFC 9110 §9.3.7): answered here, never forwarded.
      if (req.method === 'OPTIONS') {
        res.writeHead(200, { allow: ALLOWED_METHODS, 'content-length': 0 });
        res.end();
      } else {
        this.reject(res, { route: this.deps.snapshots.current().routes.other, reason: 'bad_path', problem: problem(400, 'BAD_PATH', 'Bad path', 'Only OPTIONS may use the "*" request target; send a path.') });
      }
      return;
    }
    // One snapshot for the whole request: a reload swaps the next one in for later requests only.
    const decision = this.decide(req, this.deps.snapshots.current());
    if (this.draining) {
      this.reject(res, { route: decision.route, reason: 'draining', problem: DRAINING });
      return;
    }
    if ('problem' in decision) {
      this.reject(res, decision);
      return;
    }
    const { method, legacyPath, route, toNew, primary, intent, credential } = decision;
    // Checked before planning a mirror: a refused request takes no mirror slot.
    if (primary.saturated()) {
      route.metrics.rejected('saturated');
      res.setHeader('retry-after', '1');
      sendProblem(res, saturatedProblem(primary));
      return;
    }
    const { shadow } = this.deps;
    const body = (request.body as Buffer | undefined) ?? null;
    // Why a request of a configured route is not mirrored is counted with the request, when its
    // answer is whole (recordLive): under bypass first, then a credential new may not serve
    // (unmapped under requireMapping, refused by legacy), then what plan() finds.
    const planned =
      shadow === null || route.settings === undefined
        ? null
        : this.bypassed()
          ? 'bypass'
          : credential !== null && credential.decision !== 'allowed'
            ? 'unmapped'
            : shadow.plan(route, method, body, toNew, req.rawHeaders);
    const job = typeof planned === 'object' ? planned : null;
    const onSettled = this.settledHooks(req, decision, job?.onPrimary ?? null, job === null ? 'request' : 'mirrored');
    let exchange: ClientExchange | null = null;
    try {
      exchange = new ClientExchange(res, primary, route.metrics, job === null ? 0 : job.captureLimit, onSettled, this.sendTimeout, typeof planned === 'string' ? planned : null);
      primary.dispatcher.dispatch(dispatchOptions(primary, { method, path: toNew ? newPathOf(decision) : legacyPath, body, intent }), exchange);
    } catch (err) {
      // Nothing was sent (undici reports its own errors to the handler; this is for anything before
      // it): the mirror's places and the exchange's go back, and the client gets its answer now (the
      // reply is hijacked, so a rethrown error would leave it waiting for the backend's timeout).
      job?.abandon();
      exchange?.discard();
      this.deps.logger.error({ err }, 'proxy error');
      if (!res.headersSent) sendProblem(res, PROXY_ERROR);
      else res.destroy();
      return;
    }
    // Held until the live answer has been read (shadow.hold), so reading the mirror's answer never
    // takes the thread from the client's; each backend's latency is timed from its own socket.
    if (job !== null) job.mirror({ primaryIsNew: toNew, method, legacyPath, newPath: newPathOf(decision), rawHeaders: req.rawHeaders, ctx: decision.ctx, body, mapping: credential?.mapping, secrets: this.deps.credentials?.secretsLater(credential?.fingerprint ? req.rawHeaders : null, decision.query, credential?.mapping) });
  };

  private readonly onError = (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void => {
    if (error instanceof BodyRejectedError) {
      const raw = request.raw;
      if (error.reason !== null) {
        // Counted under the route the canonical path resolves to, as the request itself would have been.
        const path = canonicalPath(requestTarget(raw).split('?', 1)[0]);
        const routes = this.deps.snapshots.current().routes;
        (path === null ? routes.other : routes.resolve(raw.method ?? 'GET', path).route).metrics.rejected(error.reason);
      }
      this.condemn(raw.socket);
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
          : PROXY_ERROR;
    if (status >= 500) this.deps.logger.error({ err: error }, 'proxy error');
    void reply.code(status).type(PROBLEM_TYPE).send(p);
  };

  private readonly onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    afterResponses(socket, () => this.upgrade(req, socket, head));
  };

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const decision = this.decide(req, this.deps.snapshots.current());
    // No new tunnel once the drain has begun: it would only be cut at the deadline.
    if (this.draining) {
      decision.route.metrics.rejected('draining');
      writeRawProblem(socket, DRAINING);
      return;
    }
    if ('problem' in decision) {
      decision.route.metrics.rejected(decision.reason);
      writeRawProblem(socket, decision.problem, decision.problem.status === 405 ? { allow: ALLOWED_METHODS } : {});
      return;
    }
    const { method, legacyPath, toNew, primary, intent, route } = decision;
    // Not a WebSocket: forwarded as an ordinary request without the upgrade (upgrade.ts), which has
    // no way to carry a body read past the handshake's head: refused rather than sent without it.
    if (!tunnelled(req.headers.upgrade) && declaresBody(req.headers)) {
      route.metrics.rejected('bad_upgrade');
      writeRawProblem(socket, problem(400, 'BAD_REQUEST', 'Bad request', 'Only WebSocket upgrades are tunnelled; send this request without its Upgrade header.'));
      return;
    }
    // A handshake waits for a pooled connection like any request: refused the same way when the queue is full.
    if (primary.saturated()) {
      route.metrics.rejected('saturated');
      writeRawProblem(socket, saturatedProblem(primary), { retryAfterS: 1 });
      return;
    }
    // Never mirrored (a tunnel's bytes cannot be replayed to a second backend), and counted so, as a
    // request would be: comparisons + skipped = requests holds, and a route that carries only
    // upgrades says why its gates hold.
    const skip = this.deps.shadow !== null && route.settings !== undefined ? (this.bypassed() ? 'bypass' : 'upgrade') : null;
    const onSettled = this.settledHooks(req, decision, null, 'upgrade');
    this.tunnels.start(
      req,
      socket,
      head,
      primary,
      { method, path: toNew ? newPathOf(decision) : legacyPath, body: null, intent: { ...intent, kind: 'upgrade' } },
      route.metrics,
      onSettled,
      (err) => this.deps.logger.warn({ backend: primary.name, err: err.message }, 'upgrade tunnel failed'),
      skip,
    );
  }
}

/**
 * Runs `start` once the connection has no response left to write. Node hands an upgrade over as
 * soon as it parses it, even when the client pipelined it behind requests still being answered on
 * the same connection; starting the tunnel then would put the 101 and the tunnel's bytes ahead of
 * those answers (and their bytes into the tunnel). Node keeps the response being written on the
 * socket (`_httpMessage`: not in its docs, but how http.Server has attached responses to sockets
 * since its beginning, on Node 20 and 24 alike); the pipelined ones after it are attached in turn.
 * A client that leaves meanwhile gets nothing started.
 */
function afterResponses(socket: Duplex, start: () => void): void {
  const writing = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (writing === null || writing === undefined) {
    start();
    return;
  }
  writing.once('close', () =>
    setImmediate(() => {
      if (!socket.destroyed) afterResponses(socket, start);
    }),
  );
}
