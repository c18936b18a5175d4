/**
 * The running config as one immutable, versioned snapshot: the validated config (backends, limits,
 * rules compiled once) and the route table built from it. The request path reads `current()` once,
 * at its start, and uses that snapshot to the end, so a reload never changes a request halfway;
 * a reload builds the next snapshot aside and swaps it in with one assignment.
 *
 * Live weights are not config: they come from the state store, by route name, and are applied to
 * every table that goes live (`routes[].weight` only seeds a route the store does not know).
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
  /** Epoch ms when this snapshot went live. */
  readonly loadedAt: number;
}

export class Snapshots {
  private live: Snapshot;

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
    this.live = next;
    this.telemetry.setConfigInfo(next.hash);
  }

  /** The state store changed: the live table takes its weights. */
  applyWeights(state: Pick<StoreSnapshot, 'routes'>): void {
    this.live.routes.applyWeights(state);
  }

  private build(config: Config, state: Pick<StoreSnapshot, 'routes'>, version: number): Snapshot {
    const routes = new RouteTable(config.routes, config.defaults, this.telemetry);
    routes.applyWeights(state);
    return Object.freeze({ version, hash: config.hash, config, routes, loadedAt: Date.now() });
  }
}
