/**
 * Config checks through the CLI (issue 9, row 6): what `run` would die on is caught by `check`
 * with the field's path and exit 2; URL userinfo is masked in every output; YAML errors give the
 * real line; alias expansion is bounded.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI } from '../helpers/proxy.js';

function check(yaml: string): { code: number | null; stdout: string; stderr: string } {
  const dir = mkdtempSync(join(tmpdir(), 'cutover-check-'));
  const file = join(dir, 'cutover.yaml');
  writeFileSync(file, yaml);
  const r = spawnSync(process.execPath, [CLI, 'check', '--config', file], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const BACKENDS = `backends:
  legacy: { url: "http://127.0.0.1:9101" }
  new: { url: "http://127.0.0.1:9102" }
`;

describe('cutover check', () => {
  it.each([
    ['10.0.0.0/abc', 'listen.trustedProxies[0]'],
    ['10.0.0.0/33', 'listen.trustedProxies[0]'],
    ['fd00::/129', 'listen.trustedProxies[0]'],
    ['not-an-ip', 'listen.trustedProxies[0]'],
  ])('rejects trustedProxies %s naming %s, exit 2', (entry, path) => {
    const r = check(`listen:\n  trustedProxies: ["${entry}"]\n${BACKENDS}`);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${path}:`);
    expect(r.stderr).not.toMatch(/Unexpected failure/);
  });

  it('accepts good CIDR blocks', () => {
    const r = check(`listen:\n  trustedProxies: ["10.0.0.0/8", "192.168.1.7", "fd00::/8"]\n${BACKENDS}`);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it.each([
    ['backends.legacy.timeout', `backends:\n  legacy: { url: "http://127.0.0.1:9101", timeout: 0s }\n  new: { url: "http://127.0.0.1:9102" }\n`],
    ['backends.new.connectTimeout', `backends:\n  legacy: { url: "http://127.0.0.1:9101" }\n  new: { url: "http://127.0.0.1:9102", connectTimeout: 0ms }\n`],
    ['shadow.timeout', `${BACKENDS}shadow: { timeout: 0 }\n`],
    ['listen.bodyIdleTimeout', `listen: { bodyIdleTimeout: 0s }\n${BACKENDS}`],
    ['listen.requestTimeout', `listen: { requestTimeout: 0s }\n${BACKENDS}`],
  ])('rejects a zero timeout at %s, exit 2', (path, yaml) => {
    const r = check(yaml);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${path}: must be greater than 0`);
  });

  it('rejects a controller interval under 100 ms (0 spun the controller), exit 2', () => {
    for (const interval of ['0s', '50ms']) {
      const r = check(`${BACKENDS}cutover: { interval: ${interval} }\n`);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('cutover.interval: must be at least 100ms');
    }
    expect(check(`${BACKENDS}cutover: { interval: 100ms }\n`).code).toBe(0);
  });

  it('masks URL userinfo in the summary and in errors', () => {
    const ok = check(`backends:\n  legacy: { url: "http://svc:S3CR3T@127.0.0.1:9101" }\n  new: { url: "https://bot:hunter2@127.0.0.1:9102/v2" }\n`);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('http://svc:***@127.0.0.1:9101');
    expect(ok.stdout).toContain('https://bot:***@127.0.0.1:9102/v2');
    expect(ok.stdout + ok.stderr).not.toMatch(/S3CR3T|hunter2/);

    const bad = check(`backends:\n  legacy: { url: "ftp://svc:S3CR3T@127.0.0.1:9101", timeout: 0s }\n  new: { url: "http://bot:hunter2@127.0.0.1:9102?x=1" }\n`);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('backends.legacy.url');
    expect(bad.stderr + bad.stdout).not.toMatch(/S3CR3T|hunter2/);
  });

  it('gives the real (1-based) line of a YAML error', () => {
    const r = check(`${BACKENDS}routes:\n  - name: a\n    match: { path: /a\n`);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/line [5-7]:/);
    expect(r.stderr).not.toMatch(/line 0:/);
    const dup = check(`listen: { port: 1 }\n${BACKENDS}listen: { port: 2 }\n`);
    expect(dup.code).toBe(2);
    expect(dup.stderr).toMatch(/line 5: Map keys must be unique/);
  });

  it('refuses a YAML alias bomb with a clear error, exit 2', () => {
    const levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 9; i++) {
      const prev = String.fromCharCode(96 + i);
      const name = String.fromCharCode(97 + i);
      levels.push(`${name}: &${name} [${Array(9).fill(`*${prev}`).join(',')}]`);
    }
    const r = check(`${BACKENDS}${levels.map((l) => `x-${l}`).join('\n').replace(/^x-(\w): /gm, 'x$1: ')}\n`);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/aliases expand/);
    expect(r.stderr).not.toMatch(/Unexpected failure/);
  });
});
