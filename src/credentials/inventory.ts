/**
 * The legacy credential inventory: per fingerprint, when it was first and last seen, how often, on
 * which routes, which backend served it, whether legacy accepted it, and the last client address
 * and User-Agent. Never the credential itself.
 *
 * Bounded so a scanner's random keys never push real integrations out: keys legacy rejects
 * (401/403) and never accepted are only counted, not stored one by one; keys legacy accepted are
 * kept up to `maxCredentials`, and keys legacy has not judged yet (seen only on new) in a pool of
 * their own with the same bound, so even keys that never reach legacy cannot evict accepted ones.
 * In each, the least recently seen is evicted and counted. Persisted through the state store (`extra.credentials`), debounced and off the request
 * path; `load()` restores it after a restart.
 */
import { isTime } from '../cutover/store-file.js';
import type { StateStore } from '../cutover/types.js';
import type { Logger } from '../telemetry/logger.js';
import type { BackendName, CredentialScheme, Telemetry } from '../telemetry/metrics.js';

export const STORE_KEY = 'credentials';
const HOUR = 3_600_000;
/** A User-Agent longer than this is cut: it is client-controlled and kept per credential. */
const MAX_USER_AGENT = 256;

/** One request seen with a legacy credential, told to the inventory once its answer is known. */
export interface CredentialSighting {
  fingerprint: string;
  scheme: CredentialScheme;
  route: string;
  /** The backend whose answer went to the client. */
  backend: BackendName;
  /** That answer's status; 0 when there was none (timeout, connection error). */
  status: number;
  client?: string;
  userAgent?: string;
  /** Epoch ms; now when omitted. */
  at?: number;
}

/** What is kept per fingerprint (JSON-serialisable: persisted as is). */
export interface CredentialRecord {
  fingerprint: string;
  scheme: CredentialScheme;
  firstSeen: number;
  lastSeen: number;
  requests: number;
  /** Route name → epoch ms it was last seen there; at most `maxRoutesPerCredential`. */
  routes: Record<string, number>;
  /** Sightings on routes past the bound. */
  routesDropped: number;
  backends: Record<BackendName, number>;
  lastBackend: BackendName;
  /** Legacy's last status for it, and whether that was an acceptance; null until legacy answered it. */
  legacyStatus: number | null;
  legacyAccepted: boolean | null;
  lastClient: string | null;
  lastUserAgent: string | null;
}

/** Keys legacy refused and never accepted: counted together, never stored one by one. */
export interface RejectedSummary {
  requests: number;
  lastSeen: number | null;
  byRoute: Record<string, number>;
}

export interface InventoryDocument {
  version: 1;
  credentials: CredentialRecord[];
  rejected: RejectedSummary;
  /** Accepted credentials dropped to keep the bound (least recently seen first). */
  evicted: number;
  /** Not-yet-judged credentials dropped to keep their pool's bound. */
  evictedUnjudged: number;
}

export interface Straggler {
  fingerprint: string;
  scheme: CredentialScheme;
  /** The complete routes it was still seen on after their completion. */
  routes: string[];
  lastSeen: number;
  requests: number;
  lastClient: string | null;
  lastUserAgent: string | null;
}

export interface InventoryOptions {
  store?: StateStore;
  telemetry?: Telemetry;
  logger?: Logger;
  maxCredentials?: number;
  maxRoutesPerCredential?: number;
  /** A change is written at most this long after it happened (changes in between are batched). */
  persistDelayMs?: number;
  now?: () => number;
}

interface Entry extends Omit<CredentialRecord, 'routes'> {
  routes: Map<string, number>;
}

function isRejection(status: number): boolean {
  return status === 401 || status === 403;
}

export class CredentialInventory {
  /** Keys legacy accepted at least once, least recently seen first (Map order). */
  private readonly entries = new Map<string, Entry>();
  /** Keys legacy has not answered yet (served by new only), least recently seen first. */
  private readonly unjudged = new Map<string, Entry>();
  private readonly rejected: RejectedSummary = { requests: 0, lastSeen: null, byRoute: {} };
  /**
   * Fingerprints legacy refused and never accepted, least recently refused first: kept in memory
   * only (never listed or persisted) and bounded like the pools, so `legacyRejected` can keep them
   * off the new backend.
   */
  private readonly refused = new Map<string, true>();
  private evicted = 0;
  private evictedUnjudged = 0;
  private readonly maxCredentials: number;
  private readonly maxRoutes: number;
  private readonly persistDelayMs: number;
  private readonly now: () => number;
  private readonly store: StateStore | undefined;
  private readonly telemetry: Telemetry | undefined;
  private readonly logger: Logger | undefined;
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> = Promise.resolve();
  /** Writes that failed (the next change tries again). */
  persistFailures = 0;

  constructor(options: InventoryOptions = {}) {
    this.store = options.store;
    this.telemetry = options.telemetry;
    this.logger = options.logger;
    this.maxCredentials = options.maxCredentials ?? 10_000;
    this.maxRoutes = options.maxRoutesPerCredential ?? 32;
    this.persistDelayMs = options.persistDelayMs ?? 5_000;
    this.now = options.now ?? Date.now;
    options.telemetry?.onCollect(() => this.updateGauges());
  }

  /** One request seen. Synchronous and O(1): a few Map operations; the write to the store is deferred. */
  record(s: CredentialSighting): void {
    const at = s.at ?? this.now();
    this.telemetry?.credentials.credentialRequest(s.route, s.scheme, s.backend);
    const rejectedNow = s.backend === 'legacy' && isRejection(s.status);
    const acceptedNow = s.backend === 'legacy' && s.status > 0 && !rejectedNow;
    let entry = this.entries.get(s.fingerprint);
    let pool = this.entries;
    if (entry === undefined) {
      entry = this.unjudged.get(s.fingerprint);
      pool = this.unjudged;
    }
    if (acceptedNow) this.refused.delete(s.fingerprint);
    if (rejectedNow && pool === this.unjudged) {
      // Never accepted and now refused: a wrong key, counted with the others, not kept.
      if (entry !== undefined) this.unjudged.delete(s.fingerprint);
      this.refused.delete(s.fingerprint);
      if (this.refused.size >= this.maxCredentials) this.refused.delete(this.refused.keys().next().value as string);
      this.refused.set(s.fingerprint, true);
      const r = this.rejected;
      r.requests++;
      r.lastSeen = at;
      // Route names come from the config (plus `other`), so this map is bounded by it.
      r.byRoute[s.route] = (r.byRoute[s.route] ?? 0) + 1;
      this.schedulePersist();
      return;
    }
    if (entry === undefined) {
      entry = {
        fingerprint: s.fingerprint,
        scheme: s.scheme,
        firstSeen: at,
        lastSeen: at,
        requests: 0,
        routes: new Map(),
        routesDropped: 0,
        backends: { legacy: 0, new: 0 },
        lastBackend: s.backend,
        legacyStatus: null,
        legacyAccepted: null,
        lastClient: null,
        lastUserAgent: null,
      };
    } else {
      // Re-inserting keeps the Map in least-recently-seen order, so eviction takes its first key.
      pool.delete(s.fingerprint);
    }
    if (acceptedNow) pool = this.entries;
    this.insert(pool, entry);
    entry.scheme = s.scheme;
    entry.lastSeen = Math.max(entry.lastSeen, at);
    entry.requests++;
    if (entry.routes.has(s.route) || entry.routes.size < this.maxRoutes) entry.routes.set(s.route, at);
    else entry.routesDropped++;
    entry.backends[s.backend]++;
    entry.lastBackend = s.backend;
    if (s.backend === 'legacy' && s.status > 0) {
      entry.legacyStatus = s.status;
      entry.legacyAccepted = !isRejection(s.status);
    }
    if (s.client !== undefined) entry.lastClient = s.client;
    if (s.userAgent !== undefined) entry.lastUserAgent = s.userAgent.slice(0, MAX_USER_AGENT);
    this.schedulePersist();
  }

  private insert(pool: Map<string, Entry>, entry: Entry): void {
    if (pool.size >= this.maxCredentials) {
      pool.delete(pool.keys().next().value as string);
      if (pool === this.entries) this.evicted++;
      else this.evictedUnjudged++;
    }
    pool.set(entry.fingerprint, entry);
  }

  /** Every kept entry, accepted and not yet judged. */
  private *all(): IterableIterator<Entry> {
    yield* this.entries.values();
    yield* this.unjudged.values();
  }

  /** Distinct credentials seen within `windowMs` (rejected keys are not counted: they are not integrations). */
  active(windowMs: number): number {
    const since = this.now() - windowMs;
    let n = 0;
    for (const e of this.all()) if (e.lastSeen >= since) n++;
    return n;
  }

  private updateGauges(): void {
    const m = this.telemetry?.credentials;
    if (!m) return;
    m.setActive('1h', this.active(HOUR));
    m.setActive('24h', this.active(24 * HOUR));
  }

  /** Every kept credential, most recently seen first, with the rejected summary. */
  list(): InventoryDocument {
    const credentials = [...this.all()].sort((a, b) => b.lastSeen - a.lastSeen).map(toRecord);
    return { version: 1, credentials, rejected: { ...this.rejected, byRoute: { ...this.rejected.byRoute } }, evicted: this.evicted, evictedUnjudged: this.evictedUnjudged };
  }

  /**
   * Whether legacy's latest answer to this credential was a refusal (401/403). Such a key must not
   * be served by new under new's own identity: it stays on legacy, which keeps refusing it. O(1).
   */
  legacyRejected(fingerprint: string): boolean {
    return this.refused.has(fingerprint) || this.entries.get(fingerprint)?.legacyAccepted === false;
  }

  get(fingerprint: string): CredentialRecord | undefined {
    const e = this.entries.get(fingerprint) ?? this.unjudged.get(fingerprint);
    return e === undefined ? undefined : toRecord(e);
  }

  /**
   * The revocation to-do list: credentials legacy still accepts that were seen on a complete route
   * after it completed. `complete` maps route → epoch ms of completion (a plain list means "ever").
   */
  stragglers(complete: ReadonlyMap<string, number> | Iterable<string>): Straggler[] {
    const since = complete instanceof Map ? (complete as ReadonlyMap<string, number>) : new Map([...(complete as Iterable<string>)].map((r) => [r, 0] as const));
    const out: Straggler[] = [];
    for (const e of this.all()) {
      if (e.legacyAccepted === false) continue;
      const routes: string[] = [];
      for (const [route, at] of e.routes) {
        const done = since.get(route);
        if (done !== undefined && at >= done) routes.push(route);
      }
      if (routes.length) out.push({ fingerprint: e.fingerprint, scheme: e.scheme, routes: routes.sort(), lastSeen: e.lastSeen, requests: e.requests, lastClient: e.lastClient, lastUserAgent: e.lastUserAgent });
    }
    return out.sort((a, b) => b.lastSeen - a.lastSeen);
  }

  private schedulePersist(): void {
    if (this.store === undefined || this.timer !== null) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, this.persistDelayMs);
    this.timer.unref();
  }

  /** Writes the inventory to the store now (shutdown, tests). Never throws: a failure is counted and logged. */
  flush(): Promise<void> {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const store = this.store;
    if (store === undefined) return Promise.resolve();
    this.writing = this.writing.then(async () => {
      try {
        await store.setExtra(STORE_KEY, this.list());
      } catch (err) {
        this.persistFailures++;
        this.logger?.warn({ code: (err as { code?: string }).code, failures: this.persistFailures }, 'credential inventory not persisted; it is retried with the next change');
      }
    });
    return this.writing;
  }

  /** Restores what the store holds (after a restart). Unknown or malformed documents are ignored. */
  async load(): Promise<void> {
    if (this.store === undefined) return;
    const snapshot = await this.store.load();
    const doc = snapshot.extra[STORE_KEY] as Partial<InventoryDocument> | undefined;
    if (doc === undefined || doc === null || doc.version !== 1 || !Array.isArray(doc.credentials)) return;
    // Oldest first, so Map order is least-recently-seen first again and the newest survive the bound.
    // A record damaged on disk (a time out of range or not a number) is left out, and a route time
    // too: one bad record made /api/credentials answer 500 for good (written back as it was).
    const records = [...doc.credentials].filter((r) => typeof r?.fingerprint === 'string' && isTime(r.lastSeen) && isTime(r.firstSeen)).sort((a, b) => a.lastSeen - b.lastSeen);
    for (const r of records) {
      const routes = Object.entries(r.routes ?? {}).filter(([, at]) => isTime(at));
      const entry: Entry = { ...r, requests: count(r.requests), routesDropped: count(r.routesDropped), backends: { legacy: count(r.backends?.legacy), new: count(r.backends?.new) }, routes: new Map(routes.slice(0, this.maxRoutes)) };
      this.insert(r.legacyAccepted === null ? this.unjudged : this.entries, entry);
    }
    if (doc.rejected) {
      this.rejected.requests = doc.rejected.requests ?? 0;
      this.rejected.lastSeen = doc.rejected.lastSeen ?? null;
      Object.assign(this.rejected.byRoute, doc.rejected.byRoute ?? {});
    }
    this.evicted += doc.evicted ?? 0;
    this.evictedUnjudged += doc.evictedUnjudged ?? 0;
  }

  async close(): Promise<void> {
    await this.flush();
  }
}

function toRecord(e: Entry): CredentialRecord {
  return { ...e, backends: { ...e.backends }, routes: Object.fromEntries(e.routes) };
}

const CSV_COLUMNS = ['fingerprint', 'scheme', 'first_seen', 'last_seen', 'requests', 'routes', 'served_by_legacy', 'served_by_new', 'last_backend', 'legacy_status', 'legacy_accepted', 'last_client', 'last_user_agent'];

function csvField(value: string): string {
  // A cell a spreadsheet would run as a formula is defused; User-Agent is client-controlled.
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** The inventory as CSV with a header row, for the people who will revoke keys. */
export function inventoryCsv(doc: InventoryDocument): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const c of doc.credentials) {
    lines.push(
      [
        c.fingerprint,
        c.scheme,
        iso(c.firstSeen),
        iso(c.lastSeen),
        String(c.requests),
        Object.keys(c.routes).sort().join(' '),
        String(c.backends.legacy),
        String(c.backends.new),
        c.lastBackend,
        c.legacyStatus === null ? '' : String(c.legacyStatus),
        c.legacyAccepted === null ? '' : String(c.legacyAccepted),
        c.lastClient ?? '',
        c.lastUserAgent ?? '',
      ]
        .map(csvField)
        .join(','),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** A stored count, or 0 when it is not one. */
function count(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : 0;
}
