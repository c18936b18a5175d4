/**
 * The running config as one immutable, versioned snapshot: the validated config (backends, limits,
 * rules compiled once) and the route table built from it. The request path reads `current()` once,
 * at its start, and uses that snapshot to the end, so a reload never changes a request halfway;
 * a reload builds the next snapshot aside and swaps it in with one assignment.
 *
 * Live weights are not config: they come from the state store, by route name, and are applied to
 * every table that goes live (`routes[].weight` only seeds a route the store does not know).
 * The emergency bypass overrides them: while it is on, every table goes live at weight 0.
 */
import type { Config } from '../config/load.js';
import type { StoreSnapshot } from '../cutover/types.js';
import { RouteTable } from '../routing/table.js';
import type { Telemetry } from '../telemetry/metrics.js';

export interface Snapshot {
  /** 1 for the config loaded at start, +1 for every successful reload. */
  readonly version: number;
  /** `config.hash`: equal content, equal hash. */
  readonly hash: string;
  readonly config: Config;
  readonly routes: RouteTable;
}

export class Snapshots {
  private live: Snapshot;
  /** The controller's bypass switch (in-process first, so it holds even when the store is wedged). */
  private bypassed: () => boolean = () => false;

  constructor(
    config: Config,
    private readonly telemetry: Telemetry,
    state: Pick<StoreSnapshot, 'routes'>,
  ) {
    this.live = this.build(config, state, 1);
    telemetry.setConfigInfo(config.hash);
  }

  /** The snapshot a request starts with (and keeps until it ends). */
  current(): Snapshot {
    return this.live;
  }

  /** Builds a snapshot for `config` without putting it live (a reload checks it first). */
  prepare(config: Config, state: Pick<StoreSnapshot, 'routes'>): Snapshot {
    return this.build(config, state, this.live.version + 1);
  }

  /** Puts a prepared snapshot live; requests already running finish on the one they started with. */
  swap(next: Snapshot): void {
    const kept = new Set(next.routes.routes.map((r) => r.name));
    for (const r of this.live.routes.routes) if (!kept.has(r.name)) this.telemetry.forgetRoute(r.name);
    this.live = next;
    this.telemetry.setConfigInfo(next.hash);
  }

  /** The state store changed: the live table takes its weights. */
  applyWeights(state: Pick<StoreSnapshot, 'routes'>): void {
    weigh(this.live.routes, state, this.bypassed());
  }

  /** From now on the weights applied are 0 whenever `bypassed()` says so; reapplies them at once. */
  followBypass(bypassed: () => boolean, state: Pick<StoreSnapshot, 'routes'>): void {
    this.bypassed = bypassed;
    this.applyWeights(state);
  }

  private build(config: Config, state: Pick<StoreSnapshot, 'routes'>, version: number): Snapshot {
    const routes = new RouteTable(config.routes, config.defaults, this.telemetry);
    weigh(routes, state, this.bypassed());
    return Object.freeze({ version, hash: config.hash, config, routes });
  }
}

/** One place decides a table's live weights: 0 for every route under bypass, else the store's. */
function weigh(table: RouteTable, state: Pick<StoreSnapshot, 'routes'>, bypass: boolean): void {
  if (bypass) for (const route of table.routes) route.setWeight(0);
  else table.applyWeights(state);
}
