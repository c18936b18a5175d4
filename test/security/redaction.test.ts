/**
 * Redaction of credential-named fields (issue 9, row 5): credential words are found inside
 * camelCase, snake_case and kebab-case names, case-insensitively, and `compare.sensitive` adds
 * names as well as paths.
 */
import { describe, expect, it } from 'vitest';
import { BUILTIN_COMPARE } from '../../src/config/load.js';
import { compareResponses, compileRules, redactDifference, redactValue, REDACTED } from '../../src/compare/index.js';
import { redactQueryText } from '../../src/compare/redact.js';
import { validateConfig } from '../../src/config/load.js';

const rules = compileRules(BUILTIN_COMPARE);

const CREDENTIALS = [
  'accessToken', 'refreshToken', 'refresh_token', 'REFRESH_TOKEN', 'id-token', 'userPassword', 'user_password', 'passwd',
  'sessionId', 'session_id', 'SessionID', 'x-api-key', 'apiKey', 'api_key', 'APIKey', 'clientSecret', 'client-secret',
  'authorization', 'Authorization', 'cookie', 'set-cookie', 'privateKey', 'private_key', 'credentials', 'webhookSignature',
  'accesstoken', 'userpassword', 'secretKey', 'awsAccessKeyId', 'authToken', 'auth', 'jwt', 'passphrase',
  // Plurals (found by review: they leaked).
  'apiKeys', 'api_keys', 'accessKeys', 'privateKeys', 'passphrases', 'sessionIds',
  // One-time codes and card codes.
  'otp', 'smsOtp', 'pin', 'pinCode', 'cvv', 'card_cvc',
];
const PLAIN = ['price', 'id', 'name', 'userId', 'keyboard', 'monkey', 'author', 'sessions_count_total_x'.replace('sessions', 'visits'), 'tags', 'createdAt', 'status', 'pinned', 'spinner', 'shipping', 'isPinned'];

describe('credential names', () => {
  it.each(CREDENTIALS)('redacts the value of a field named %s in an example', (name) => {
    const diff = redactDifference({ field: `$.${name}`, path: `$['${name}']`, kind: 'value', legacy: 'old-value', candidate: 'new-value' }, rules);
    expect(diff.legacy).toBe(REDACTED);
    expect(diff.candidate).toBe(REDACTED);
    // Nested in a container preview too.
    expect(redactValue({ user: { [name]: 's3cr3t', ok: 1 } }, '$', rules)).toEqual({ user: { [name]: REDACTED, ok: 1 } });
  });

  it.each(PLAIN)('keeps the value of a field named %s', (name) => {
    expect(redactValue('visible', `$['${name}']`, rules)).toBe('visible');
  });

  it('hides Bearer/Basic values and JWTs inside string values of plainly named fields', () => {
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbm4ifQ.c2lnbmF0dXJl';
    expect(redactValue('sent Bearer abcdef123456 upstream', '$.message', rules)).toBe(`sent ${REDACTED} upstream`);
    expect(redactValue(`token was ${jwt}`, '$.note', rules)).toBe(`token was ${REDACTED}`);
    expect(redactValue({ note: 'Basic dXNlcjpwYXNz', items: [jwt, 'plain'] }, '$', rules)).toEqual({ note: REDACTED, items: [REDACTED, 'plain'] });
    expect(redactValue('Basic dXNlcjpwYXNz', 'header:x-upstream-note', rules)).toBe(REDACTED);
    // Words alone are not credentials.
    expect(redactValue('the Bearer of news', '$.message', rules)).toBe('the Bearer of news');
  });

  it.each(['x-api-key', 'X-Auth-Token', 'authorization', 'cookie', 'x-session-id', 'x-client-secret'])('redacts the header %s', (name) => {
    expect(redactValue('value-123', `header:${name}`, rules)).toBe(REDACTED);
  });
});

describe('compare.sensitive', () => {
  it('adds names (anywhere, case-insensitively) and paths', () => {
    const config = validateConfig({
      backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
      routes: [{ name: 'r', match: { path: '/r' }, compare: { sensitive: ['ssn', '$.profile.birthDate', 'x-tenant'] } }],
    });
    const r = compileRules(config.routes[0].compare);
    expect(redactValue('123-45-6789', '$.customer.SSN', r)).toBe(REDACTED);
    expect(redactValue({ ssn: '1', name: 'Ann' }, '$.items[0]', r)).toEqual({ ssn: REDACTED, name: 'Ann' });
    expect(redactValue('1990-01-01', '$.profile.birthDate', r)).toBe(REDACTED);
    expect(redactValue('acme', 'header:x-tenant', r)).toBe(REDACTED);
    expect(redactValue('Ann', '$.customer.name', r)).toBe('Ann');
    // Without the rule the same values stay visible.
    expect(redactValue('123-45-6789', '$.customer.SSN', rules)).toBe('123-45-6789');
  });

  it('rejects an entry that is neither a path nor a name, naming its path', () => {
    expect(() =>
      validateConfig({
        backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
        routes: [{ name: 'r', match: { path: '/r' }, compare: { sensitive: ['a b'] } }],
      }),
    ).toThrow(/routes\[0\]\.compare\.sensitive\[0\]/);
  });
});

describe('secrets inside texts (found by review)', () => {
  it('hides a credential member inside a cut preview of a container, even past a plain path', () => {
    const preview = `{"name":"ann","password":"hunter2-CUT","bio":"${'x'.repeat(150)}…`;
    const diff = redactDifference({ field: '$.user', path: '$.user', kind: 'type', legacy: preview, candidate: 'ann' }, rules);
    expect(JSON.stringify(diff)).not.toContain('hunter2');
    expect(diff.legacy).toContain('"name":"ann"');
    // A value cut by the preview's end is hidden too.
    expect(JSON.stringify(redactValue('{"token":"abc-cut-her…', '$.x', rules))).not.toContain('abc');
    // compare.sensitive names count as well.
    const named = compileRules({ ...BUILTIN_COMPARE, sensitive: ['pin'] });
    expect(JSON.stringify(redactValue('{"pin":"1234","a":1…', '$.x', named))).not.toContain('1234');
  });

  it("hides credential members in a text body's quoted line summary", () => {
    const legacy = '{"api_token":"tok_LEGACY","score":NaN}';
    const result = compareResponses(
      { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(legacy), truncated: false },
      { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(legacy.replace('LEGACY', 'NEW')), truncated: false },
      rules,
      { route: 'r', method: 'GET', path: '/' },
    );
    const shown = JSON.stringify(result.differences.map((d) => redactDifference(d, rules)));
    expect(result.differences.length).toBeGreaterThan(0);
    expect(shown).not.toContain('tok_');
  });

  it('keeps no excerpt of a body that is not JSON in its parse error', () => {
    const result = compareResponses(
      { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(`{"password": 'hunter2-B'}`), truncated: false },
      { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from('{"ok":true}'), truncated: false },
      rules,
      { route: 'r', method: 'GET', path: '/' },
    );
    expect(JSON.stringify(result.differences.map((d) => redactDifference(d, rules)))).not.toContain('hunter2');
    expect(JSON.stringify(result.differences)).not.toContain('hunter2');
  });

  it('masks credential-named query parameters in a URL header and in a kept request path', () => {
    const diff = redactDifference({ field: 'header:location', path: 'header:location', kind: 'header', legacy: 'https://a/cb?access_token=T0K&state=1', candidate: 'https://a/cb?state=1' }, rules);
    expect(diff.legacy).toBe(`https://a/cb?access_token=${REDACTED}&state=1`);
    expect(redactQueryText('/v1/x?id=7&password=p4ss&api%5Fkey=k3y&page=2')).toBe(`/v1/x?id=7&password=${REDACTED}&api%5Fkey=${REDACTED}&page=2`);
    expect(redactQueryText('/v1/token=abc/x?id=1')).toBe('/v1/token=abc/x?id=1');
  });
});
