// Ratios, target checks and the markdown table. Pure functions over the rows of one run: every
// ratio compares two scenarios measured side by side on the same machine, minutes apart.

export const TARGETS = {
  passthroughVsHttpProxyRps: 1.3,
  shadowVsHttpProxyRps: 1.0,
  shadowVsNginxMirrorRps: 1.2,
  shadowCpuVsPassthrough: 2.0,
  /** Under each mirror fault: client req/s at least this share of the healthy-mirror run … */
  degradedShadowRpsVsHealthy: 0.75,
  /** … and client p99 at most this multiple of it. */
  degradedShadowP99VsHealthy: 1.25,
  /** 1 MB bodies: p50 at 100% shadow within this multiple of 0% shadow … */
  bigBodyP50VsNoShadow: 1.25,
  /** … while at least this share of the mirrors is still compared. */
  bigBodyComparedShare: 0.5,
  proxyRssMB: 256,
};

/** Faulty-mirror rows and the healthy row each is held against. */
export function isolationPairs(rows) {
  const pairs = [];
  for (const r of rows) {
    if (r.proxy === 'cutover' && r.scenario.startsWith('shadow-') && !r.scenario.startsWith('shadow-1mb') && !r.scenario.startsWith('shadow-all')) pairs.push([r.scenario, 'shadow']);
    if (r.proxy === 'nginx' && r.scenario.startsWith('nginx-mirror-')) pairs.push([r.scenario, 'nginx-mirror']);
  }
  return pairs;
}

/** Of the mirrors the proxy could have sent (not sampled out), the share it compared. */
export function comparedShare(counters) {
  if (!counters || counters.error) return null;
  let compared = 0;
  let skipped = 0;
  for (const [k, v] of Object.entries(counters)) {
    if (k.startsWith('comparisons.')) compared += v;
    else if (k.startsWith('shadowSkipped.') && k !== 'shadowSkipped.sampled_out') skipped += v;
  }
  return compared + skipped > 0 ? Math.round((compared / (compared + skipped)) * 1000) / 1000 : null;
}

const median = (xs) => {
  const v = xs.filter((x) => typeof x === 'number').sort((a, b) => a - b);
  if (!v.length) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 ? v[mid] : Math.round(((v[mid - 1] + v[mid]) / 2) * 1000) / 1000;
};
const maxOf = (xs) => {
  const v = xs.filter((x) => typeof x === 'number');
  return v.length ? Math.max(...v) : null;
};

/**
 * One row from the rounds of one scenario: medians of throughput, latency percentiles and CPU;
 * sums of counts (so one bad round's errors are never hidden); the worst memory; every round kept.
 * A round that broke breaks the row (the run must say so). A round skipped for a reason of its own
 * round (a fixed-rate row whose closed row failed in that round, so it had no rate) leaves the
 * measured rounds standing, and `skippedRounds` says how many there were.
 */
export function mergeRounds(allRounds) {
  if (allRounds.length === 1) return allRounds[0];
  const broken = allRounds.find((r) => r.error);
  if (broken) return { ...broken, rounds: allRounds };
  const roundRows = allRounds.filter((r) => !r.skipped);
  if (roundRows.length === 0) return { ...allRounds[0], rounds: allRounds };
  const skippedRounds = allRounds.length - roundRows.length;
  const first = roundRows[0];
  const last = roundRows[roundRows.length - 1];
  const sum = (key) => roundRows.reduce((acc, r) => acc + (r[key] ?? 0), 0);
  const med = (get) => median(roundRows.map(get));
  return {
    ...first,
    pid: undefined,
    durationS: sum('durationS'),
    requests: sum('requests'),
    sent: sum('sent'),
    rps: Math.round(med((r) => r.rps)),
    bytesPerSec: med((r) => r.bytesPerSec),
    latencyMs: Object.fromEntries(['p50', 'p90', 'p99', 'p999', 'mean'].map((k) => [k, med((r) => r.latencyMs[k])]).concat([['max', maxOf(roundRows.map((r) => r.latencyMs.max))]])),
    autocannonLatencyMs: undefined,
    non2xx: sum('non2xx'),
    errors: sum('errors'),
    timeouts: sum('timeouts'),
    resets: sum('resets'),
    statusCodes: undefined,
    proxyCpu: first.proxyCpu ? { usPerRequest: med((r) => r.proxyCpu?.usPerRequest), coresUsed: med((r) => r.proxyCpu?.coresUsed) } : null,
    restCpu: first.restCpu ? { generatorCores: med((r) => r.restCpu?.generatorCores), backendCores: med((r) => r.restCpu?.backendCores) } : undefined,
    rssMB: { start: first.rssMB.start, afterWarmup: first.rssMB.afterWarmup, peak: maxOf(roundRows.map((r) => r.rssMB.peak)), end: last.rssMB.end, hwm: maxOf(roundRows.map((r) => r.rssMB.hwm)), samples: sum2(roundRows.map((r) => r.rssMB.samples)) },
    proxyCounters: sumCounters(roundRows.map((r) => r.proxyCounters)),
    medianOf: roundRows.length,
    rounds: allRounds,
    ...(skippedRounds ? { skippedRounds } : {}),
  };
}
const sum2 = (xs) => xs.reduce((a, b) => a + (b ?? 0), 0);

/** The proxy's counters of every round added up (shares then weigh each mirror once); undefined if a round has none. */
function sumCounters(list) {
  if (list.some((c) => !c || c.error)) return undefined;
  const total = {};
  for (const counters of list) for (const [k, v] of Object.entries(counters)) total[k] = (total[k] ?? 0) + v;
  return total;
}

const ratio = (a, b) => (typeof a === 'number' && typeof b === 'number' && b > 0 ? Math.round((a / b) * 1000) / 1000 : null);

/** A row that can be compared: it ran, and answered requests. */
const usable = (row) => row && !row.error && !row.skipped && row.requests > 0;

export function computeRatios(rows) {
  const by = Object.fromEntries(rows.map((r) => [r.scenario, r]));
  const hp = usable(by['http-proxy']) ? by['http-proxy'] : null;
  const direct = usable(by.direct) ? by.direct : null;
  const perScenario = {};
  for (const row of rows) {
    if (!usable(row)) continue;
    perScenario[row.scenario] = {
      rpsVsHttpProxy: hp ? ratio(row.rps, hp.rps) : null,
      rpsVsDirect: direct ? ratio(row.rps, direct.rps) : null,
      p99VsHttpProxy: hp ? ratio(row.latencyMs.p99, hp.latencyMs.p99) : null,
      p99VsDirect: direct ? ratio(row.latencyMs.p99, direct.latencyMs.p99) : null,
      cpuPerRequestVsHttpProxy: hp ? ratio(row.proxyCpu?.usPerRequest, hp.proxyCpu?.usPerRequest) : null,
    };
  }
  const shadowIsolation = {};
  for (const [name, healthyName] of isolationPairs(rows)) {
    const healthy = usable(by[healthyName]) ? by[healthyName] : null;
    if (healthy && usable(by[name])) {
      shadowIsolation[name] = {
        against: healthyName,
        p99VsHealthyShadow: ratio(by[name].latencyMs.p99, healthy.latencyMs.p99),
        p50VsHealthyShadow: ratio(by[name].latencyMs.p50, healthy.latencyMs.p50),
        rpsVsHealthyShadow: ratio(by[name].rps, healthy.rps),
      };
    }
  }
  const pass = usable(by.passthrough) ? by.passthrough : null;
  // What a shadowed request costs is read where every request is shadowed (shedding off); the
  // default row's figures follow, with the share of mirrors it compared.
  const every = usable(by['shadow-all']) ? by['shadow-all'] : null;
  const shadow = usable(by.shadow) ? by.shadow : null;
  const unique = usable(by['shadow-all-unique']) ? by['shadow-all-unique'] : null;
  const nginxMirror = usable(by['nginx-mirror']) ? by['nginx-mirror'] : null;
  const big0 = usable(by['passthrough-1mb']) ? by['passthrough-1mb'] : null;
  const big100 = usable(by['shadow-1mb']) ? by['shadow-1mb'] : null;
  const open0 = usable(by['passthrough-1mb-open']) ? by['passthrough-1mb-open'] : null;
  const open100 = usable(by['shadow-1mb-open']) ? by['shadow-1mb-open'] : null;
  // One row's full-speed figures: CPU per request × pass-through's, req/s × nginx mirror's, share compared.
  const speed = (row) => ({
    cpu: pass && row ? ratio(row.proxyCpu?.usPerRequest, pass.proxyCpu?.usPerRequest) : null,
    rps: row && nginxMirror ? ratio(row.rps, nginxMirror.rps) : null,
    share: row ? comparedShare(row.proxyCounters) : null,
  });
  const all = speed(every);
  const shed = speed(shadow);
  const once = speed(unique);
  const fullSpeed = {
    shadowCpuVsPassthrough: all.cpu,
    shadowRpsVsNginxMirror: all.rps,
    shadowComparedShare: all.share,
    shedShadowCpuVsPassthrough: shed.cpu,
    shedShadowRpsVsNginxMirror: shed.rps,
    shedShadowComparedShare: shed.share,
    // Where no request repeats, so nothing kept per request (recent pairs) serves the comparison.
    uniqueShadowCpuVsPassthrough: once.cpu,
    uniqueShadowRpsVsNginxMirror: once.rps,
    passthroughRpsVsNginx: pass && usable(by.nginx) ? ratio(pass.rps, by.nginx.rps) : null,
    bigBodyP50Vs0: big0 && big100 ? ratio(big100.latencyMs.p50, big0.latencyMs.p50) : null,
    bigBodyP99Vs0: big0 && big100 ? ratio(big100.latencyMs.p99, big0.latencyMs.p99) : null,
    bigBodyComparedShare: big100 ? comparedShare(big100.proxyCounters) : null,
    // The same at a fixed rate, a quarter of the closed 0% row's req/s (the proxy is not flat out).
    bigBodyOpenRps: open100?.offeredRps ?? open0?.offeredRps ?? null,
    bigBodyOpenP50Vs0: open0 && open100 ? ratio(open100.latencyMs.p50, open0.latencyMs.p50) : null,
    bigBodyOpenP90Vs0: open0 && open100 ? ratio(open100.latencyMs.p90, open0.latencyMs.p90) : null,
    bigBodyOpenComparedShare: open100 ? comparedShare(open100.proxyCounters) : null,
  };
  return { perScenario, shadowIsolation, fullSpeed };
}

/**
 * The rows as round i measured them (a row without rounds, or with fewer, stands for itself), so a
 * target's ratio can be read per round as well as from the medians.
 */
function roundRows(rows, i) {
  return rows.map((r) => (Array.isArray(r.rounds) && r.rounds.length > i ? r.rounds[i] : r));
}

/**
 * Informational checks; a MISS never changes the exit code. With several rounds, each ratio is
 * also read within each round (`rounds`), and `split` says the rounds' verdicts differ from one
 * another: on a shared machine a median near the line is then noise, not a verdict.
 */
export function checkTargets(rows, ratios) {
  const roundCount = Math.max(1, ...rows.map((r) => (Array.isArray(r.rounds) ? r.rounds.length : 1)));
  const perRound = roundCount > 1 ? Array.from({ length: roundCount }, (_, i) => roundRows(rows, i)).map((rs) => ({ ratios: computeRatios(rs), rows: rs })) : [];
  const checks = [];
  const verdictOf = (value, limit, cmp) => (cmp === '>=' ? value >= limit : value < limit || (cmp === '<=' && value === limit));
  const add = (name, read, limit, cmp, unit, missingWhy) => {
    const value = read(ratios, rows);
    if (value === null || value === undefined) {
      checks.push({ name, verdict: 'SKIP', value: null, limit, detail: missingWhy });
      return;
    }
    const pass = verdictOf(value, limit, cmp);
    const show = (v) => (unit === '×' ? v.toFixed(2) : v.toFixed(1));
    const rounds = perRound.map((round) => read(round.ratios, round.rows)).filter((v) => typeof v === 'number' && Number.isFinite(v));
    const split = rounds.length > 1 && rounds.some((v) => verdictOf(v, limit, cmp) !== verdictOf(rounds[0], limit, cmp));
    const inRounds = rounds.length > 1 ? `, rounds ${rounds.map((v) => `${show(v)}${unit}`).join(' and ')}${split ? ' disagree' : ''}` : '';
    const detail = `measured ${show(value)}${unit}${inRounds}, target ${cmp.replace('>=', '≥').replace('<=', '≤')} ${limit}${unit}`;
    checks.push({ name, verdict: pass ? 'PASS' : 'MISS', value, limit, ...(rounds.length > 1 ? { rounds, split } : {}), detail });
  };
  add('pass-through req/s ≥ 1.3× http-proxy', (r) => r.perScenario.passthrough?.rpsVsHttpProxy, TARGETS.passthroughVsHttpProxyRps, '>=', '×', 'needs passthrough and http-proxy rows');
  add('100% shadow + compare req/s ≥ 1.0× http-proxy (every mirror compared)', (r) => r.perScenario['shadow-all']?.rpsVsHttpProxy, TARGETS.shadowVsHttpProxyRps, '>=', '×', 'needs shadow-all and http-proxy rows');
  add('shadowed CPU µs/req ≤ 2.0× pass-through (every mirror compared)', (r) => r.fullSpeed?.shadowCpuVsPassthrough, TARGETS.shadowCpuVsPassthrough, '<=', '×', 'needs shadow-all and passthrough rows with CPU figures');
  add('100% shadow + compare req/s ≥ 1.2× nginx + mirror (every mirror compared)', (r) => r.fullSpeed?.shadowRpsVsNginxMirror, TARGETS.shadowVsNginxMirrorRps, '>=', '×', 'needs shadow-all and nginx-mirror rows (nginx installed)');
  for (const [name, healthyName] of isolationPairs(rows)) {
    add(`${name} client req/s ≥ 0.75× ${healthyName}`, (r) => r.shadowIsolation[name]?.rpsVsHealthyShadow, TARGETS.degradedShadowRpsVsHealthy, '>=', '×', `needs ${name} and ${healthyName} rows`);
    add(`${name} client p99 ≤ 1.25× ${healthyName}`, (r) => r.shadowIsolation[name]?.p99VsHealthyShadow, TARGETS.degradedShadowP99VsHealthy, '<=', '×', `needs ${name} and ${healthyName} rows`);
  }
  add('1 MB bodies: client p50 at 100% shadow ≤ 1.25× 0% shadow', (r) => r.fullSpeed?.bigBodyP50Vs0, TARGETS.bigBodyP50VsNoShadow, '<=', '×', 'needs passthrough-1mb and shadow-1mb rows');
  add('1 MB bodies: share of mirrors compared ≥ 0.5', (r) => r.fullSpeed?.bigBodyComparedShare, TARGETS.bigBodyComparedShare, '>=', '×', 'needs the shadow-1mb row and its counters');
  add('1 MB bodies at ¼ load: client p50 at 100% shadow ≤ 1.25× 0% shadow', (r) => r.fullSpeed?.bigBodyOpenP50Vs0, TARGETS.bigBodyP50VsNoShadow, '<=', '×', 'needs passthrough-1mb, passthrough-1mb-open and shadow-1mb-open rows');
  add('1 MB bodies at ¼ load: share of mirrors compared ≥ 0.5', (r) => r.fullSpeed?.bigBodyOpenComparedShare, TARGETS.bigBodyComparedShare, '>=', '×', 'needs the shadow-1mb-open row and its counters');
  const peakRss = (_r, rs) => {
    const cutoverRows = rs.filter((r) => r.proxy === 'cutover' && usable(r) && r.rssMB);
    return cutoverRows.length ? Math.max(...cutoverRows.map((r) => Math.max(r.rssMB.peak ?? 0, r.rssMB.hwm ?? 0))) || null : null;
  };
  add('cutover peak RSS < 256 MB', peakRss, TARGETS.proxyRssMB, '<', ' MB', 'needs a cutover row with RSS (Linux)');
  return checks;
}

const fmt = (x, digits = 2) => (x === null || x === undefined ? '–' : typeof x === 'number' ? x.toFixed(digits) : String(x));
const fmtInt = (x) => (x === null || x === undefined ? '–' : Math.round(x).toLocaleString('en-US'));

export function markdown(report) {
  const { rows, ratios, params } = report;
  const lines = [];
  lines.push(`## cutover bench — ${report.machine.date}`);
  lines.push('');
  lines.push(
    `${report.machine.cpus}× ${report.machine.cpuModel}, Node ${report.machine.node}, load average before ${report.machine.loadavgBefore.map((x) => x.toFixed(2)).join(' ')}; ` +
      `${params.connections} connections, pipelining 1, warm-up ${params.warmupS} s, measured ${params.durationS} s per scenario${params.rounds > 1 ? `, median of ${params.rounds} interleaved rounds` : ''}${params.quick ? ' (quick: proves the harness, not the speed)' : ''}.`,
  );
  lines.push('');
  lines.push('| scenario | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | errors | proxy RSS start / peak / end MB | proxy CPU µs/req | cores: proxy · load · backends | req/s × http-proxy | req/s × direct | p99 × http-proxy | CPU/req × http-proxy |');
  lines.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of rows) {
    if (r.skipped || r.error) {
      lines.push(`| ${r.scenario} | ${r.skipped ? `skipped: ${r.skipped}` : `error: ${oneLine(r.error)}`} | | | | | | | | | | | | |`);
      continue;
    }
    const cores = `${fmt(r.proxyCpu?.coresUsed)} · ${fmt(r.restCpu?.generatorCores)} · ${fmt(r.restCpu?.backendCores)}`;
    const q = ratios.perScenario[r.scenario] ?? {};
    const rss = r.rssMB.start === null && r.rssMB.peak === null ? '–' : `${fmt(r.rssMB.start, 0)} / ${fmt(r.rssMB.peak, 0)} / ${fmt(r.rssMB.end, 0)}`;
    lines.push(
      `| ${r.scenario} | ${fmtInt(r.rps)} | ${fmt(r.latencyMs.p50)} | ${fmt(r.latencyMs.p99)} | ${fmt(r.latencyMs.p999)} | ${r.non2xx} | ${r.errors} | ${rss} | ${r.proxyCpu?.usPerRequest ?? '–'} | ${cores} | ${fmt(q.rpsVsHttpProxy)} | ${fmt(q.rpsVsDirect)} | ${fmt(q.p99VsHttpProxy)} | ${fmt(q.cpuPerRequestVsHttpProxy)} |`,
    );
  }
  const iso = Object.entries(ratios.shadowIsolation);
  if (iso.length) {
    lines.push('');
    lines.push('| faulty mirror | against | client p99 × healthy | client p50 × healthy | req/s × healthy |');
    lines.push('| --- | --- | ---: | ---: | ---: |');
    for (const [name, v] of iso) lines.push(`| ${name} | ${v.against} | ${fmt(v.p99VsHealthyShadow)} | ${fmt(v.p50VsHealthyShadow)} | ${fmt(v.rpsVsHealthyShadow)} |`);
  }
  const full = ratios.fullSpeed ?? {};
  if (Object.values(full).some((v) => v !== null && v !== undefined)) {
    lines.push('');
    lines.push(
      `Full speed, every mirror compared (shadow-all, share ${fmt(full.shadowComparedShare)}): shadowed CPU/req × pass-through ${fmt(full.shadowCpuVsPassthrough)}, req/s × nginx+mirror ${fmt(full.shadowRpsVsNginxMirror)}; ` +
        `with the default shedder (shadow, share compared ${fmt(full.shedShadowComparedShare)}): CPU/req × pass-through ${fmt(full.shedShadowCpuVsPassthrough)}, req/s × nginx+mirror ${fmt(full.shedShadowRpsVsNginxMirror)}; ` +
        `no request repeating (shadow-all-unique): CPU/req × pass-through ${fmt(full.uniqueShadowCpuVsPassthrough)}, req/s × nginx+mirror ${fmt(full.uniqueShadowRpsVsNginxMirror)}; pass-through req/s × nginx ${fmt(full.passthroughRpsVsNginx)}; ` +
        `1 MB bodies: p50 at 100% × 0% shadow ${fmt(full.bigBodyP50Vs0)}, p99 ${fmt(full.bigBodyP99Vs0)}, share of mirrors compared ${fmt(full.bigBodyComparedShare)}; ` +
        `at a fixed ${fmtInt(full.bigBodyOpenRps)} req/s (¼ of that 0% row): p50 × ${fmt(full.bigBodyOpenP50Vs0)}, p90 × ${fmt(full.bigBodyOpenP90Vs0)}, share compared ${fmt(full.bigBodyOpenComparedShare)}.`,
    );
  }
  const counted = rows.filter((r) => r.proxyCounters && !r.proxyCounters.error && Object.keys(r.proxyCounters).length);
  if (counted.length) {
    lines.push('');
    lines.push('What cutover says it did (admin /metrics after the run, warm-up and readiness probes included):');
    lines.push('');
    for (const r of counted) {
      const parts = Object.entries(r.proxyCounters)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => `${k} ${fmtInt(v)}`);
      lines.push(`- ${r.scenario}: ${parts.join(', ')}`);
    }
  }
  if (Array.isArray(report.comparator) && report.comparator.length) {
    lines.push('');
    lines.push('### comparator (bench/compare.mjs)');
    lines.push('');
    const keys = [...new Set(report.comparator.flatMap((r) => Object.keys(r)))];
    lines.push(`| ${keys.join(' | ')} |`);
    lines.push(`| ${keys.map(() => '---').join(' | ')} |`);
    for (const r of report.comparator) lines.push(`| ${keys.map((k) => (typeof r[k] === 'object' ? JSON.stringify(r[k]) : r[k] ?? '')).join(' | ')} |`);
  } else if (report.comparator?.error) {
    lines.push('', `comparator bench: error: ${oneLine(report.comparator.error)}`);
  }
  return lines.join('\n');
}

/** One greppable line per target: PASS, MISS or SKIP first. */
export function targetLines(targets) {
  return targets.map((t) => `${t.verdict} ${t.name}${t.detail ? ` (${t.detail})` : ''}`);
}

const oneLine = (s) => String(s).split('\n')[0].replace(/\|/g, '\\|').slice(0, 160);
