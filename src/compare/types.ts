/** The public shapes of the comparison engine; see docs/compare.md. */

/** `number_format`: one number written two ways (`1` vs `1.0`, `1e2` vs `100`); see docs/compare.md. */
export type DiffKind = 'value' | 'type' | 'missing' | 'extra' | 'length' | 'order' | 'status' | 'header' | 'number_format';

/** One captured response. Header names are lower-case; `body` is still content-encoded as received. */
export interface Captured {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The capture stopped at its cap, so `body` is only a prefix of what the backend sent. */
  truncated: boolean;
}

export interface Difference {
  /** Normalised grouping key: `$.items[].name`, `$.byId{*}.price`, `status`, `header:content-type`, `$`. */
  field: string;
  /** Concrete location: `$.items[3].name`. */
  path: string;
  kind: DiffKind;
  /** Small previews for examples: strings and containers are cut to about 200 characters. */
  legacy?: unknown;
  candidate?: unknown;
}

export type BodyKind = 'json' | 'text' | 'binary' | 'empty';

export interface Comparison {
  result: 'match' | 'mismatch' | 'error';
  differences: Difference[];
  /** Stable code first (`body_truncated`, `decode_failed`, `transform_failed`, `too_complex`), then detail. */
  error?: string;
  bodyKind: BodyKind;
  /** Set when more than MAX_DIFFERENCES were found; the list holds the first ones in document order. */
  differencesCapped?: boolean;
}

export interface CompareContext {
  route: string;
  method: string;
  path: string;
}

/** Per-field counters kept by the analysis layer over one window. */
export interface FieldRates {
  /** Shadow comparisons in which this field differed. */
  mismatches: number;
  /** Shadow comparisons of the route in the window. */
  comparisons: number;
  /** Baseline comparisons (primary vs primary) in which this field differed. */
  noiseHits: number;
  /** Baseline comparisons of the route in the window. */
  baselineComparisons: number;
}

export interface NoiseThresholds {
  /** Diffy's relative threshold on the gap between the rates: (r - q) / (r + q) > relative. */
  relative: number;
  /** Rates must differ by more than this: r - q > absolute. */
  absolute: number;
  /** One-sided two-proportion z score the gap must reach when baselines exist (1.645 = 95%). */
  z?: number;
}
