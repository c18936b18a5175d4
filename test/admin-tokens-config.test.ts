import { describe, expect, it } from 'vitest';
import { validateConfig } from '../src/config/load.js';
import { ConfigError } from '../src/errors.js';

const base = { backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } } };

function problems(admin: Record<string, unknown>): string[] {
  try {
    validateConfig({ ...base, admin });
    return [];
  } catch (err) {
    return (err as ConfigError).problems.slice();
  }
}

describe('admin tokens config', () => {
  it('reads named tokens with roles, and admin.tokenEnv as the operator token "admin"', () => {
    process.env.CUTOVER_T1 = 'one';
    process.env.CUTOVER_T2 = 'two';
    const config = validateConfig({ ...base, admin: { tokenEnv: 'CUTOVER_T1', tokens: [{ name: 'dash', role: 'viewer', tokenEnv: 'CUTOVER_T2' }] } });
    expect(config.adminTokens).toEqual([
      { name: 'admin', role: 'operator', secret: 'one' },
      { name: 'dash', role: 'viewer', secret: 'two' },
    ]);
  });

  it('names the field of each problem: no source, two sources, a reused name or secret, an unknown role', () => {
    process.env.CUTOVER_T1 = 'one';
    expect(problems({ tokens: [{ name: 'a', role: 'viewer' }] })).toEqual(['admin.tokens[0]: give tokenFile or tokenEnv (exactly one)']);
    expect(problems({ tokens: [{ name: 'a', role: 'viewer', tokenEnv: 'CUTOVER_T1', tokenFile: 'x' }] })).toEqual(['admin.tokens[0]: give tokenFile or tokenEnv (exactly one)']);
    expect(problems({ tokenEnv: 'CUTOVER_T1', tokens: [{ name: 'admin', role: 'viewer', tokenEnv: 'CUTOVER_T1' }] })).toEqual([
      'admin.tokens[0].name: "admin" is used twice (admin.tokenFile/tokenEnv is the token named "admin")',
      "admin.tokens[0]: the same secret is already another token's; each token needs its own",
    ]);
    expect(problems({ tokens: [{ name: 'a', role: 'root', tokenEnv: 'CUTOVER_T1' }] }).join('\n')).toMatch(/admin\.tokens\.0\.role|admin\.tokens\[0\]\.role/);
    expect(problems({ tokens: [{ name: 'a', role: 'viewer', tokenEnv: 'CUTOVER_NOPE' }] })).toEqual(['admin.tokens[0].tokenEnv: environment variable CUTOVER_NOPE is not set']);
  });
});
