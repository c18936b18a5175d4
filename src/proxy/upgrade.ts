/**
 * Upgrade (WebSocket) pass-through, through the backend's shaped dispatcher like every other
 * request (same pool, same header shaping, `preserveHost` honoured). Bytes are spliced only after
 * the backend answers `101 Switching Protocols`; any other answer is relayed with
 * `Connection: close` and both sides are closed, so a backend that ignores the upgrade can never
 * leave a raw tunnel that later requests would ride unchecked.
 *
 * Upgrades are never mirrored: a second live socket would double every message. Open tunnels are
 * tracked, so a drain can cut them at its deadline.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { problem, writeRawProblem } from '../problem.js';
import { dispatchOptions, type ExchangeRequest } from '../forward/exchange.js';
import { downstreamHeaders } from '../forward/headers.js';
import { isTimeout, type Upstream } from '../forward/upstream.js';

type Controller = Dispatcher.DispatchController;

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
  private headSent = false;
  private spliced = false;

  constructor(
    private readonly client: Duplex,
    private readonly head: Buffer,
    private readonly upstream: Upstream,
    private readonly report: (err: Error) => void,
  ) {
    client.once('close', this.onClientClose);
    client.on('error', () => undefined);
  }

  private readonly onClientClose = (): void => {
    if (!this.spliced) this.controller?.abort(new Error('the client closed the connection'));
  };

  onRequestStart(controller: Controller): void {
    this.controller = controller;
    if (this.client.destroyed) controller.abort(new Error('the client closed the connection'));
  }

  onRequestUpgrade(_controller: Controller, statusCode: number, headers: IncomingHttpHeaders, socket: Duplex): void {
    this.spliced = true;
    const client = this.client;
    if (client.destroyed) {
      socket.destroy();
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
  }

  onResponseStart(_controller: Controller, statusCode: number, headers: IncomingHttpHeaders, statusMessage?: string): void {
    if (statusCode < 200) return;
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
  }

  onResponseError(_controller: Controller, err: Error): void {
    if (!this.headSent && !this.client.destroyed) {
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
    this.report(err);
  }
}

/** The upgraded connections of one listener. */
export class Tunnels {
  private readonly open = new Set<Duplex>();

  /** Sends the upgrade request through the backend's shaped dispatcher; splices on 101 only. */
  start(req: IncomingMessage, client: Duplex, head: Buffer, upstream: Upstream, request: ExchangeRequest, onError: (err: Error) => void): void {
    this.open.add(client);
    client.once('close', () => this.open.delete(client));
    const options = { ...dispatchOptions(upstream, request), upgrade: req.headers.upgrade ?? 'websocket' };
    // Destroying the client side (destroyAll) takes the backend side with it: they are paired.
    upstream.dispatcher.dispatch(options, new UpgradeExchange(client, head, upstream, onError));
  }

  /** Cuts every tunnel (the drain deadline). */
  destroyAll(): void {
    for (const socket of this.open) socket.destroy();
    this.open.clear();
  }
}
