import type { UpstreamAnswer } from '../forward/capture.js';
import type { Route } from '../routing/table.js';

/** The answers to one mirrored request, handed from the shadow engine to the comparison. */
export interface CapturedAnswerPair {
  route: Route;
  method: string;
  /** The request target as the client sent it. */
  path: string;
  primaryIsNew: boolean;
  primary: UpstreamAnswer;
  shadow: UpstreamAnswer;
  /** A second answer of the primary backend to the same request, when this pair samples noise. */
  baseline: UpstreamAnswer | null;
  /** This pair was the probe of its route's oversize cool-down (see ShadowEngine). */
  sizeProbe?: boolean;
  /**
   * When its request was taken for mirroring (epoch ms). A pair compared after a weight change but
   * asked before it speaks for the step before: the controller's evidence leaves it out.
   */
  startedAt?: number;
  /** The client's credential values: its diff examples never show them (RequestCredential.secrets). */
  secrets?: () => readonly string[];
}
