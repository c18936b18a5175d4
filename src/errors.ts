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

/** A configuration problem: every issue names the path in the file where it was found. */
export class ConfigError extends CutoverError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[], source: string) {
    super('CUTOVER_BAD_CONFIG', `${source}: ${problems.length} problem${problems.length === 1 ? '' : 's'}:\n  ${problems.join('\n  ')}`);
    this.problems = problems;
    this.name = 'ConfigError';
  }
}
