import { execFile } from 'node:child_process';

export interface PromtoolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The promtool binary: $PROMTOOL_BIN, else `promtool` on PATH (Debian package `prometheus`). */
export function promtoolBin(): string {
  return process.env.PROMTOOL_BIN ?? 'promtool';
}

/**
 * Runs promtool and resolves with its exit code and output; never rejects on a
 * non-zero exit, so a failing check shows promtool's own message in the assertion.
 * `input` is written to promtool's stdin (e.g. a scrape for `check metrics`);
 * without it stdin is closed at once.
 */
export function runPromtool(args: string[], opts: { cwd?: string; timeoutMs?: number; input?: string } = {}): Promise<PromtoolResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(promtoolBin(), args, { cwd: opts.cwd, timeout: opts.timeoutMs ?? 20_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new Error(`${promtoolBin()} not found: install the Debian package "prometheus" (apt-get install -y prometheus) or set PROMTOOL_BIN`));
        return;
      }
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
    // promtool may exit before reading all of stdin (bad input): that is its answer, not ours to throw.
    child.stdin?.on('error', () => {});
    child.stdin?.end(opts.input ?? '');
  });
}
