/**
 * The "compare" half of a pair's analysis: pure, so it runs on the main thread or in a comparison
 * worker unchanged. It takes plain answers and compiled rules and returns plain comparisons; the
 * "record" half (`RouteAnalysis.record`) applies them to the route's window on the main thread.
 */
import { compareResponses, compileRules, routeRules, type Captured, type CompareState, type Comparison, type RouteRules } from '../compare/index.js';
import type { CompareSettings } from '../config/load.js';

/** What the compare half needs of one answer (structured-clone friendly). */
export interface PairAnswer extends Captured {
  error?: string;
}

export interface PairInput {
  route: string;
  method: string;
  path: string;
  primaryIsNew: boolean;
  primary: PairAnswer;
  shadow: PairAnswer;
  baseline: PairAnswer | null;
}

/** A route's compiled rules (compare/index.ts `RouteRules`, as config/load.ts compiles them). */
export type PairRules = RouteRules;

/** The comparisons of one pair; `failure` when compare/ threw (it is meant never to). */
export interface Compared {
  baseline: Comparison | null;
  main: Comparison | null;
  failure?: string;
}

/** For a worker, which gets settings (functions cannot cross threads) and compiles them itself. */
export function compileRouteRules(compare: CompareSettings): PairRules {
  return routeRules(compileRules(compare));
}

export function answered(answer: PairAnswer): boolean {
  return answer.error === undefined && answer.status > 0;
}

function captured(answer: PairAnswer): Captured {
  return { status: answer.status, headers: answer.headers, body: answer.body, truncated: answer.truncated };
}

/** `state`: what the calling thread keeps between comparisons (compare/index.ts CompareState), if anything. */
export function comparePair(pair: PairInput, rules: PairRules, state?: CompareState): Compared {
  const out: Compared = { baseline: null, main: null };
  // A client that walked away leaves an incomplete primary answer: there is nothing fair to compare.
  if (pair.primary.error === 'client_aborted') return out;
  const ctx = { route: pair.route, method: pair.method, path: pair.path };
  try {
    if (pair.baseline !== null && answered(pair.primary) && answered(pair.baseline)) {
      out.baseline = compareResponses(captured(pair.primary), captured(pair.baseline), rules.baseline, ctx, state);
    }
    const legacy = pair.primaryIsNew ? pair.shadow : pair.primary;
    const candidate = pair.primaryIsNew ? pair.primary : pair.shadow;
    if (answered(legacy) && answered(candidate)) out.main = compareResponses(captured(legacy), captured(candidate), rules.shadow, ctx, state);
  } catch (err) {
    out.failure = `compare_failed: ${(err as Error).message}`;
  }
  return out;
}
