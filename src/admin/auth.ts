/**
 * Who may call the admin API. Deny by default: only the exact paths in `OPEN_ADMIN_PATHS` are open,
 * and the decision is made on the route fastify *matched* (its template, e.g.
 * `/api/routes/:route/diffs`), never on the raw URL, so `/%61pi/...`, `//api/...`, `/x/../api/...`
 * or `http://h/api/...` cannot slip past a prefix check. Unmatched URLs need a token too, so a
 * 404 tells nothing to a caller without one.
 *
 * Tokens have a name (for the audit log) and a role: `viewer` reads, `operator` also pulls
 * levers. A route that pulls a lever declares `config: { role: 'operator' }` in its fastify route
 * options; every other non-open route needs at least `viewer`.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';

export type AdminRole = 'viewer' | 'operator';

/** The authenticated caller of an admin request, as the audit log names it. */
export interface AdminCaller {
  name: string;
  role: AdminRole;
}

export interface AdminToken extends AdminCaller {
  secret: string;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The least role a caller needs for this admin route (default `viewer`). */
    role?: AdminRole;
  }
}

/** Admin paths open without a token: exact route templates, nothing else. Extend with care. */
export const OPEN_ADMIN_PATHS: ReadonlySet<string> = new Set(['/metrics', '/healthz', '/readyz']);

const ROLE_RANK: Record<AdminRole, number> = { viewer: 1, operator: 2 };

/** Whether a caller with `have` may use a route that needs `need`. */
export function roleAllows(have: AdminRole, need: AdminRole): boolean {
  return ROLE_RANK[have] >= ROLE_RANK[need];
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/**
 * A checker for `Authorization` header values: the caller whose token it carries, or null. Every
 * token is compared (digests, in constant time), so the time taken says nothing about which
 * token, or how much of one, matched.
 */
export function tokenChecker(tokens: readonly AdminToken[]): (authorization: string | undefined) => AdminCaller | null {
  const known = tokens.map((t) => ({ caller: { name: t.name, role: t.role } as AdminCaller, digest: digest(t.secret) }));
  return (authorization) => {
    if (known.length === 0 || !authorization || !/^bearer\s+/i.test(authorization)) return null;
    const offered = digest(authorization.replace(/^bearer\s+/i, '').trim());
    let found: AdminCaller | null = null;
    for (const k of known) if (timingSafeEqual(offered, k.digest) && found === null) found = k.caller;
    return found;
  };
}

const callers = new WeakMap<FastifyRequest, AdminCaller>();

/** Records the authenticated caller of a request (the guard does this). */
export function setCaller(request: FastifyRequest, caller: AdminCaller): void {
  callers.set(request, caller);
}

/** The authenticated caller of an admin request, for the audit log; undefined on open paths. */
export function callerOf(request: FastifyRequest): AdminCaller | undefined {
  return callers.get(request);
}
