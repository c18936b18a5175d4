/**
 * A real migration, end to end: two versions of a small users/posts API run as real HTTP servers,
 * the second with the changes a real major-version upgrade makes (numeric ids became strings, the
 * list got a pagination envelope, a header was renamed, 404 bodies got a standard error shape, one
 * title really changed). Traffic goes through the real proxy; the diffs API must name exactly those
 * changes, nothing more and nothing less.
 */
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startBackend, waitFor, type TestBackend } from './helpers/backend.js';
import { baseConfig, startProxy, type InProcessProxy } from './helpers/proxy.js';

const TOKEN = 'migration-admin-token';
process.env.CUTOVER_MIGRATION_ADMIN_TOKEN = TOKEN;

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

const users = [
  { id: 1, name: 'Leanne Graham', email: 'leanne@example.com' },
  { id: 2, name: 'Ervin Howell', email: 'ervin@example.com' },
  { id: 3, name: 'Clementine Bauch', email: 'clementine@example.com' },
];
const posts = [
  { id: 1, userId: 1, title: 'sunt aut facere' },
  { id: 2, userId: 1, title: 'qui est esse' },
  { id: 3, userId: 2, title: 'ea molestias' },
];

function send(res: http.ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
  res.end(JSON.stringify(value));
}

/** Version 1: bare arrays, numeric ids, X-Total-Count, an ad-hoc 404 body. */
function v1(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url!, 'http://x');
  if (url.pathname === '/users') return send(res, 200, users, { 'X-Total-Count': String(users.length) });
  if (url.pathname === '/posts') return send(res, 200, posts);
  const m = /^\/users\/(\d+)$/.exec(url.pathname);
  const user = m ? users.find((u) => u.id === Number(m[1])) : undefined;
  if (user) return send(res, 200, user);
  send(res, 404, {});
}

/** Version 2: string ids, a pagination envelope, X-Pagination-Total, a standard error body, one edited title. */
function v2(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url!, 'http://x');
  const str = <T extends { id: number }>(r: T) => ({ ...r, id: String(r.id) });
  if (url.pathname === '/users') {
    return send(res, 200, { data: users.map(str), meta: { page: 1, total: users.length } }, { 'X-Pagination-Total': String(users.length) });
  }
  if (url.pathname === '/posts') return send(res, 200, posts.map((p) => str(p.id === 2 ? { ...p, title: 'qui est esse!' } : p)));
  const m = /^\/users\/(\d+)$/.exec(url.pathname);
  const user = m ? users.find((u) => u.id === Number(m[1])) : undefined;
  if (user) return send(res, 200, str(user));
  send(res, 404, { statusCode: 404, error: 'Not Found', message: `no user ${m?.[1] ?? ''}`.trim() });
}

async function backend(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<TestBackend> {
  const b = await startBackend(handler);
  cleanups.push(() => b.close());
  return b;
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const res = await request(url, { headers });
  return { status: res.statusCode, body: await res.body.text() };
}

async function diffs(p: InProcessProxy, route: string): Promise<any> {
  const res = await get(`${p.adminUrl}/api/routes/${route}/diffs`, { authorization: `Bearer ${TOKEN}` });
  expect(res.status).toBe(200);
  return JSON.parse(res.body);
}

/** What a person reads off the report: each field with its kinds. */
function named(report: any): string[] {
  return report.fields.flatMap((f: any) => Object.keys(f.kinds).map((k) => `${f.field} ${k}`)).sort();
}

describe('a real migration through the proxy', () => {
  it('names exactly the planted changes: id types, the envelope, the renamed header, the 404 body, one edited title', async () => {
    const legacy = await backend(v1);
    const next = await backend(v2);
    const p = await startProxy(
      baseConfig(legacy.url, next.url, {
        admin: { host: '127.0.0.1', port: 0, tokenEnv: 'CUTOVER_MIGRATION_ADMIN_TOKEN' },
        defaults: { shadow: { baselinePercent: 0 }, compare: { headers: ['*'] } },
        routes: [
          { name: 'users', match: { methods: ['GET'], path: '/users' } },
          { name: 'user', match: { methods: ['GET'], path: '/users/:id' } },
          { name: 'posts', match: { methods: ['GET'], path: '/posts' } },
        ],
      }),
    );
    cleanups.push(() => p.close(100));

    for (const path of ['/users', '/users/1', '/users/2', '/users/999', '/posts']) {
      const res = await get(`${p.dataUrl}${path}`);
      expect(res.status).toBe(path === '/users/999' ? 404 : 200);
    }
    await waitFor(async () => (await diffs(p, 'users')).comparisons.total === 1 && (await diffs(p, 'user')).comparisons.total === 3 && (await diffs(p, 'posts')).comparisons.total === 1, 10_000, 'five comparisons');

    // The list got an envelope (an array became an object) and its count header was renamed.
    const list = await diffs(p, 'users');
    expect(named(list)).toEqual(['$ type', 'header:x-pagination-total extra', 'header:x-total-count missing']);

    // Single users: the id is a string now; the 404 body gained the standard error shape.
    const one = await diffs(p, 'user');
    expect(named(one)).toEqual(['$.error extra', '$.id type', '$.message extra', '$.statusCode extra']);
    expect(one.fields.find((f: any) => f.field === '$.id').mismatches).toBe(2);
    expect(one.statusPairs).toEqual([
      { legacy: '200', new: '200', count: 2 },
      { legacy: '404', new: '404', count: 1 },
    ]);

    // Posts: matched by id across the type change, so the one real edit is not lost.
    const postsReport = await diffs(p, 'posts');
    expect(named(postsReport)).toEqual(['$[].id type', '$[].title value']);
    const title = postsReport.fields.find((f: any) => f.field === '$[].title');
    expect(title.examples[0]).toMatchObject({ location: '$[1].title', legacy: 'qui est esse', new: 'qui est esse!' });

    const scrape = (await get(`${p.adminUrl}/metrics`)).body;
    expect(scrape).toMatch(/cutover_status_pairs_total\{route="user",legacy="404",new="404"\} 1/);
    expect(scrape).toMatch(/cutover_mismatch_fields_total\{route="user",field="\$\.id",kind="type"\} 2/);
  });
});
