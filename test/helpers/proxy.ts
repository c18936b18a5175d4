/** Starts the proxy for tests: in-process (startApp) or as a real child process (the CLI). */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { stringify } from 'yaml';
import { validateConfig, loadTransforms } from '../../src/config/load.js';
import { startApp, type App, type AppOptions } from '../../src/app.js';
import { createLogger } from '../../src/telemetry/logger.js';
import { TUNING_ENV } from '../../src/cli/heap.js';

export const CLI = join(import.meta.dirname, '../../dist/cli/main.js');

/** A config object with loopback listeners on port 0 and the given backends. */
export function baseConfig(legacyUrl: string, newUrl: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    backends: { legacy: { url: legacyUrl }, new: { url: newUrl } },
    log: { level: 'warn' },
    ...extra,
  };
}

export interface InProcessProxy extends App {
  logs: string[];
}

export async function startProxy(raw: Record<string, unknown>, options: AppOptions = {}): Promise<InProcessProxy> {
  // In-process proxies resolve the state file against the working directory, shared by every test
  // file: unless a test names a store, its weights live in memory (the controller writes them).
  const cutover = (raw.cutover ?? {}) as Record<string, unknown>;
  const withStore = cutover.state === undefined ? { ...raw, cutover: { ...cutover, state: { store: 'memory' } } } : raw;
  // Tests share one busy event loop (vitest, the test's own backends): load shedding would skip
  // mirrors at random. Tests of shedding turn it on themselves.
  const shadow = { shedAt: { eventLoopDelay: 0, utilisation: 1 }, ...((raw.shadow as Record<string, unknown> | undefined) ?? {}) };
  const config = validateConfig({ ...withStore, shadow }, 'test config');
  await loadTransforms(config);
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const app = await startApp(config, { logger: createLogger(config.log.level, sink), defaultMetrics: false, ...options });
  return Object.assign(app, { logs });
}

export interface ChildProxy {
  child: ChildProcess;
  /** The config file it runs with. */
  file: string;
  dataUrl: string;
  adminUrl: string;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
  stop(): Promise<number | null>;
}

export function writeConfig(raw: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'cutover-test-'));
  const file = join(dir, 'cutover.yaml');
  writeFileSync(file, stringify(raw));
  return file;
}

/** This process's environment without the variables cutover tunes itself (so a restart is what sets them), then `extra`. */
export function untunedEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !(name in TUNING_ENV)));
  return { ...env, ...extra };
}

/** Runs `cutover run` in its own process (with `nodeArgs` before the script) and waits for it to print its URLs. */
export async function spawnProxy(raw: Record<string, unknown>, { nodeArgs = [], env }: { nodeArgs?: string[]; env?: NodeJS.ProcessEnv } = {}): Promise<ChildProxy> {
  const file = writeConfig(raw);
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'run', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (err += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const urls = await new Promise<{ dataUrl: string; adminUrl: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`proxy did not start: ${err}`)), 10_000);
    const check = (): void => {
      const m = /cutover: proxy (\S+)\s+admin (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ dataUrl: m[1], adminUrl: m[2] });
      }
    };
    child.stdout!.on('data', check);
    void exited.then((code) => reject(new Error(`proxy exited with ${code}: ${err}`)));
  });
  return {
    child,
    file,
    ...urls,
    stdout: () => out,
    stderr: () => err,
    exited,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}
