/** Methods mirrored without `shadow.unsafe`, and the only ones ever replayed as baselines (RFC 9110 §9.2.1 safe methods). */
export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);
