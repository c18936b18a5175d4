// One bounded load run with autocannon (programmatic), plus our own sub-millisecond latencies.
//
// autocannon's histogram keeps whole milliseconds; on a local proxy p50 is often 1–5 ms, so ratios
// of its percentiles would be mostly rounding. We record every response's own high-resolution
// latency from the 'response' event (bounded: at most MAX_SAMPLES) and compute percentiles from
// those; autocannon's own numbers are kept beside them in the row.
import autocannon from 'autocannon';

const MAX_SAMPLES = 4_000_000;

/** Item ids the load cycles through; a few, so backends serve from their cache. */
export const ITEM_PATHS = Array.from({ length: 16 }, (_, i) => `/items/${1000 + i * 37}`);

/**
 * `unique`: each request's path carries a query of its own (`?n=…`), so no request repeats and
 * nothing the proxy keeps per request (recent pairs) can serve it.
 * @param {{ url: string, connections: number, durationS: number, timeoutS?: number, unique?: boolean }} opts
 */
export async function runLoad({ url, connections, durationS, timeoutS = 10, unique = false }) {
  let n = 0;
  const latencies = latencyBuffer(durationS);
  let count = 0;
  let dropped = 0;
  const instance = autocannon({
    url,
    connections,
    pipelining: 1,
    duration: durationS,
    timeout: timeoutS,
    requests: unique
      ? [{ method: 'GET', setupRequest: (req) => ({ ...req, path: `${ITEM_PATHS[n % ITEM_PATHS.length]}?n=${n++}` }) }]
      : ITEM_PATHS.map((path) => ({ method: 'GET', path })),
  });
  instance.on('response', (_client, _status, _bytes, responseTimeMs) => {
    if (count < latencies.length) latencies[count++] = responseTimeMs;
    else dropped++;
  });
  // A hard bound on top of autocannon's own duration: never hang the run.
  const guard = setTimeout(() => instance.stop(), (durationS + timeoutS + 15) * 1000);
  let result;
  try {
    result = await instance;
  } finally {
    clearTimeout(guard);
  }
  return {
    durationS: result.duration,
    requests: result.requests.total,
    sent: result.requests.sent,
    rps: result.duration > 0 ? Math.round(result.requests.total / result.duration) : 0,
    bytesPerSec: result.duration > 0 ? Math.round(result.throughput.total / result.duration) : 0,
    latencyMs: latencySummary(latencies, count, dropped),
    autocannonLatencyMs: { p50: result.latency.p50, p99: result.latency.p99, p999: result.latency.p99_9 },
    non2xx: result.non2xx,
    statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, { count: n }]) => [code, n])),
    errors: result.errors,
    timeouts: result.timeouts,
    resets: result.resets,
  };
}

/** Room for every latency of a run of durationS seconds (up to 100,000 req/s), bounded. */
export function latencyBuffer(durationS) {
  return new Float64Array(Math.min(MAX_SAMPLES, Math.ceil(durationS * 100_000) + 1000));
}

/** Percentiles, max and mean of the first `count` latencies (sorted in place), in ms. */
export function latencySummary(latencies, count, dropped) {
  const sorted = latencies.subarray(0, count).sort();
  const pct = (p) => (count ? round3(sorted[Math.min(count - 1, Math.ceil((p / 100) * count) - 1)]) : null);
  let sum = 0;
  for (let i = 0; i < count; i++) sum += sorted[i];
  return {
    p50: pct(50),
    p90: pct(90),
    p99: pct(99),
    p999: pct(99.9),
    max: count ? round3(sorted[count - 1]) : null,
    mean: count ? round3(sum / count) : null,
    samples: count,
    dropped,
  };
}

export const round3 = (x) => Math.round(x * 1000) / 1000;
