/**
 * One keep-alive undici pool per backend (and a separate, smaller one per backend for mirrored
 * calls, so a slow shadow backend can never take connections the client path needs).
 */
import { Pool, type Dispatcher } from 'undici';
import type { BackendConfig, CredentialLocation } from '../config/schema.js';
import type { BackendName } from '../telemetry/metrics.js';
import { shapeDispatcher, type ShapingOptions } from './shaping.js';
import { reuseCountingFactory, type RetryTarget } from './retry.js';

/** What every pool toward a backend shares: how its requests are shaped (see shaping.ts). */
export interface UpstreamShaping {
  legacyCredentials: readonly CredentialLocation[];
  outbound?: ShapingOptions['outbound'];
  connect?: ShapingOptions['connect'];
  /** Told of each request sent again after a stale kept-alive connection failed it (forward/retry.ts). */
  retried?: RetryTarget['retried'];
}

export class Upstream {
  readonly name: BackendName;
  readonly origin: string;
  /** Path prefix of the backend URL ('' when it is the root), prepended to every request path. */
  readonly basePath: string;
  readonly pool: Pool;
  /** The pool behind the shaping layer: every request to this backend is dispatched here. */
  readonly dispatcher: Dispatcher;
  readonly timeout: number;
  readonly connectTimeout: number;
  /** Requests allowed to wait for a pooled connection; 0 for no bound (mirror pools bound themselves). */
  readonly maxPending: number;
  readonly connections: number;
  /** Client-path exchanges not settled yet (kept by ClientExchange): a cheap first look at the load. */
  inFlight = 0;

  constructor(name: BackendName, config: BackendConfig, shaping: UpstreamShaping, overrides: { connections?: number; timeout?: number; maxPending?: number } = {}) {
    const url = new URL(config.url);
    this.name = name;
    this.origin = url.origin;
    this.basePath = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
    this.timeout = overrides.timeout ?? config.timeout;
    this.connectTimeout = config.connectTimeout;
    this.maxPending = overrides.maxPending ?? config.maxPending;
    this.connections = overrides.connections ?? config.connections;
    this.pool = new Pool(this.origin, {
      connections: this.connections,
      keepAliveTimeout: config.keepAliveTimeout,
      headersTimeout: this.timeout,
      bodyTimeout: this.timeout,
      connect: { ...shaping.connect, timeout: config.connectTimeout },
      // Pipelining would let one slow response hold up unrelated requests queued behind it.
      pipelining: 1,
      // Clients that send a request failed by a stale kept-alive connection again (forward/retry.ts).
      factory: reuseCountingFactory({ pool: () => this.pool, retried: shaping.retried }),
    });
    this.dispatcher = shapeDispatcher(this.pool, { backend: name, basePath: this.basePath, ...shaping });
  }

  /** Whether the pool's queue is full: a new request would only wait (and hold memory) in it. */
  saturated(): boolean {
    // While fewer exchanges are live than there are connections, nothing waits long: skip pool.stats,
    // which walks every client of the pool.
    return this.maxPending > 0 && this.inFlight >= this.connections && this.pool.stats.pending >= this.maxPending;
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  destroy(): Promise<void> {
    return this.pool.destroy();
  }
}

const TIMEOUT_CODES = new Set(['CUTOVER_UPSTREAM_DEADLINE', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT']);

/** Whether an upstream error means the backend took too long (504) rather than failed (502). */
export function isTimeout(err: unknown): boolean {
  return TIMEOUT_CODES.has((err as { code?: string } | null)?.code ?? '');
}
