/** Backends and proxies that a test file starts, each closed after its test (in reverse order). */
import { afterEach } from 'vitest';
import { startBackend, type Handler, type TestBackend } from './backend.js';
import { startProxy, type InProcessProxy } from './proxy.js';

export interface Scope {
  /** Runs `cleanup` after the current test. */
  defer(cleanup: () => Promise<unknown>): void;
  backend(handler?: Handler): Promise<TestBackend>;
  proxy(raw: Record<string, unknown>, options?: Parameters<typeof startProxy>[1]): Promise<InProcessProxy>;
}

/** Call once at the top of a test file. */
export function scoped(): Scope {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });
  return {
    defer: (cleanup) => void cleanups.push(cleanup),
    async backend(handler) {
      const b = await startBackend(handler);
      cleanups.push(() => b.close());
      return b;
    },
    async proxy(raw, options = {}) {
      const p = await startProxy(raw, options);
      cleanups.push(() => p.close(100));
      return p;
    },
  };
}
