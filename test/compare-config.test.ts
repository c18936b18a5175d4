/** The comparison keys of issue 13 in config: defaults, per-route override, and errors that name the field. */
import { describe, expect, it } from 'vitest';
import { compareResponses, compileRules } from '../src/compare/index.js';
import { validateConfig } from '../src/config/load.js';
import { ConfigError } from '../src/errors.js';

const backends = { legacy: { url: 'http://127.0.0.1:9101' }, new: { url: 'http://127.0.0.1:9102' } };
const capture = (body: string, contentType = 'application/json') => ({ status: 200, headers: { 'content-type': contentType }, body: Buffer.from(body), truncated: false });

describe('compare.numberFormat and compare.jsonCharset', () => {
  it('default to strict and implied, take defaults.compare, and let a route override them', () => {
    const config = validateConfig({
      backends,
      defaults: { compare: { numberFormat: 'lenient', jsonCharset: 'strict' } },
      routes: [
        { name: 'inherits', match: { path: '/a' } },
        { name: 'overrides', match: { path: '/b' }, compare: { numberFormat: 'strict', jsonCharset: 'implied' } },
      ],
    });
    const [inherits, overrides] = config.routes;
    expect(inherits.compare).toMatchObject({ numberFormat: 'lenient', jsonCharset: 'strict' });
    expect(overrides.compare).toMatchObject({ numberFormat: 'strict', jsonCharset: 'implied' });
    expect(validateConfig({ backends }).defaults.compare).toMatchObject({ numberFormat: 'strict', jsonCharset: 'implied' });

    const ctx = { route: 'r', method: 'GET', path: '/' };
    const lenient = compareResponses(capture('{"n":1}'), capture('{"n":1.0}'), compileRules(inherits.compare), ctx);
    const strict = compareResponses(capture('{"n":1}'), capture('{"n":1.0}'), compileRules(overrides.compare), ctx);
    expect(lenient.result).toBe('match');
    expect(strict.differences.map((d) => d.kind)).toEqual(['number_format']);
  });

  it('rejects other values, naming the field', () => {
    let problems: string[] = [];
    try {
      validateConfig({ backends, routes: [{ name: 'r', match: { path: '/r' }, compare: { numberFormat: 'loose' } }] }, 'test.yaml');
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems = [...err.problems];
    }
    expect(problems.join('\n')).toMatch(/routes\[0\]\.compare\.numberFormat/);
  });
});
