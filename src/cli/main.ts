#!/usr/bin/env node
/**
 * The `cutover` command. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config, 3 NOT READY
 * (`cutover report`).
 * Errors are one sentence on stderr; `--debug` adds the stack.
 */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { configPathFromEnv, loadConfig, type Config } from '../config/load.js';
import { ConfigError, CutoverError } from '../errors.js';
import { LEVER_COMMANDS, LEVER_USAGE, runLeverCommand } from './levers.js';
import { maskUrls } from '../config/mask.js';
import { sizeHeap } from './heap.js';

const USAGE = `usage: cutover <command> [options]

commands:
  run   --config FILE   run the proxy and its admin port until SIGTERM/SIGINT
  check --config FILE   validate a config: a summary and exit 0, or every problem and exit 2
  demo  [--config FILE] sample legacy + new backends, the proxy and gentle traffic
  fingerprint [--config FILE]
                        read a legacy key from stdin, print its fingerprint (fp_…) under the config's key
${LEVER_USAGE}

options:
  --config FILE   config file (YAML or JSON); defaults to $CUTOVER_CONFIG
  --debug         print stack traces with errors
  --help          this text`;

export const EXIT_OK = 0;
export const EXIT_RUNTIME = 1;
export const EXIT_USAGE = 2;

class UsageError extends CutoverError {
  constructor(message: string) {
    super('CUTOVER_USAGE', message);
  }
}

function packagePath(relative: string): string {
  return fileURLToPath(new URL(`../../${relative}`, import.meta.url));
}

export function summarize(config: Config): string {
  const lines = [
    `config OK: ${config.source}`,
    `  listen   ${config.listen.host}:${config.listen.port}   admin ${config.admin.host}:${config.admin.port}${config.adminTokens.length ? ` (tokens: ${config.adminTokens.map((t) => `${t.name}=${t.role}`).join(', ')})` : ' (no token: /api is locked)'}`,
    `  legacy   ${maskUrls(config.backends.legacy.url)}   timeout ${config.backends.legacy.timeout} ms`,
    `  new      ${maskUrls(config.backends.new.url)}   timeout ${config.backends.new.timeout} ms`,
    `  sticky   ${config.sticky?.key ?? '(none: requests are split by an exact counter)'}`,
    `  routes   ${config.routes.length}`,
  ];
  for (const r of config.routes) {
    lines.push(
      `    ${r.name.padEnd(20)} ${(r.methods?.join(',') ?? '*').padEnd(12)} ${r.path}${r.rewrite ? ` -> ${r.rewrite}` : ''}   weight ${r.weight}%   shadow ${r.shadow.percent}%${r.shadow.unsafe ? ' (unsafe)' : ''}`,
    );
  }
  return lines.join('\n');
}

async function requireConfig(flag: string | undefined): Promise<Config> {
  const path = configPathFromEnv(flag);
  if (!path) throw new UsageError('No config given; pass --config FILE or set CUTOVER_CONFIG.');
  return loadConfig(path);
}

function onSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (stopping) {
      process.stderr.write(`cutover: ${signal} during shutdown; exiting now without finishing the drain\n`);
      process.exit(EXIT_RUNTIME);
    }
    stopping = true;
    stop().then(
      () => process.exit(EXIT_OK),
      (err: unknown) => {
        process.stderr.write(`cutover: shutdown failed: ${(err as Error).message}\n`);
        process.exit(EXIT_RUNTIME);
      },
    );
  };
  // `on`, not `once`: a second signal must reach the handler (exit 1 with a line), not kill us silently.
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}

async function main(argv: string[]): Promise<number> {
  // The controller's clients have their own options (--route, --admin, ...) and exit codes.
  if (argv[0] !== undefined && LEVER_COMMANDS.has(argv[0]) && !argv.includes('--help')) return runLeverCommand(argv[0], argv.slice(1));
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      debug: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  const command = positionals[0];
  if (values.help || command === undefined || command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return command === undefined && !values.help ? EXIT_USAGE : EXIT_OK;
  }
  if (positionals.length > 1) throw new UsageError(`Unexpected argument "${positionals[1]}" after "${command}"; run "cutover --help" for the usage.`);
  switch (command) {
    case 'check': {
      const config = await requireConfig(values.config);
      process.stdout.write(`${summarize(config)}\n`);
      return EXIT_OK;
    }
    case 'run': {
      const config = await requireConfig(values.config);
      // Before anything is opened: this may restart the process with the heap it needs (heap.ts).
      sizeHeap();
      // Loaded here so the admin clients start without the proxy's modules.
      const { startApp } = await import('../app.js');
      const path = configPathFromEnv(values.config)!;
      // A SIGHUP while the proxy starts (a config manager that writes and signals at once) would
      // otherwise stop the process (the signal's default): it is kept and applied once started.
      let hupWhileStarting = false;
      const early = (): void => {
        hupWhileStarting = true;
      };
      process.on('SIGHUP', early);
      const app = await startApp(config, { reloadConfig: () => loadConfig(path) });
      process.stdout.write(`cutover: proxy ${app.dataUrl}  admin ${app.adminUrl}\n`);
      onSignals(() => app.close());
      // The outcome is logged (and counted) by the reload itself; a bad file never stops the proxy.
      process.on('SIGHUP', () => void app.reload('SIGHUP'));
      process.off('SIGHUP', early);
      if (hupWhileStarting) void app.reload('SIGHUP');
      return -1;
    }
    case 'demo': {
      sizeHeap();
      const { runDemo } = await import('../demo/index.js');
      const demo = await runDemo({ config: values.config ?? packagePath('config/demo.yaml') });
      onSignals(() => demo.stop());
      return -1;
    }
    case 'fingerprint': {
      const { fingerprintCommand } = await import('./fingerprint.js');
      process.stdout.write(`${await fingerprintCommand(await requireConfig(values.config), process.stdin)}\n`);
      return EXIT_OK;
    }
    default:
      throw new UsageError(`Unknown command "${command}"; run "cutover --help" for the list.`);
  }
}

/** Failures of what the operator gave (a config or its input), not of the run: exit 2, as the contract says. */
const USAGE_CODES: ReadonlySet<string> = new Set(['CUTOVER_CONFIG_UNREADABLE', 'CUTOVER_NO_FINGERPRINT_KEY', 'CUTOVER_NO_INPUT', 'CUTOVER_INPUT_TOO_LARGE']);

function describe(err: unknown): { message: string; code: number } {
  if (err instanceof ConfigError) return { message: err.message, code: EXIT_USAGE };
  if (err instanceof UsageError) return { message: err.message, code: EXIT_USAGE };
  if (err instanceof CutoverError) return { message: err.message, code: USAGE_CODES.has(err.code) ? EXIT_USAGE : EXIT_RUNTIME };
  const e = err as NodeJS.ErrnoException & { port?: number; address?: string };
  if (e?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || e?.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') return { message: `${e.message}; run "cutover --help"`, code: EXIT_USAGE };
  if (e?.code === 'EADDRINUSE') return { message: `Address ${e.address ?? ''}:${e.port ?? ''} is already in use; stop what holds it or choose another port in the config.`, code: EXIT_RUNTIME };
  // A listener's host that names no address here: the config's, so exit 2 as for any bad config.
  if (e?.code === 'ENOTFOUND' || e?.code === 'EADDRNOTAVAIL') {
    const host = (e as { hostname?: string }).hostname ?? e.address ?? '';
    return { message: `Cannot listen on ${host}: ${e.code === 'ENOTFOUND' ? 'the name does not resolve' : 'it is not an address of this machine'}; check listen.host and admin.host in the config.`, code: EXIT_USAGE };
  }
  if (e?.code === 'EACCES') return { message: `Not allowed to listen on ${e.address ?? ''}:${e.port ?? ''}; choose a port above 1023 or run with the needed privilege.`, code: EXIT_RUNTIME };
  return { message: `Unexpected failure: ${e?.message ?? String(err)}; rerun with --debug for details.`, code: EXIT_RUNTIME };
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    const { message, code } = describe(err);
    process.stderr.write(`cutover: ${maskUrls(message)}\n`);
    if (process.argv.includes('--debug') && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    process.exit(code);
  },
);
