/**
 * State stores. `MemoryStore` keeps the state in this process only (tests, and `cutover.state.store:
 * memory`); the file store (embedded default) and, later, the Redis store build on the same shape.
 * Every write goes through `updateRoute` / `updateGlobal` / `setExtra`, so an implementation that
 * persists can make each write atomic.
 */
import type { GlobalState, RouteState, StateStore, StoreSnapshot, UnsavedOptions } from './types.js';

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

  /**
   * Keeps `next`, which `persist` could not write but is applied anyway (UnsavedOptions), where a
   * restart finds it: says where, or null when it could not (the memory store has nowhere).
   */
  protected async rescue(_next: StoreSnapshot): Promise<string | null> {
    return null;
  }

  private readonly listeners: ((state: StoreSnapshot) => void)[] = [];

  /** Calls `listener` after every committed change (the proxy applies the live weights from it). */
  onChange(listener: (state: StoreSnapshot) => void): void {
    this.listeners.push(listener);
  }

  /** Writes one after another: each change reads the state the previous one left (no lost update). */
  private tail: Promise<unknown> = Promise.resolve();

  private commit<T>(make: (state: StoreSnapshot) => { next: StoreSnapshot; result: T }, unsaved: UnsavedOptions<T> = {}): Promise<T> {
    const run = this.tail.then(async () => {
      const { next, result } = make(this.state);
      next.version = this.state.version + 1;
      try {
        await this.persist(next);
      } catch (err) {
        if (unsaved.keepUnsaved === undefined || !unsaved.keepUnsaved(result)) throw err;
        // Kept where a restart finds it whether or not the caller asks where (the controller's own
        // checks do not): an optional call would skip evaluating its arguments.
        const keptIn = await this.rescue(next);
        unsaved.onUnsaved?.(err, keptIn);
      }
      this.state = next;
      for (const listener of this.listeners) listener(next);
      return result;
    });
    // A failed write must not wedge the writes queued behind it; its caller still sees the error.
    this.tail = run.catch(() => undefined);
    return run;
  }

  updateRoute(route: string, seed: () => RouteState, change: (current: RouteState) => RouteState, options: UnsavedOptions<RouteState> = {}): Promise<RouteState> {
    return this.commit((state) => {
      const updated = change(state.routes[route] ?? seed());
      return { next: { ...state, routes: { ...state.routes, [route]: updated } }, result: updated };
    }, options);
  }

  updateGlobal(change: (current: GlobalState) => GlobalState, options: UnsavedOptions<GlobalState> = {}): Promise<GlobalState> {
    return this.commit((state) => {
      const updated = change(state.global);
      return { next: { ...state, global: updated }, result: updated };
    }, options);
  }

  setExtra(key: string, value: unknown): Promise<void> {
    return this.commit((state) => ({ next: { ...state, extra: { ...state.extra, [key]: value } }, result: undefined }));
  }

  up(): boolean {
    return true;
  }

  async close(): Promise<void> {}
}
