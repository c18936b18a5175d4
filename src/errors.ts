/**
 * Typed errors with a stable `code`. The message is one sentence that tells the user what to do;
 * the CLI prints only the message unless --debug is given.
 */
export class CutoverError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'CutoverError';
  }
}

/**
 * The state store could not be written. `problem` says what failed and nothing more (which file,
 * which error), so a caller that applied the change in memory anyway can say so without the
 * message's own "the change was not applied".
 */
export class StateWriteError extends CutoverError {
  constructor(
    readonly problem: string,
    options?: { cause?: unknown },
  ) {
    super('CUTOVER_STATE_WRITE_FAILED', `${problem.charAt(0).toUpperCase()}${problem.slice(1)}; the change was not applied. Check the disk and the directory's permissions.`, options);
    this.name = 'StateWriteError';
  }
}

/** What failed in a state store write, for a message that goes on to say what was done anyway. */
export function storeProblem(err: unknown): string {
  return err instanceof StateWriteError ? err.problem : `the state store could not be written (${(err as Error)?.message ?? String(err)})`;
}

/** A configuration problem: every issue names the path in the file where it was found. */
export class ConfigError extends CutoverError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[], source: string) {
    super('CUTOVER_BAD_CONFIG', `${source}: ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n  ${problems.join('\n  ')}`);
    this.problems = problems;
    this.name = 'ConfigError';
  }
}
