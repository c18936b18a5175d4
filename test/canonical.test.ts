import { describe, expect, it } from 'vitest';
import { canonicalPath, canonicalTarget, captureIsSafe, validAuthority } from '../src/routing/canonical.js';

describe('canonical path', () => {
  it.each([
    ['/v1/widgets/1', '/v1/widgets/1'],
    ['/v1/widget%73/1', '/v1/widgets/1'],
    ['/%76%31/widgets/1', '/v1/widgets/1'],
    ['//v1//widgets///1', '/v1/widgets/1'],
    ['/v1/./widgets/1', '/v1/widgets/1'],
    ['/v1/x/../widgets/1', '/v1/widgets/1'],
    ['/v1/live/%2e%2e/%2E%2E/internal/admin', '/internal/admin'],
    ['/../../etc/passwd', '/etc/passwd'],
    ['/v1/a%2fb', '/v1/a%2Fb'],
    ['/v1/a\\b', '/v1/a%5Cb'],
    ['/v1/a%5cb', '/v1/a%5Cb'],
    ['/v1/%7e%41', '/v1/~A'],
    ['/v1/caf%c3%a9', '/v1/caf%C3%A9'],
    ['/v1/a%20b', '/v1/a%20b'],
    ['/v1/', '/v1/'],
    ['/v1/x/..', '/v1/'],
    ['/v1/.', '/v1/'],
    ['/', '/'],
    ['//', '/'],
    ['/..', '/'],
    // Dot-segments with ;parameters, as Tomcat, Jetty and Spring resolve them (found by review).
    ['/v1/public/..;/admin/keys', '/v1/admin/keys'],
    ['/..;/manager/html', '/manager/html'],
    ['/a/.;x/b', '/a/b'],
    ['/a/%2e%2e;jsessionid=1/b', '/b'],
    ['/a/b;v=1/c', '/a/b;v=1/c'],
    ['/a/...;/b', '/a/...;/b'],
  ])('%s → %s', (raw, canonical) => {
    expect(canonicalPath(raw)).toBe(canonical);
  });

  it('is idempotent', () => {
    for (const raw of ['/v1/widget%73/1', '//a/./b/../c/', '/v1/a%2fb/%2e%2e', '/x\\y', '/a/..;/b/.;p/c']) {
      const once = canonicalPath(raw)!;
      expect(canonicalPath(once)).toBe(once);
    }
  });

  it('rejects malformed percent-encoding', () => {
    expect(canonicalPath('/v1/%zz')).toBeNull();
    expect(canonicalPath('/v1/%4')).toBeNull();
    expect(canonicalPath('relative')).toBeNull();
  });

  it('keeps Latin-1 and valid UTF-8 encodings, refuses overlong UTF-8 (a lenient decoder reads %C0%AE as ".")', () => {
    expect(canonicalPath('/search/caf%e9')).toBe('/search/caf%E9');
    expect(canonicalPath('/search/caf%C3%A9')).toBe('/search/caf%C3%A9');
    expect(canonicalPath('/villes/%C0%20Paris')).toBe('/villes/%C0%20Paris');
    // Latin-1 and cp1252 text with the same lead bytes ("À©", "voilà…", "là’") is not overlong UTF-8.
    for (const raw of ['/%C0%A9', '/%C0%A0bient%F4t', '/voil%E0%85', '/l%E0%92']) expect(canonicalPath(raw), raw).toBe(raw);
    for (const raw of ['/v1/live/%C0%AE%C0%AE/x', '/v1/%c0%af', '/v1/%C1%9C', '/v1/%E0%80%AE', '/v1/%F0%80%80%AE', '/v1/%F8%80%80%80%AF', '/v1/%FC%80%80%80%80%AE']) expect(canonicalPath(raw), raw).toBeNull();
  });
});

describe('canonical target', () => {
  it('reduces absolute-form to origin-form and takes its authority', () => {
    expect(canonicalTarget('http://evil.example/v1/widgets/1?a=1', ['h'])).toEqual({ path: '/v1/widgets/1', query: '?a=1', authority: 'evil.example' });
    expect(canonicalTarget('HTTPS://h:8443', [])).toEqual({ path: '/', query: '', authority: 'h:8443' });
  });

  it('keeps the query byte for byte and drops a fragment', () => {
    expect(canonicalTarget('/a/%2e%2e/b?x=%2e%2e&y=/', ['h'])).toEqual({ path: '/b', query: '?x=%2e%2e&y=/', authority: undefined });
    expect(canonicalTarget('/a#frag', ['h'])).toEqual({ path: '/a', query: '', authority: undefined });
  });

  it('rejects two Host headers, a malformed Host and odd targets', () => {
    expect(canonicalTarget('/a', ['h', 'h'])).toMatchObject({ problem: 'BAD_HOST' });
    expect(canonicalTarget('/a', ['user@h'])).toMatchObject({ problem: 'BAD_HOST' });
    expect(canonicalTarget('/a', ['h/x'])).toMatchObject({ problem: 'BAD_HOST' });
    expect(canonicalTarget('http://u:p@h/a', ['h'])).toMatchObject({ problem: 'BAD_HOST' });
    expect(canonicalTarget('ftp://h/a', ['h'])).toMatchObject({ problem: 'BAD_PATH' });
    expect(canonicalTarget('/a%g1', ['h'])).toMatchObject({ problem: 'BAD_PATH' });
    expect(validAuthority('[::1]:8080')).toBe(true);
    expect(validAuthority('api.example.com')).toBe(true);
  });
});

describe('route captures', () => {
  it('keeps separators and dot-segments out of :param and encoded separators out of *', () => {
    expect(captureIsSafe('abc', false)).toBe(true);
    expect(captureIsSafe('a/b', false)).toBe(false);
    expect(captureIsSafe('a%2Fb', false)).toBe(false);
    expect(captureIsSafe('a%5cb', false)).toBe(false);
    expect(captureIsSafe('..', false)).toBe(false);
    expect(captureIsSafe('..;x', false)).toBe(false);
    expect(captureIsSafe('.', false)).toBe(false);
    expect(captureIsSafe('a/b/c', true)).toBe(true);
    expect(captureIsSafe('a/%2F', true)).toBe(false);
    expect(captureIsSafe('a/../b', true)).toBe(false);
  });
});
