/** The typed failure of outbound credentials, and the problem the proxy answers with. */
import { CutoverError } from '../../errors.js';
import { problem, type Problem } from '../../problem.js';

/**
 * No credential could be had for a backend (token endpoint down, refusing, or in backoff). The
 * message names the backend and the endpoint's status or error code, never a secret or token.
 */
export class TokenUnavailableError extends CutoverError {
  readonly backend: string;
  /** Epoch ms before which no new attempt is made. */
  readonly retryAt: number;
  constructor(backend: string, message: string, retryAt: number, options?: { cause?: unknown }) {
    super('TOKEN_UNAVAILABLE', message, options);
    this.name = 'TokenUnavailableError';
    this.backend = backend;
    this.retryAt = retryAt;
  }
}

/** The 502 problem+json for a request that could not be given its upstream credential. */
export function tokenUnavailableProblem(err: TokenUnavailableError, now = Date.now()): Problem {
  const retryAfter = Math.max(1, Math.ceil((err.retryAt - now) / 1000));
  return problem(502, 'TOKEN_UNAVAILABLE', 'Bad gateway', `The proxy could not get a credential for the ${err.backend} backend; retry in ${retryAfter} s.`, { backend: err.backend, retryAfter });
}
