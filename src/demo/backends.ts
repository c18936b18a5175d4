/**
 * Two in-process sample backends for `cutover demo`: the legacy v1 and the new v2 API of a fictional
 * company, Northwind Widgets. They serve the same catalogue and orders, and differ the way real
 * migrations differ (see PLANTED_DIFFERENCES), so the proxy has something honest to find.
 *
 * Everything that must be reproducible (catalogue, which ids are affected, which calls fail or are
 * slow) comes from a seed and per-route call counters, never from Math.random, so tests can count.
 * Only the noise fields (meta.generatedAt, meta.requestId) change on every call, on both backends.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CutoverError } from '../errors.js';

export type DemoBackendName = 'legacy' | 'new';

export interface PlantedDifference {
  /** Route name in config/demo.yaml. */
  route: string;
  /** Path in the legacy-shaped body, or `status` / `latency`. */
  field: string;
  /** What the comparison should call it. */
  kind: 'rename' | 'noise' | 'latency' | 'status' | 'value' | 'order';
  /** A few words for the demo's one-line summary. */
  label: string;
  description: string;
}

/** Which calls fail, which are slow, which ids are affected: documentation for the demo and tests. */
export const NEW_GET_ORDER_FAILURE_EVERY = 50;
export const NEW_LIST_DELAY_MS = { min: 40, max: 80 } as const;
export const WIDGET_COUNT = 60;
export const ORDER_IDS = { first: 1001, last: 1400 } as const;

/**
 * The differences planted between v1 and v2. The demo prints these so a newcomer knows what the
 * comparison ought to report; the tests check each one against the running backends.
 */
export const PLANTED_DIFFERENCES: readonly PlantedDifference[] = [
  {
    route: 'get-order',
    field: '$.customer_name',
    kind: 'rename',
    label: 'customer_name→customerName (mapped back)',
    description: 'v2 renamed customer_name to customerName (config/demo.yaml maps it back, so it should not count as a mismatch)',
  },
  {
    route: 'create-order',
    field: '$.customer_name',
    kind: 'rename',
    label: 'same rename, not mapped',
    description: 'POST /orders answers customerName too (not mapped on this route, so it shows as missing + extra)',
  },
  {
    route: '*',
    field: '$.meta.generatedAt, $.meta.requestId',
    kind: 'noise',
    label: 'meta.generatedAt/requestId change per call (noise)',
    description: 'differ on every call on both backends: the baseline replays should classify them as noise',
  },
  {
    route: 'list-widgets',
    field: 'latency',
    kind: 'latency',
    label: 'v2 +40-80 ms',
    description: `v2 list endpoint is ${NEW_LIST_DELAY_MS.min}-${NEW_LIST_DELAY_MS.max} ms slower`,
  },
  {
    route: 'get-order',
    field: 'status',
    kind: 'status',
    label: 'v2 500 on 2%',
    description: `v2 answers 500 on every ${NEW_GET_ORDER_FAILURE_EVERY}th GET /orders/:id call (2%)`,
  },
  {
    route: 'get-widget',
    field: '$.price',
    kind: 'value',
    label: 'v2 price rounding bug',
    description: 'v2 truncates half-cent prices instead of rounding them: every even widget id is 0.01 cheaper on v2 (list-widgets shows it too)',
  },
  {
    route: 'get-widget',
    field: '$.tags',
    kind: 'order',
    label: 'v2 tags reordered',
    description: 'v2 returns tags sorted alphabetically; same set, different order (compare.unordered fixes it)',
  },
];

export interface DemoBackend {
  name: DemoBackendName;
  url: string;
  /** Calls received so far, and how many carried X-Cutover-Shadow: 1. */
  stats(): { requests: number; shadow: number };
  close(): Promise<void>;
}

export interface DemoBackends {
  legacy: DemoBackend;
  new: DemoBackend;
  close(): Promise<void>;
}

export interface DemoBackendOptions {
  host?: string;
  legacyPort?: number;
  newPort?: number;
  /** Seeds the catalogue; both backends always share it. */
  seed?: number;
  /** Checks each call's credential first (src/demo/credentials.ts): a reply refuses it. */
  guard?: DemoGuard;
}

/** A backend's credential check: null lets the call through, else the reply to send instead. */
export type DemoGuard = (backend: DemoBackendName, req: IncomingMessage) => { status: number; body: unknown } | null;

// ---------------------------------------------------------------------------------------------
// The catalogue: deterministic from the seed, shared by both backends.

/** mulberry32: small, fast, good enough to make a catalogue look varied. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(rand: () => number, list: readonly T[]): T => list[Math.floor(rand() * list.length)];
const intIn = (rand: () => number, min: number, max: number): number => min + Math.floor(rand() * (max - min + 1));

const ADJECTIVES = ['Compact', 'Heavy-duty', 'Modular', 'Silent', 'Precision', 'Weatherproof', 'Smart', 'Low-profile', 'Reinforced', 'Eco'];
const NOUNS = ['Flange', 'Bracket', 'Coupler', 'Sprocket', 'Valve', 'Gasket', 'Hinge', 'Actuator', 'Manifold', 'Bearing'];
const MATERIALS = ['steel', 'aluminium', 'brass', 'nylon', 'titanium', 'polycarbonate'];
const COLORS = ['graphite', 'signal-red', 'ocean-blue', 'sand', 'white', 'olive'];
const TAGS = ['outdoor', 'industrial', 'bestseller', 'new', 'eco', 'spare-part', 'heavy', 'marine', 'food-safe', 'clearance', 'atex'];
const WAREHOUSES = ['AMS-1', 'FRA-2', 'LYS-1', 'WAW-3'];
const SUPPLIERS = [
  { id: 'sup-11', name: 'Fabrika Kovina d.o.o.', country: 'SI' },
  { id: 'sup-23', name: 'Nordic Precision AB', country: 'SE' },
  { id: 'sup-37', name: 'Oficina Técnica Ribeiro', country: 'PT' },
  { id: 'sup-42', name: 'Hanse Teile GmbH', country: 'DE' },
];
const CERTIFICATIONS = ['CE', 'RoHS', 'REACH', 'ISO 9001', 'UKCA'];
const SENTENCES = [
  'Machined to tight tolerances and finished by hand before it leaves the plant.',
  'Fits every mounting pattern of the previous generation without adapters.',
  'Rated for continuous duty between -30 and +80 degrees Celsius.',
  'Ships with a printed torque chart and a spare set of fasteners.',
  'Designed with field technicians who asked for one-tool servicing.',
  'Surface treated against salt spray for coastal installations.',
  'Each batch is traceable to its raw material certificate.',
  'Replaces three legacy part numbers, which are discontinued.',
];
const STATUSES = ['received', 'picking', 'shipped', 'delivered', 'invoiced'];
const PLACES = [
  { street: 'Keizersgracht', city: 'Amsterdam', country: 'NL', postcode: '1015' },
  { street: 'Hauptstraße', city: 'Frankfurt am Main', country: 'DE', postcode: '60311' },
  { street: 'Rue de la République', city: 'Lyon', country: 'FR', postcode: '69002' },
  { street: 'Via Roma', city: 'Milano', country: 'IT', postcode: '20121' },
  { street: 'ul. Marszałkowska', city: 'Warszawa', country: 'PL', postcode: '00-624' },
];
const PAYMENT_TERMS = ['net-30', 'net-60', 'prepaid', 'net-14'];

/** The demo's customers; traffic.ts uses the same ids as x-client-id. */
export const DEMO_CUSTOMERS: readonly { id: string; name: string }[] = [
  { id: 'acme', name: 'Acme Logistics GmbH' },
  { id: 'globex', name: 'Globex Corporation' },
  { id: 'initech', name: 'Initech Facilities' },
  { id: 'umbrella', name: 'Umbrella Maintenance BV' },
  { id: 'hooli', name: 'Hooli Data Centres' },
  { id: 'stark', name: 'Stark Industrial Supply' },
  { id: 'wayne', name: 'Wayne Enterprises Fleet' },
  { id: 'wonka', name: 'Wonka Food Machinery' },
  { id: 'tyrell', name: 'Tyrell Robotics' },
  { id: 'cyberdyne', name: 'Cyberdyne Field Services' },
  { id: 'soylent', name: 'Soylent Packaging' },
  { id: 'oscorp', name: 'Oscorp Labs' },
  { id: 'vandelay', name: 'Vandelay Import Export' },
  { id: 'gringotts', name: 'Gringotts Facility Mgmt' },
  { id: 'duff', name: 'Duff Brewing Co.' },
  { id: 'massive', name: 'Massive Dynamic' },
  { id: 'aperture', name: 'Aperture Science Ops' },
  { id: 'monarch', name: 'Monarch Solutions' },
  { id: 'dunder', name: 'Dunder Mifflin Paper' },
  { id: 'pied-piper', name: 'Pied Piper Hosting' },
];

interface Widget {
  id: number;
  sku: string;
  name: string;
  description: string;
  /** Price in tenths of a cent, so rounding is exact integer arithmetic. */
  priceMills: number;
  currency: 'EUR';
  tags: string[];
  material: string;
  dimensions: { width_mm: number; height_mm: number; depth_mm: number; weight_g: number };
  stock: { warehouse: string; quantity: number; reorder_level: number };
  supplier: { id: string; name: string; country: string };
  variants: { sku: string; color: string; price_delta: number }[];
  specifications: { max_torque_nm: number; max_pressure_bar: number; operating_temp_c: { min: number; max: number }; ip_rating: string };
  certifications: string[];
  images: string[];
}

interface OrderLine {
  line: number;
  widget_id: number;
  sku: string;
  description: string;
  quantity: number;
  unit_price: number;
}

interface Order {
  id: string;
  customer_id: string;
  customer_name: string;
  status: string;
  lines: OrderLine[];
  total: number;
  currency: 'EUR';
  shipping: { street: string; city: string; postcode: string; country: string; carrier: string; tracking: string | null };
  history: { status: string; at: string }[];
  billing: BillingInfo;
  notes: string;
}

interface BillingInfo {
  po_number: string;
  payment_terms: string;
  vat_id: string;
  contact: { name: string; email: string; phone: string };
}

/** The billing details a customer has on file; orders carry a copy. */
function billingFor(customerId: string, poNumber: string): BillingInfo {
  const n = [...customerId].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7);
  const place = PLACES[n % PLACES.length];
  return {
    po_number: poNumber,
    payment_terms: PAYMENT_TERMS[n % PAYMENT_TERMS.length],
    vat_id: `${place.country}${String(n % 1_000_000_000).padStart(9, '0')}`,
    contact: { name: 'Accounts Payable', email: `ap@${customerId}.example`, phone: `+${31 + (n % 20)} 20 ${String(n % 10_000_000).padStart(7, '0')}` },
  };
}

interface Catalogue {
  widgets: Widget[];
  order(id: number): Order | undefined;
}

/** Legacy rounding: half a cent rounds up. */
function roundPrice(mills: number): number {
  return Math.round(mills / 10) / 100;
}

/** The planted bug: v2 truncates to whole cents. */
function truncatePrice(mills: number): number {
  return Math.floor(mills / 10) / 100;
}

function buildCatalogue(seed: number): Catalogue {
  const rand = prng(seed);
  const widgets: Widget[] = [];
  for (let id = 1; id <= WIDGET_COUNT; id++) {
    const name = `${pick(rand, ADJECTIVES)} ${pick(rand, NOUNS)} ${String.fromCharCode(65 + (id % 26))}${id}`;
    const sku = `NW-${String(id).padStart(4, '0')}`;
    const tagCount = intIn(rand, 3, 5);
    const tags: string[] = [];
    while (tags.length < tagCount) {
      const tag = pick(rand, TAGS);
      if (!tags.includes(tag)) tags.push(tag);
    }
    // Even ids carry a half-cent in their price: that is where v2's rounding bug shows.
    const cents = intIn(rand, 50, 8_999);
    const sentences = SENTENCES.filter(() => rand() < 0.55).slice(0, 5);
    widgets.push({
      id,
      sku,
      name,
      description: `${name} in ${pick(rand, MATERIALS)}. ${sentences.join(' ')}`,
      priceMills: cents * 10 + (id % 2 === 0 ? 5 : intIn(rand, 0, 4)),
      currency: 'EUR',
      tags,
      material: pick(rand, MATERIALS),
      dimensions: { width_mm: intIn(rand, 10, 400), height_mm: intIn(rand, 10, 400), depth_mm: intIn(rand, 5, 200), weight_g: intIn(rand, 20, 12_000) },
      stock: { warehouse: pick(rand, WAREHOUSES), quantity: intIn(rand, 0, 900), reorder_level: intIn(rand, 5, 50) },
      supplier: pick(rand, SUPPLIERS),
      variants: Array.from({ length: intIn(rand, 2, 4) }, (_, i) => ({
        sku: `${sku}-${i + 1}`,
        color: COLORS[(id + i) % COLORS.length],
        price_delta: intIn(rand, 0, 8) * 0.5,
      })),
      specifications: {
        max_torque_nm: intIn(rand, 2, 400),
        max_pressure_bar: intIn(rand, 1, 250),
        operating_temp_c: { min: -intIn(rand, 0, 40), max: intIn(rand, 40, 120) },
        ip_rating: pick(rand, ['IP54', 'IP65', 'IP67', 'IP68']),
      },
      certifications: CERTIFICATIONS.filter(() => rand() < 0.6),
      images: Array.from({ length: intIn(rand, 1, 3) }, (_, i) => `https://cdn.northwind-widgets.example/img/${sku.toLowerCase()}-${i + 1}.jpg`),
    });
  }

  // Orders are derived from their id and the seed, so any replica (and both backends) agree.
  const order = (id: number): Order | undefined => {
    if (!Number.isInteger(id) || id < ORDER_IDS.first || id > ORDER_IDS.last) return undefined;
    const r = prng(seed * 7919 + id);
    const customer = DEMO_CUSTOMERS[id % DEMO_CUSTOMERS.length];
    const lines: OrderLine[] = Array.from({ length: intIn(r, 2, 6) }, (_, i) => {
      const w = widgets[intIn(r, 0, widgets.length - 1)];
      return { line: i + 1, widget_id: w.id, sku: w.sku, description: w.name, quantity: intIn(r, 1, 40), unit_price: roundPrice(w.priceMills) };
    });
    const statusIndex = intIn(r, 0, STATUSES.length - 1);
    const place = PLACES[(id * 7) % PLACES.length];
    const day = new Date(Date.UTC(2024, 0, 1) + (id - ORDER_IDS.first) * 6 * 3_600_000);
    return {
      id: `ord-${id}`,
      customer_id: customer.id,
      customer_name: customer.name,
      status: STATUSES[statusIndex],
      lines,
      total: Math.round(lines.reduce((sum, l) => sum + l.quantity * l.unit_price * 100, 0)) / 100,
      currency: 'EUR',
      shipping: {
        street: `${place.street} ${intIn(r, 1, 220)}`,
        city: place.city,
        postcode: place.postcode,
        country: place.country,
        carrier: pick(r, ['DHL', 'DPD', 'GLS', 'PostNL']),
        tracking: statusIndex >= 2 ? `TRK${(id * 7_654_321).toString(36).toUpperCase()}` : null,
      },
      history: STATUSES.slice(0, statusIndex + 1).map((status, i) => ({ status, at: new Date(day.getTime() + i * 86_400_000).toISOString() })),
      billing: billingFor(customer.id, `PO-${2024_0000 + id}`),
      notes: id % 3 === 0 ? 'Deliver to loading dock B between 07:00 and 15:00; call the site manager on arrival.' : '',
    };
  };
  return { widgets, order };
}

// ---------------------------------------------------------------------------------------------
// The two APIs.

interface Reply {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  delayMs?: number;
}

class Handler {
  private readonly prefix: string;
  private lastGeneratedAt = 0;
  private getOrderCalls = 0;
  private listCalls = 0;
  requests = 0;
  shadow = 0;

  constructor(
    private readonly name: DemoBackendName,
    private readonly catalogue: Catalogue,
  ) {
    this.prefix = name === 'legacy' ? '/v1' : '/v2';
  }

  private meta(): { generatedAt: string; requestId: string } {
    // Strictly increasing per backend, so two calls never carry the same timestamp.
    this.lastGeneratedAt = Math.max(Date.now(), this.lastGeneratedAt + 1);
    return { generatedAt: new Date(this.lastGeneratedAt).toISOString(), requestId: randomUUID() };
  }

  /** The planted price bug and tag order of this backend, the same in a widget and its summary. */
  private priceAndTags(w: Widget): { price: number; tags: string[] } {
    return this.name === 'new' ? { price: truncatePrice(w.priceMills), tags: [...w.tags].sort() } : { price: roundPrice(w.priceMills), tags: w.tags };
  }

  private widgetBody(w: Widget): Record<string, unknown> {
    const { price, tags } = this.priceAndTags(w);
    return {
      id: w.id,
      sku: w.sku,
      name: w.name,
      description: w.description,
      price,
      currency: w.currency,
      tags,
      material: w.material,
      dimensions: w.dimensions,
      stock: w.stock,
      supplier: w.supplier,
      variants: w.variants,
      specifications: w.specifications,
      certifications: w.certifications,
      images: w.images,
    };
  }

  private widgetSummary(w: Widget): Record<string, unknown> {
    const { price, tags } = this.priceAndTags(w);
    return {
      id: w.id,
      sku: w.sku,
      name: w.name,
      price,
      currency: w.currency,
      tags,
      in_stock: w.stock.quantity > 0,
    };
  }

  /** The order as this backend spells it: v2 renamed customer_name. */
  private orderBody(o: Order): Record<string, unknown> {
    if (this.name === 'legacy') return { ...o };
    const { customer_name, ...rest } = o;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(rest)) {
      out[k] = v;
      if (k === 'customer_id') out.customerName = customer_name;
    }
    return out;
  }

  handle(method: string, url: URL, body: Buffer, shadow: boolean): Reply {
    this.requests++;
    if (shadow) this.shadow++;
    const path = url.pathname;
    if (path === '/healthz') return { status: 200, body: { status: 'ok', backend: this.name } };
    if (!path.startsWith(`${this.prefix}/`)) return notFound(`no such API version here; this is the ${this.name} backend, paths start with ${this.prefix}/`);
    const rest = path.slice(this.prefix.length);
    const isRead = method === 'GET' || method === 'HEAD';

    if (rest === '/widgets' && isRead) {
      const limit = clampInt(url.searchParams.get('limit'), 10, 1, 20);
      const offset = clampInt(url.searchParams.get('offset'), 0, 0, WIDGET_COUNT);
      const items = this.catalogue.widgets.slice(offset, offset + limit).map((w) => this.widgetSummary(w));
      this.listCalls++;
      const delayMs = this.name === 'new' ? NEW_LIST_DELAY_MS.min + ((this.listCalls * 17) % (NEW_LIST_DELAY_MS.max - NEW_LIST_DELAY_MS.min + 1)) : 0;
      return { status: 200, delayMs, body: { items, total: WIDGET_COUNT, limit, offset, meta: this.meta() } };
    }

    let m = /^\/widgets\/([^/]+)$/.exec(rest);
    if (m && isRead) {
      const w = this.catalogue.widgets[Number(m[1]) - 1];
      if (!w || String(w.id) !== m[1]) return notFound(`widget ${m[1]} does not exist`);
      return { status: 200, body: { ...this.widgetBody(w), meta: this.meta() } };
    }

    m = /^\/orders\/([^/]+)$/.exec(rest);
    if (m && isRead) {
      if (this.name === 'new') {
        this.getOrderCalls++;
        if (this.getOrderCalls % NEW_GET_ORDER_FAILURE_EVERY === 0) {
          return { status: 500, body: { error: 'internal_error', message: 'upstream inventory service timed out', meta: this.meta() } };
        }
      }
      const order = this.catalogue.order(Number(/^ord-(\d+)$/.exec(m[1])?.[1] ?? m[1]));
      if (!order) return notFound(`order ${m[1]} does not exist`);
      return { status: 200, body: { ...this.orderBody(order), meta: this.meta() } };
    }

    if (rest === '/orders' && method === 'POST') return this.createOrder(body);
    if (rest === '/orders' || rest === '/widgets' || /^\/(widgets|orders)\/[^/]+$/.test(rest)) {
      return { status: 405, body: { error: 'method_not_allowed', message: `${method} is not allowed on ${path}` } };
    }
    return notFound(`no route for ${path}`);
  }

  private createOrder(raw: Buffer): Reply {
    let input: unknown;
    try {
      input = JSON.parse(raw.toString('utf8'));
    } catch {
      return badRequest('body must be JSON');
    }
    if (typeof input !== 'object' || input === null) return badRequest('body must be a JSON object');
    const req = input as Record<string, unknown>;
    // v2 accepts both spellings during the migration; v1 only knows its own.
    const customerName = this.name === 'new' ? (req.customerName ?? req.customer_name) : req.customer_name;
    if (typeof customerName !== 'string' || !customerName) return badRequest('customer_name is required');
    if (!Array.isArray(req.lines) || req.lines.length === 0 || req.lines.length > 20) return badRequest('lines must hold 1 to 20 items');
    const lines: OrderLine[] = [];
    for (const [i, line] of (req.lines as unknown[]).entries()) {
      const l = line as { widget_id?: unknown; quantity?: unknown } | null;
      const w = typeof l?.widget_id === 'number' ? this.catalogue.widgets[l.widget_id - 1] : undefined;
      const qty = l?.quantity;
      if (!w) return badRequest(`lines[${i}].widget_id does not name a widget`);
      if (typeof qty !== 'number' || !Number.isInteger(qty) || qty < 1 || qty > 1000) return badRequest(`lines[${i}].quantity must be 1 to 1000`);
      lines.push({ line: i + 1, widget_id: w.id, sku: w.sku, description: w.name, quantity: qty, unit_price: roundPrice(w.priceMills) });
    }
    // The id is derived from the request, so the legacy answer and its mirror carry the same one.
    const digest = createHash('sha256').update(raw).digest();
    const id = `ord-${100_000 + (digest.readUInt32BE(0) % 900_000)}`;
    const order: Order = {
      id,
      customer_id: typeof req.customer_id === 'string' ? req.customer_id : 'unknown',
      customer_name: customerName,
      status: 'received',
      lines,
      total: Math.round(lines.reduce((sum, l) => sum + l.quantity * l.unit_price * 100, 0)) / 100,
      currency: 'EUR',
      shipping: { ...shippingFor(req.shipping), carrier: 'DHL', tracking: null },
      history: [],
      billing: billingFor(typeof req.customer_id === 'string' ? req.customer_id : 'unknown', typeof req.po_number === 'string' ? req.po_number.slice(0, 40) : ''),
      notes: typeof req.notes === 'string' ? req.notes.slice(0, 500) : '',
    };
    return { status: 201, headers: { location: `${this.prefix}/orders/${id}` }, body: { ...this.orderBody(order), meta: this.meta() } };
  }
}

function shippingFor(input: unknown): { street: string; city: string; postcode: string; country: string } {
  const s = (typeof input === 'object' && input !== null ? input : {}) as Record<string, unknown>;
  const text = (v: unknown): string => (typeof v === 'string' ? v.slice(0, 200) : '');
  return { street: text(s.street), city: text(s.city), postcode: text(s.postcode), country: text(s.country) };
}

function clampInt(text: string | null, fallback: number, min: number, max: number): number {
  const n = text === null ? NaN : Number.parseInt(text, 10);
  return Number.isFinite(n) ? Math.min(max, Math.max(min, n)) : fallback;
}

function notFound(message: string): Reply {
  return { status: 404, body: { error: 'not_found', message } };
}

function badRequest(message: string): Reply {
  return { status: 400, body: { error: 'bad_request', message } };
}

const MAX_REQUEST_BODY = 64 * 1024;

function startOne(name: DemoBackendName, host: string, port: number, catalogue: Catalogue, guard?: DemoGuard): Promise<DemoBackend> {
  const handler = new Handler(name, catalogue);
  const pendingDelays = new Set<NodeJS.Timeout>();

  const send = (req: IncomingMessage, res: ServerResponse, reply: Reply): void => {
    const payload = Buffer.from(JSON.stringify(reply.body));
    res.writeHead(reply.status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': payload.length,
      ...reply.headers,
    });
    res.end(req.method === 'HEAD' ? undefined : payload);
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_REQUEST_BODY) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('error', () => res.destroy());
    req.on('end', () => {
      if (tooLarge) {
        send(req, res, { status: 413, body: { error: 'payload_too_large', message: `bodies are limited to ${MAX_REQUEST_BODY} bytes` } });
        return;
      }
      const refused = guard?.(name, req);
      if (refused) {
        send(req, res, refused);
        return;
      }
      const url = new URL(req.url ?? '/', 'http://demo.invalid');
      const reply = handler.handle(req.method ?? 'GET', url, Buffer.concat(chunks), req.headers['x-cutover-shadow'] === '1');
      if (!reply.delayMs) {
        send(req, res, reply);
        return;
      }
      const timer = setTimeout(() => {
        pendingDelays.delete(timer);
        send(req, res, reply);
      }, reply.delayMs);
      pendingDelays.add(timer);
    });
  });
  // Demo backends are quick; keep idle sockets short so close() never waits long.
  server.keepAliveTimeout = 5_000;

  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') {
        reject(new CutoverError('CUTOVER_DEMO_PORT_IN_USE', `Port ${port} on ${host} is already in use, so the demo ${name} backend cannot start; stop what uses it, or pass --config with a copy of config/demo.yaml that uses other ports.`, { cause: err }));
      } else reject(err);
    });
    server.listen(port, host, () => {
      const { port: actual } = server.address() as AddressInfo;
      const urlHost = host.includes(':') ? `[${host}]` : host;
      let closing: Promise<void> | undefined;
      resolve({
        name,
        url: `http://${urlHost}:${actual}`,
        stats: () => ({ requests: handler.requests, shadow: handler.shadow }),
        close: () => {
          closing ??= new Promise<void>((done) => {
            for (const timer of pendingDelays) clearTimeout(timer);
            pendingDelays.clear();
            server.close(() => done());
            server.closeAllConnections();
          });
          return closing;
        },
      });
    });
  });
}

/** Starts the legacy (v1) and new (v2) demo backends; close() stops both. */
export async function startDemoBackends(options: DemoBackendOptions = {}): Promise<DemoBackends> {
  const { host = '127.0.0.1', legacyPort = 0, newPort = 0, seed = 20240611, guard } = options;
  const catalogue = buildCatalogue(seed);
  const legacy = await startOne('legacy', host, legacyPort, catalogue, guard);
  let candidate: DemoBackend;
  try {
    candidate = await startOne('new', host, newPort, catalogue, guard);
  } catch (err) {
    await legacy.close();
    throw err;
  }
  return {
    legacy,
    new: candidate,
    close: async () => {
      await Promise.all([legacy.close(), candidate.close()]);
    },
  };
}
