/**
 * Gentle, bounded demo traffic toward the proxy: a fixed set of client ids (so the sticky split is
 * visible per client), spread over the demo routes with a few POSTs. One request per tick at most,
 * a handful in flight at most, and a cap on both the count and the running time, because the demo
 * shares a laptop (or two CI cores) with everything else.
 */
import { Agent, request } from 'undici';
import { DEMO_CUSTOMERS, ORDER_IDS, WIDGET_COUNT, prng } from './backends.js';
import { demoApiKeyFor } from './credentials.js';

export interface TrafficOptions {
  /** The proxy's data URL, e.g. http://127.0.0.1:8080. */
  target: string;
  /** Requests started per second (0.1 to 50). */
  ratePerSecond?: number;
  /** How many distinct x-client-id values to use (1 to 100). */
  clients?: number;
  /** Stop after this many requests; default: one hour's worth at the chosen rate. */
  maxRequests?: number;
  /** Stop after this long; default one hour. */
  durationMs?: number;
  /** Requests in flight at once (1 to 8); a tick that finds them all busy sends nothing. */
  maxInFlight?: number;
  /** Per-request budget for headers and body. */
  requestTimeoutMs?: number;
  /** Aborting it stops the traffic like stop() does. */
  signal?: AbortSignal;
  /** Seeds the sequence of calls, so two runs send the same traffic. */
  seed?: number;
}

export interface TrafficStats {
  /** Requests started. */
  sent: number;
  /** Answered with a status below 500 (a 404 for a missing widget is a fine answer). */
  ok: number;
  /** Answered 5xx, timed out, or failed on the connection. */
  failed: number;
  inFlight: number;
  /** The most requests that were ever in flight at once. */
  peakInFlight: number;
  /** Ticks that sent nothing because maxInFlight requests were still running. */
  skipped: number;
  /** Answers by status code; transport failures under "error". */
  byStatus: Record<string, number>;
}

export interface Traffic {
  /** Stops sending, gives in-flight requests a moment, then cuts them; idempotent. */
  stop(): Promise<void>;
  stats(): TrafficStats;
  /** Settles when the traffic has ended, for any reason (bound reached, stop(), signal). */
  done: Promise<void>;
}

interface PlannedCall {
  method: 'GET' | 'POST';
  path: string;
  body?: string;
}

/** Client ids in a stable order: the demo customers first, then client-21, client-22, ... */
export function demoClientIds(count: number): string[] {
  return Array.from({ length: count }, (_, i) => DEMO_CUSTOMERS[i]?.id ?? `client-${i + 1}`);
}

/** The route mix: mostly reads, like machine-to-machine integrations, with a few order creations. */
function planCall(rand: () => number, clientId: string, sequence: number): PlannedCall {
  const roll = rand();
  const widgetId = 1 + Math.floor(rand() * WIDGET_COUNT);
  if (roll < 0.4) {
    // Now and then a widget that does not exist: both backends agree on the 404.
    return { method: 'GET', path: `/v1/widgets/${rand() < 0.03 ? 9_999 : widgetId}` };
  }
  if (roll < 0.55) return { method: 'GET', path: `/v1/widgets?limit=10&offset=${10 * Math.floor(rand() * 6)}` };
  if (roll < 0.9) {
    const orderId = ORDER_IDS.first + Math.floor(rand() * (ORDER_IDS.last - ORDER_IDS.first + 1));
    return { method: 'GET', path: `/v1/orders/${orderId}` };
  }
  if (roll < 0.98) {
    const customer = DEMO_CUSTOMERS.find((c) => c.id === clientId);
    const lines = Array.from({ length: 1 + Math.floor(rand() * 3) }, () => ({
      widget_id: 1 + Math.floor(rand() * WIDGET_COUNT),
      quantity: 1 + Math.floor(rand() * 12),
    }));
    const body = {
      customer_id: clientId,
      customer_name: customer?.name ?? clientId,
      po_number: `PO-DEMO-${sequence}`,
      lines,
      shipping: { street: 'Keizersgracht 123', city: 'Amsterdam', postcode: '1015', country: 'NL' },
    };
    return { method: 'POST', path: '/v1/orders', body: JSON.stringify(body) };
  }
  // Not a configured route: the proxy serves it from legacy as route "other".
  return { method: 'GET', path: '/healthz' };
}

/** Each client sends its integration's legacy key, as v1 requires (src/demo/credentials.ts). */
function legacyCredential(clientId: string): Record<string, string> {
  return { 'x-api-key': demoApiKeyFor(clientId) };
}

const clamp = (value: number, min: number, max: number): number => Math.min(max, Math.max(min, value));

/** How long stop() lets in-flight requests finish before cutting them. */
const STOP_GRACE_MS = 1_000;

export function startTraffic(options: TrafficOptions): Traffic {
  const target = new URL(options.target);
  const rate = clamp(options.ratePerSecond ?? 5, 0.1, 50);
  const clientIds = demoClientIds(Math.round(clamp(options.clients ?? 20, 1, 100)));
  const durationMs = Math.max(0, options.durationMs ?? 3_600_000);
  const maxRequests = Math.max(0, Math.floor(options.maxRequests ?? Math.ceil(rate * 3_600)));
  const maxInFlight = Math.round(clamp(options.maxInFlight ?? 4, 1, 8));
  const requestTimeoutMs = Math.max(100, options.requestTimeoutMs ?? 10_000);
  const rand = prng(options.seed ?? 7);

  // Its own small pool: the demo never borrows the process-wide dispatcher, and stop() can close it.
  const agent = new Agent({ connections: maxInFlight, keepAliveTimeout: 4_000 });
  const abort = new AbortController();
  const inFlight = new Set<Promise<void>>();
  const stats: TrafficStats = { sent: 0, ok: 0, failed: 0, inFlight: 0, peakInFlight: 0, skipped: 0, byStatus: {} };
  const count = (key: string): void => {
    stats.byStatus[key] = (stats.byStatus[key] ?? 0) + 1;
  };

  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });

  const send = async (call: PlannedCall, clientId: string): Promise<void> => {
    try {
      const res = await request(new URL(call.path, target), {
        method: call.method,
        headers: {
          'x-client-id': clientId,
          ...legacyCredential(clientId),
          'user-agent': 'cutover-demo-traffic',
          ...(call.body ? { 'content-type': 'application/json' } : {}),
        },
        body: call.body,
        dispatcher: agent,
        headersTimeout: requestTimeoutMs,
        bodyTimeout: requestTimeoutMs,
        signal: abort.signal,
      });
      await res.body.dump();
      count(String(res.statusCode));
      if (res.statusCode < 500) stats.ok++;
      else stats.failed++;
    } catch {
      count('error');
      stats.failed++;
    }
  };

  let stopping: Promise<void> | undefined;
  const tick = (): void => {
    if (stopping || stats.sent >= maxRequests) return;
    if (inFlight.size >= maxInFlight) {
      stats.skipped++;
      return;
    }
    const clientId = clientIds[stats.sent % clientIds.length];
    const call = planCall(rand, clientId, stats.sent);
    stats.sent++;
    // The last one is out: stop ticking, and end once the in-flight requests have answered.
    if (stats.sent >= maxRequests) clearInterval(interval);
    const pending: Promise<void> = send(call, clientId).finally(() => {
      inFlight.delete(pending);
      stats.inFlight = inFlight.size;
      if (stats.sent >= maxRequests && inFlight.size === 0) void stop();
    });
    inFlight.add(pending);
    stats.inFlight = inFlight.size;
    stats.peakInFlight = Math.max(stats.peakInFlight, inFlight.size);
  };

  const interval = setInterval(tick, 1_000 / rate);
  const deadline = setTimeout(() => void stop(), durationMs);
  const onAbort = (): void => void stop();

  function stop(): Promise<void> {
    stopping ??= (async () => {
      clearInterval(interval);
      clearTimeout(deadline);
      options.signal?.removeEventListener('abort', onAbort);
      if (inFlight.size > 0) {
        let grace: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.allSettled([...inFlight]),
          new Promise<void>((resolve) => {
            grace = setTimeout(resolve, STOP_GRACE_MS);
          }),
        ]);
        clearTimeout(grace);
        abort.abort();
        await Promise.allSettled([...inFlight]);
      }
      await agent.destroy();
      resolveDone();
    })();
    return stopping;
  }

  if (options.signal?.aborted) void stop();
  else options.signal?.addEventListener('abort', onAbort, { once: true });
  if (maxRequests === 0) void stop();

  return {
    stop,
    stats: () => ({ ...stats, byStatus: { ...stats.byStatus } }),
    done,
  };
}
