/** The typed failure of outbound credentials, and the problem the proxy answers with. */
import { CutoverError } from '../../errors.js';
import { problem, type Problem } from '../../problem.js';

/**
 * Milliseconds on a clock that never steps back (epoch-like at start): token lifetimes and backoffs
 * run on it. On the wall clock, a step back of an hour (NTP, a resumed VM) blocked new for the hour.
 */
export function monotonicNow(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * No credential could be had for a backend (token endpoint down, refusing, or in backoff). The
 * message names the backend and the endpoint's status or error code, never a secret or token.
 */
export class TokenUnavailableError extends CutoverError {
  readonly backend: string;
  /** When a new attempt may be made, on `monotonicNow()`'s clock. */
  readonly retryAt: number;
  constructor(backend: string, message: string, retryAt: number, options?: { cause?: unknown }) {
    super('TOKEN_UNAVAILABLE', message, options);
    this.name = 'TokenUnavailableError';
    this.backend = backend;
    this.retryAt = retryAt;
  }
}

/** The 502 problem+json for a request that could not be given its upstream credential. */
export function tokenUnavailableProblem(err: TokenUnavailableError, now = monotonicNow()): Problem {
  const retryAfter = Math.max(1, Math.ceil((err.retryAt - now) / 1000));
  return problem(502, 'TOKEN_UNAVAILABLE', 'Bad gateway', `The proxy could not get a credential for the ${err.backend} backend; retry in ${retryAfter} s.`, { backend: err.backend, retryAfter });
}
