/**
 * State stores. `MemoryStore` keeps the state in this process only (tests, and `cutover.state.store:
 * memory`); the file store (embedded default) and, later, the Redis store build on the same shape.
 * Every write goes through `updateRoute` / `updateGlobal` / `setExtra`, so an implementation that
 * persists can make each write atomic.
 */
import type { GlobalState, RouteState, StateStore, StoreSnapshot } from './types.js';

export function freshGlobal(): GlobalState {
  return { bypass: false, changedAt: 0, changedBy: '', reason: '' };
}

export function freshSnapshot(): StoreSnapshot {
  return { version: 0, global: freshGlobal(), routes: {}, extra: {} };
}

export class MemoryStore implements StateStore {
  readonly kind: 'memory' | 'file' | 'redis' = 'memory';
  protected state: StoreSnapshot;

  constructor(initial: StoreSnapshot = freshSnapshot()) {
    this.state = initial;
  }

  async load(): Promise<StoreSnapshot> {
    return this.state;
  }

  snapshot(): StoreSnapshot {
    return this.state;
  }

  /** Persists `next` (the memory store has nowhere to put it). Subclasses write it out atomically. */
  protected async persist(_next: StoreSnapshot): Promise<void> {}

  private async commit(next: StoreSnapshot): Promise<void> {
    next.version = this.state.version + 1;
    await this.persist(next);
    this.state = next;
  }

  async updateRoute(route: string, seed: () => RouteState, change: (current: RouteState) => RouteState): Promise<RouteState> {
    const current = this.state.routes[route] ?? seed();
    const updated = change(current);
    await this.commit({ ...this.state, routes: { ...this.state.routes, [route]: updated } });
    return updated;
  }

  async updateGlobal(change: (current: GlobalState) => GlobalState): Promise<GlobalState> {
    const updated = change(this.state.global);
    await this.commit({ ...this.state, global: updated });
    return updated;
  }

  async setExtra(key: string, value: unknown): Promise<void> {
    await this.commit({ ...this.state, extra: { ...this.state.extra, [key]: value } });
  }

  up(): boolean {
    return true;
  }

  async close(): Promise<void> {}
}
