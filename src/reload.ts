/**
 * Hot reload: SIGHUP, `POST /api/reload` and `cutover reload` all land here. The config file is
 * loaded and validated again; a bad file, or one that changes a key only a restart applies, keeps
 * the running snapshot and says why (the answer, a log line, `cutover_config_reloads_total`). A good
 * one becomes the next snapshot: the analysis and the shadow samplers follow it by route name, the
 * state store's weights are applied to it before it goes live, and requests already running finish
 * on the snapshot they started with.
 */
import type { Analysis } from './analysis/analysis.js';
import type { Config } from './config/load.js';
import { restartOnlyChanges } from './config/restart.js';
import type { StateStore } from './cutover/types.js';
import { ConfigError, CutoverError } from './errors.js';
import type { Snapshots } from './proxy/snapshot.js';
import type { ShadowEngine } from './shadow/engine.js';
import type { Logger } from './telemetry/logger.js';
import type { Telemetry } from './telemetry/metrics.js';

export type ReloadOutcome =
  | { ok: true; changed: boolean; version: number; hash: string; routes: string[] }
  | { ok: false; code: 'CONFIG_INVALID' | 'CONFIG_NEEDS_RESTART' | 'RELOAD_UNAVAILABLE'; detail: string; problems: string[]; version: number; hash: string };

export interface ReloaderDeps {
  snapshots: Snapshots;
  /** Loads the config again from where it came from; undefined when it came from no file. */
  source: (() => Promise<Config>) | undefined;
  store: StateStore;
  analysis: Analysis;
  shadow: ShadowEngine;
  telemetry: Telemetry;
  logger: Logger;
}

export class Reloader {
  /** Reloads run one after another: two at once would race for the swap. */
  private tail: Promise<unknown> = Promise.resolve();
  private readonly followers: ((config: Config) => void)[] = [];
  private readonly checks: ((config: Config) => void)[] = [];

  constructor(private readonly deps: ReloaderDeps) {}

  /** Calls `follow` with every config that goes live (e.g. the credential policy's `reload`). */
  /**
   * Checks what can still fail in a follower before anything is swapped (a secret a follower reads):
   * a throw refuses the reload with the running config untouched.
   */
  onCheck(check: (config: Config) => void): void {
    this.checks.push(check);
  }

  onSwap(follow: (config: Config) => void): void {
    this.followers.push(follow);
  }

  /** Loads the config again; `trigger` (`SIGHUP`, `api:<who>`) is logged. Never throws. */
  reload(trigger: string): Promise<ReloadOutcome> {
    const run = this.tail.then(() => this.run(trigger));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private refuse(trigger: string, code: 'CONFIG_INVALID' | 'CONFIG_NEEDS_RESTART' | 'RELOAD_UNAVAILABLE', detail: string, problems: string[]): ReloadOutcome {
    const { snapshots, telemetry, logger } = this.deps;
    const live = snapshots.current();
    telemetry.configReload('error');
    logger.error({ trigger, code, problems, version: live.version, hash: live.hash }, `config reload refused: ${detail}`);
    return { ok: false, code, detail, problems, version: live.version, hash: live.hash };
  }

  private async run(trigger: string): Promise<ReloadOutcome> {
    const { snapshots, source, store, analysis, shadow, telemetry, logger } = this.deps;
    const running = snapshots.current();
    if (source === undefined) {
      return this.refuse(trigger, 'RELOAD_UNAVAILABLE', 'this proxy was started without a config file, so there is nothing to reload; the running config is kept.', []);
    }
    let next: Config;
    try {
      next = await source();
    } catch (err) {
      if (err instanceof ConfigError) {
        return this.refuse(trigger, 'CONFIG_INVALID', `${running.config.source} has ${err.problems.length} problem${err.problems.length === 1 ? '' : 's'}; the running config (${running.hash}) is kept.`, [...err.problems]);
      }
      const message = err instanceof CutoverError ? err.message : `loading it failed (${(err as Error).message})`;
      return this.refuse(trigger, 'CONFIG_INVALID', `${message} The running config (${running.hash}) is kept.`, [message]);
    }
    const restart = restartOnlyChanges(running.config, next);
    if (restart.length > 0) {
      return this.refuse(trigger, 'CONFIG_NEEDS_RESTART', `${next.source} changes ${restart.length} setting${restart.length === 1 ? '' : 's'} that only a restart applies; nothing was reloaded and the running config (${running.hash}) is kept.`, restart);
    }
    const names = next.routes.map((r) => r.name);
    if (next.hash === running.hash && sameSecrets(running.config, next)) {
      // Same content: keeping the live table keeps its exact split counters running.
      telemetry.configReload('ok');
      logger.info({ trigger, version: running.version, hash: running.hash }, 'config reloaded: unchanged');
      return { ok: true, changed: false, version: running.version, hash: running.hash, routes: names };
    }
    for (const check of this.checks) {
      try {
        check(next);
      } catch (err) {
        const message = (err as Error).message;
        return this.refuse(trigger, 'CONFIG_INVALID', `${message} The running config (${running.hash}) is kept.`, [message]);
      }
    }
    const prepared = snapshots.prepare(next, store.snapshot());
    // Evidence and samplers follow by route name before the swap, so the first request on the new
    // snapshot already finds its route's window.
    analysis.configure(prepared.routes);
    shadow.configure(prepared.routes);
    snapshots.swap(prepared);
    // Past the swap nothing may stop half-way: a follower that throws is logged, the others still run.
    for (const follow of this.followers) {
      try {
        follow(next);
      } catch (err) {
        logger.error({ err, trigger }, 'a part of the proxy did not take the reloaded config');
      }
    }
    // A lever pulled while we were preparing must not be lost: apply the store's weights once more.
    snapshots.applyWeights(store.snapshot());
    telemetry.configReload('ok');
    logger.info({ trigger, version: prepared.version, hash: prepared.hash, previous: running.hash, routes: names }, 'config reloaded');
    return { ok: true, changed: true, version: prepared.version, hash: prepared.hash, routes: names };
  }
}

/** Whether every secret the two configs name reads the same (a rotated token file is a change). */
function sameSecrets(a: Config, b: Config): boolean {
  const keys = new Set([...Object.keys(a.secrets ?? {}), ...Object.keys(b.secrets ?? {})]);
  for (const k of keys) if (a.secrets?.[k] !== b.secrets?.[k]) return false;
  return true;
}
