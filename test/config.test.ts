import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfigText, validateConfig } from '../src/config/load.js';
import { ConfigError } from '../src/errors.js';
import { CLI } from './helpers/proxy.js';

const backends = { legacy: { url: 'http://127.0.0.1:9101' }, new: { url: 'http://127.0.0.1:9102' } };

function problemsOf(input: unknown): string[] {
  try {
    validateConfig(input, 'test.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

describe('config validation names the path of every problem', () => {
  it.each([
    ['unknown key', { backends, listne: {} }, '(root): unknown key "listne"'],
    ['unknown nested key', { backends: { ...backends, legacy: { url: 'http://a', timeuot: '1s' } } }, 'backends.legacy: unknown key "timeuot"'],
    ['bad URL', { backends: { ...backends, new: { url: 'not a url' } } }, 'backends.new.url: "not a url" is not a URL'],
    ['wrong URL scheme', { backends: { ...backends, new: { url: 'ftp://x' } } }, 'backends.new.url: must be an http:// or https:// URL'],
    ['bad duration', { backends: { ...backends, legacy: { url: 'http://a', timeout: '30 parsecs' } } }, 'backends.legacy.timeout: "30 parsecs" is not a duration'],
    ['path without slash', { backends, routes: [{ name: 'a', match: { path: 'v1/x' } }] }, 'routes[0].match.path: must start with "/"'],
    ['duplicate route names', { backends, routes: [{ name: 'a', match: { path: '/a' } }, { name: 'b', match: { path: '/b' } }, { name: 'a', match: { path: '/c' } }] }, 'routes[2].name: "a" is already the name of routes[0]'],
    ['overlapping ports', { backends, listen: { port: 8080 }, admin: { port: 8080 } }, 'admin.port: 8080 is also listen.port'],
    ['weight out of range', { backends, routes: [{ name: 'a', match: { path: '/a' }, weight: 101 }] }, 'routes[0].weight:'],
    ['rewrite with unknown param', { backends, routes: [{ name: 'a', match: { path: '/a/:id' }, rewrite: { path: '/b/:uid' } }] }, 'routes[0].rewrite.path: ":uid" is not a parameter of match.path'],
    ['after names no route', { backends, routes: [{ name: 'a', match: { path: '/a' }, after: ['zzz'] }] }, 'routes[0].after[0]: no route is named "zzz"'],
    ['bad method', { backends, routes: [{ name: 'a', match: { path: '/a', methods: ['FETCH'] } }] }, 'routes[0].match.methods[0]:'],
    ['bad sticky key', { backends, sticky: { key: 'session' } }, 'sticky.key: must be header:NAME, cookie:NAME, ip or credential'],
    ['reserved route name', { backends, routes: [{ name: 'other', match: { path: '/a' } }] }, 'routes[0].name: "other" is reserved'],
    ['missing backend', { backends: { legacy: backends.legacy } }, 'backends.new:'],
    ['baseline cap below 1', { backends, routes: [{ name: 'a', match: { path: '/a' }, shadow: { maxBaselinesPerSecond: 0 } }] }, 'routes[0].shadow.maxBaselinesPerSecond:'],
    ['token file missing', { backends, admin: { tokenFile: '/nonexistent/token' } }, 'admin.tokenFile: cannot read /nonexistent/token'],
  ])('%s', (_name, input, expected) => {
    const problems = problemsOf(input);
    expect(problems.some((p) => p.startsWith(expected)), `${JSON.stringify(problems)} should contain ${expected}`).toBe(true);
  });

  it('reports every problem at once, not just the first', () => {
    const problems = problemsOf({ backends: { legacy: { url: 'x' }, new: { url: 'y' } }, listen: { port: 70000 } });
    expect(problems.length).toBeGreaterThanOrEqual(3);
  });

  it('names problems between fields and in compare rules together', () => {
    const problems = problemsOf({ backends, listen: { port: 8080 }, admin: { port: 8080 }, routes: [{ name: 'a', match: { path: '/a' }, compare: { ignore: ['$.[['] } }] });
    expect(problems).toEqual([expect.stringMatching(/^admin\.port: 8080 is also listen\.port/), expect.stringMatching(/^routes\[0\]\.compare\.ignore\[0\]: cannot parse path/)]);
  });

  it('hashes the file, not where it sits: the same config in two directories has one hash', () => {
    const raw = () => ({ backends, credentials: { fingerprintKeyFile: 'fp.key' }, routes: [{ name: 'r', match: { path: '/r' } }] });
    const a = validateConfig(raw(), 'a.yaml', mkdtempSync(join(tmpdir(), 'cutover-hash-')));
    const b = validateConfig(raw(), 'b.yaml', mkdtempSync(join(tmpdir(), 'cutover-hash-')));
    expect(a.credentials.fingerprintKeyFile).not.toBe(b.credentials.fingerprintKeyFile);
    expect(a.hash).toBe(b.hash);
    expect(validateConfig({ ...raw(), routes: [{ name: 's', match: { path: '/r' } }] }, 'c.yaml').hash).not.toBe(a.hash);
  });

  it('accepts JSON as well as YAML and applies defaults', () => {
    const config = validateConfig(parseConfigText(JSON.stringify({ backends, routes: [{ name: 'r', match: { path: '/r/:id' } }] }), 'c.json'));
    expect(config.listen.port).toBe(8080);
    expect(config.routes[0]).toMatchObject({ name: 'r', weight: 0, methods: null, shadow: { percent: 100, unsafe: false } });
    expect(config.backends.legacy.timeout).toBe(30_000);
  });

  it('merges route rules over defaults', () => {
    const config = validateConfig({
      backends,
      defaults: { shadow: { percent: 10 }, compare: { ignore: ['$.meta.requestId'], headers: ['content-type'] } },
      routes: [{ name: 'r', match: { path: '/r' }, shadow: { unsafe: true }, compare: { ignore: ['$.etag'] } }],
    });
    expect(config.routes[0].shadow).toMatchObject({ percent: 10, unsafe: true, baselinePercent: 10, maxBaselinesPerSecond: 20 });
    expect(config.routes[0].compare.ignore).toEqual(['$.meta.requestId', '$.etag']);
  });
});

describe('cutover check', () => {
  function check(text: string): { status: number | null; stdout: string; stderr: string } {
    const dir = mkdtempSync(join(tmpdir(), 'cutover-check-'));
    const file = join(dir, 'c.yaml');
    writeFileSync(file, text);
    const r = spawnSync(process.execPath, [CLI, 'check', '--config', file], { encoding: 'utf8' });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  it('prints a summary and exits 0 for a good config', () => {
    const r = check('backends:\n  legacy: { url: "http://127.0.0.1:1" }\n  new: { url: "http://127.0.0.1:2" }\nroutes:\n  - { name: get-widget, match: { path: /v1/widgets/:id } }\n');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('config OK');
    expect(r.stdout).toContain('get-widget');
  });

  it('prints every problem with its path and exits 2', () => {
    const r = check('backends:\n  legacy: { url: "nope" }\n  new: { url: "http://127.0.0.1:2", timeout: "soon" }\nroutes:\n  - { name: a, match: { path: x } }\n');
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('backends.legacy.url');
    expect(r.stderr).toContain('backends.new.timeout');
    expect(r.stderr).toContain('routes[0].match.path: must start with "/"');
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace without --debug
  });

  it('refuses a stray argument, and a listen host that is no address: exit 2 naming the field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cutover-check-'));
    const file = join(dir, 'c.yaml');
    const write = (host: string) => writeFileSync(file, `backends: { legacy: { url: "http://127.0.0.1:1" }, new: { url: "http://127.0.0.1:2" } }\nlisten: { host: "${host}", port: 0 }\nadmin: { port: 0 }\n`);
    write('127.0.0.1');
    const stray = spawnSync(process.execPath, [CLI, 'check', 'extra', '--config', file], { encoding: 'utf8' });
    expect(stray.status).toBe(2);
    expect(stray.stderr).toContain('Unexpected argument "extra" after "check"');
    write('not a host!!');
    const bad = spawnSync(process.execPath, [CLI, 'check', '--config', file], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('listen.host: must be an IP address');
    // A well-formed address this machine does not have fails at start, naming the fields, exit 2.
    write('192.0.2.1');
    const run = spawnSync(process.execPath, [CLI, 'run', '--config', file], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, CUTOVER_NODE_TUNING: 'off' } });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('Cannot listen on 192.0.2.1: it is not an address of this machine; check listen.host and admin.host');
  });

  it('reports YAML syntax errors with their line and exits 2', () => {
    const r = check('backends:\n  legacy: { url: "http://a"\n');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/line \d+/);
  });

  it('exits 2 with one sentence when the file does not exist', () => {
    const r = spawnSync(process.execPath, [CLI, 'check', '--config', '/nonexistent.yaml'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('shipped configs', () => {
  it.each(['config/cutover.example.yaml', 'config/demo.yaml'])('%s is valid', (file) => {
    // The demo config reads its client secret and fingerprint key from variables the demo sets.
    const env = { ...process.env, CUTOVER_DEMO_CLIENT_SECRET: 'x', CUTOVER_DEMO_FINGERPRINT_KEY: 'x' };
    const r = spawnSync(process.execPath, [CLI, 'check', '--config', file], { encoding: 'utf8', env });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
