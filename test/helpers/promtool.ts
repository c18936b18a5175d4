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
 */
export function runPromtool(args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<PromtoolResult> {
  return new Promise((resolve, reject) => {
    execFile(promtoolBin(), args, { cwd: opts.cwd, timeout: opts.timeoutMs ?? 20_000 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new Error(`${promtoolBin()} not found: install the Debian package "prometheus" (apt-get install -y prometheus) or set PROMTOOL_BIN`));
        return;
      }
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}
