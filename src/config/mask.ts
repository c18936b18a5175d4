/** Hiding the secrets a URL may carry before it reaches a person: `http://svc:S3CR3T@host` → `http://svc:***@host`. */

const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^/?#@\s:]*)(:[^/?#@\s]*)?@/gi;

/** Masks the password part of every URL's userinfo in `text` (a user name alone is kept). */
export function maskUrls(text: string): string {
  return text.replace(USERINFO, (_m, scheme: string, user: string, pass: string | undefined) => (pass === undefined ? `${scheme}${user}@` : `${scheme}${user}:***@`));
}
