/**
 * Upgrade (WebSocket) pass-through, through the backend's shaped dispatcher like every other
 * request (same pool, same header shaping, `preserveHost` honoured). Bytes are spliced only after
 * the backend answers `101 Switching Protocols`; any other answer is relayed with
 * `Connection: close` and both sides are closed, so a backend that ignores the upgrade can never
 * leave a raw tunnel that later requests would ride unchecked.
 *
 * Upgrades are never mirrored: a second live socket would double every message. Each is counted
 * like a live request (`cutover_requests_total`, its duration up to the 101, the wait for a pooled
 * connection), and its credential goes into the inventory, so a WebSocket integration still on a
 * legacy key shows up before the key is revoked. Open tunnels are tracked, so a drain can cut them
 * at its deadline.
 *
 * Only WebSocket is tunnelled. Any other protocol (h2c above all: "h2c smuggling") would hand the
 * client a raw channel on which the backend reads requests the proxy never sees, past the route
 * table, the path normalisation, revocation, the credential toward new and the inventory. Such a
 * request is forwarded as an ordinary one without its Upgrade (a server may ignore it, RFC 9110
 * §7.8), and a 101 for anything but WebSocket is never spliced.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { problem, writeRawProblem } from '../problem.js';
import { ClientAbortedError, dispatchOptions, EMPTY, ExchangeClock, expire, recordLive, UpstreamDeadlineError, type ExchangeRequest, type OnSettled } from '../forward/exchange.js';
import { downstreamHeaders } from '../forward/headers.js';
import { isTimeout, type Upstream } from '../forward/upstream.js';
import type { RouteMetrics, Skip } from '../telemetry/metrics.js';

type Controller = Dispatcher.DispatchController;

/** Whether an Upgrade value asks for WebSocket alone (a list could let the backend pick another). */
export function tunnelled(upgrade: string | undefined): boolean {
  return upgrade !== undefined && upgrade.trim().toLowerCase() === 'websocket';
}

function headerLines(headers: IncomingHttpHeaders | Record<string, unknown>): string {
  let out = '';
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) out += `${name}: ${String(v)}\r\n`;
  }
  return out;
}

class UpgradeExchange implements Dispatcher.DispatchHandler {
  private controller: Controller | null = null;
  private readonly clock = new ExchangeClock();
  private headSent = false;
  private spliced = false;
  private status = 0;
  private headers: IncomingHttpHeaders = {};
  private settled = false;
  private clientGone = false;
  /** `backends.X.timeout` counts from dispatch, as for requests: a handshake queued behind hanging ones ends there too. */
  private readonly deadline: NodeJS.Timeout;

  constructor(
    private readonly client: Duplex,
    private readonly head: Buffer,
    private readonly upstream: Upstream,
    private readonly metrics: RouteMetrics,
    private readonly onSettled: OnSettled | null,
    private readonly report: (err: Error) => void,
    private readonly skip: Skip | null,
  ) {
    // A handshake holds a pooled connection until the 101 (or its failure): it counts toward the
    // backend's saturation as any live request does.
    upstream.inFlight++;
    client.once('close', this.onClientClose);
    // The server's sockets are half-open: a client that leaves during the handshake ends its side
    // and the socket never closes by itself, so without this its request would hold the backend
    // until the timeout and then be counted against it.
    client.once('end', this.onClientClose);
    client.on('error', () => undefined);
    this.deadline = setTimeout(this.onDeadline, upstream.timeout);
  }

  private readonly onDeadline = (): void => {
    if (!this.settled && !this.spliced) expire(this.controller, new UpstreamDeadlineError(), (err) => this.onResponseError(null, err));
  };

  private readonly onClientClose = (): void => {
    if (this.spliced) return;
    this.clientGone = true;
    this.controller?.abort(new ClientAbortedError());
  };

  /** The handshake is over: the client socket is the tunnel's (or closing) from here. */
  private endHandshake(): void {
    this.client.off('end', this.onClientClose);
  }

  onRequestStart(controller: Controller): void {
    this.controller = controller;
    if (this.settled) {
      controller.abort(new UpstreamDeadlineError());
      return;
    }
    this.clock.onSocket(this.metrics, this.upstream.name, 'primary');
    // Gone while the request waited for a pooled connection: it is never sent.
    if (this.client.destroyed || this.clientGone) {
      this.clientGone = true;
      controller.abort(new ClientAbortedError());
    }
  }

  onRequestUpgrade(_controller: Controller, statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.spliced = true;
    this.status = statusCode;
    this.headers = headers;
    this.endHandshake();
    const client = this.client;
    if (client.destroyed || this.clientGone) {
      socket.destroy();
      this.clientGone = true;
      this.settle(undefined);
      return;
    }
    const upgrade = headers.upgrade;
    if (!tunnelled(Array.isArray(upgrade) ? upgrade.join(',') : upgrade)) {
      // Switched to something not asked for: the bytes that follow are not WebSocket's.
      socket.destroy();
      this.spliced = false;
      this.onResponseError(null, new Error(`the ${this.upstream.name} backend switched to "${String(upgrade)}", not websocket`));
      return;
    }
    // undici hands the raw header object over; Connection/Upgrade are the tunnel's own here.
    client.write(`HTTP/1.1 ${statusCode} Switching Protocols\r\n${headerLines(headers)}\r\n`);
    if (this.head.length) socket.write(this.head);
    socket.on('error', () => client.destroy());
    client.on('error', () => socket.destroy());
    socket.on('close', () => client.destroy());
    client.on('close', () => socket.destroy());
    socket.pipe(client);
    client.pipe(socket);
    // The exchange is the handshake: its time runs to the 101, not over the tunnel's life.
    this.settle(undefined);
  }

  onResponseStart(_controller: Controller, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode < 200) return;
    this.status = statusCode;
    this.headers = headers;
    this.endHandshake();
    // Not a 101: relay the answer as an ordinary one and close, never splice.
    const out = downstreamHeaders(headers);
    this.client.write(`HTTP/1.1 ${statusCode} ${statusMessage || ''}\r\n${headerLines(out)}connection: close\r\n\r\n`);
    this.headSent = true;
  }

  onResponseData(_controller: Controller, chunk: Buffer): void {
    this.client.write(chunk);
  }

  onResponseEnd(): void {
    this.client.end();
    this.client.once('finish', () => this.client.destroy());
    this.settle(undefined);
  }

  onResponseError(_controller: Controller | null, err: Error): void {
    if (this.settled) return;
    if (!this.headSent && !this.client.destroyed && !this.clientGone) {
      const backend = this.upstream.name;
      writeRawProblem(
        this.client,
        isTimeout(err)
          ? problem(504, 'UPSTREAM_TIMEOUT', 'Upstream timeout', `The ${backend} backend did not answer the upgrade in time; retry later.`, { backend })
          : problem(502, 'UPSTREAM_UNAVAILABLE', 'Bad gateway', `The ${backend} backend could not be reached for the upgrade; retry later.`, { backend }),
      );
    } else {
      this.client.destroy();
    }
    this.settle(err);
    if (!(err instanceof ClientAbortedError)) this.report(err);
  }

  /** Counted like a live request (metrics, then the inventory and access log through `onSettled`). */
  private settle(err: Error | undefined): void {
    if (this.settled) return;
    this.settled = true;
    clearTimeout(this.deadline);
    this.upstream.inFlight--;
    const seconds = this.clock.seconds();
    const { outcome, error } = recordLive(this.metrics, this.upstream.name, this.clock, seconds, this.status, err, this.clientGone, this.skip);
    this.onSettled?.({ outcome, status: this.status, headers: this.headers, body: EMPTY, truncated: false, seconds, error });
  }
}

/** The upgraded connections of one listener. */
export class Tunnels {
  private readonly open = new Set<Duplex>();

  /** Sends the upgrade request through the backend's shaped dispatcher; splices on 101 only. */
  start(req: IncomingMessage, client: Duplex, head: Buffer, upstream: Upstream, request: ExchangeRequest, metrics: RouteMetrics, onSettled: OnSettled | null, onError: (err: Error) => void, skip: Skip | null): void {
    this.open.add(client);
    client.once('close', () => this.open.delete(client));
    // Anything but WebSocket goes as an ordinary request (no Upgrade): its answer is relayed and closed.
    const upgrade = req.headers.upgrade;
    const options = tunnelled(upgrade) ? { ...dispatchOptions(upstream, request), upgrade } : dispatchOptions(upstream, request);
    // Destroying the client side (destroyAll) takes the backend side with it: they are paired.
    upstream.dispatcher.dispatch(options, new UpgradeExchange(client, head, upstream, metrics, onSettled, onError, skip));
  }

  /** Cuts every tunnel (the drain deadline). */
  destroyAll(): void {
    for (const socket of this.open) socket.destroy();
    this.open.clear();
  }
}
