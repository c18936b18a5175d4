/** Methods mirrored without `shadow.unsafe`, and the only ones ever replayed as baselines (RFC 9110 §9.2.1 safe methods). */
export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Headers through which frameworks (Spring, Symfony, Rails, Laravel, Express's method-override) let a request name another method. */
const OVERRIDES: ReadonlySet<string> = new Set(['x-http-method-override', 'x-http-method', 'x-method-override']);

/**
 * The method a backend may act on: the one an override header names (its last one) when the
 * request carries such a header, else the request's own. A GET that says
 * `X-HTTP-Method-Override: DELETE` is a DELETE to many frameworks, so it must never be mirrored
 * or replayed as a safe method would be. Only the header names are looked at unless one is there.
 */
export function effectiveMethod(method: string, rawHeaders: readonly string[]): string {
  let named: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    // Every override name is 13 to 22 characters long: most headers are passed over on length alone.
    if (name.length >= 13 && name.length <= 22 && OVERRIDES.has(name.toLowerCase())) named = rawHeaders[i + 1];
  }
  return named === undefined ? method : named.trim().toUpperCase();
}
