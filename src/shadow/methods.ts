/** Methods mirrored without `shadow.unsafe`, and the only ones ever replayed as baselines (RFC 9110 §9.2.1 safe methods). */
export const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Headers through which frameworks (Spring, Symfony, Rails, Laravel, Express's method-override) let a request name another method. */
const OVERRIDES: ReadonlySet<string> = new Set(['x-http-method-override', 'x-http-method', 'x-method-override']);

/**
 * The method to judge a request by for mirroring: its own, unless it is safe and an override header
 * names an unsafe one (`GET` + `X-HTTP-Method-Override: DELETE` is a DELETE to many frameworks).
 * An override only ever makes a request less safe: a POST that names GET stays a POST. Every
 * override header and every value in it counts, since frameworks differ in which one they read.
 * Only the header names are looked at unless one is there.
 */
export function effectiveMethod(method: string, rawHeaders: readonly string[]): string {
  if (!SAFE_METHODS.has(method)) return method;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    // Every override name is 13 to 22 characters long: most headers are passed over on length alone.
    if (name.length < 13 || name.length > 22 || !OVERRIDES.has(name.toLowerCase())) continue;
    for (const value of rawHeaders[i + 1].split(',')) {
      const named = value.trim().toUpperCase();
      if (!SAFE_METHODS.has(named)) return named;
    }
  }
  return method;
}
