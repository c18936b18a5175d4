/** Bearer-token check for the admin API, in constant time. */
import { createHash, timingSafeEqual } from 'node:crypto';

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/** A checker for `Authorization` header values; null token means the API is locked. */
export function bearerChecker(token: string | undefined): (authorization: string | undefined) => boolean {
  if (!token) return () => false;
  // Comparing digests keeps the comparison constant-time even when the lengths differ.
  const expected = digest(token);
  return (authorization) => {
    if (!authorization || !/^bearer\s+/i.test(authorization)) return false;
    return timingSafeEqual(digest(authorization.replace(/^bearer\s+/i, '').trim()), expected);
  };
}
