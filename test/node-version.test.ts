/**
 * CI runs the suite once per Node major it supports (.ci/run: the machine's Node, then Node 24)
 * and says which one it asked for in CUTOVER_EXPECT_NODE_MAJOR. This checks that the run really
 * got it: vitest itself, and the `node` a child process finds on PATH (the CLI tests' children).
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const expected = process.env.CUTOVER_EXPECT_NODE_MAJOR;
const major = (version: string): number => Number(version.replace(/^v/, '').split('.')[0]);

describe('the Node version of this run', () => {
  it('is one the package supports (20 or later)', () => {
    expect(major(process.versions.node)).toBeGreaterThanOrEqual(20);
  });

  it.skipIf(expected === undefined)('is the major the run asked for, in this process and in child processes', () => {
    expect(major(process.versions.node)).toBe(Number(expected));
    const child = spawnSync('node', ['-p', 'process.versions.node'], { encoding: 'utf8' });
    expect(major(child.stdout.trim())).toBe(Number(expected));
    const viaExecPath = spawnSync(process.execPath, ['-p', 'process.versions.node'], { encoding: 'utf8' });
    expect(major(viaExecPath.stdout.trim())).toBe(Number(expected));
  });
});
