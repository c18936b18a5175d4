/**
 * The comparison worker pool when its workers die: comparisons waiting in a dead worker are answered
 * (as "could not compare", never left hanging, which would hold their queue place forever), the
 * worker is replaced a bounded number of times, and then the pool says it is no longer usable.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ComparePool } from '../src/analysis/workers.js';
import type { PairInput } from '../src/analysis/compare-pair.js';
import type { CompareSettings } from '../src/config/load.js';

const dir = mkdtempSync(join(tmpdir(), 'cutover-pool-'));
/** A worker that dies as soon as it is asked to compare. */
const dying = join(dir, 'dying-worker.mjs');
writeFileSync(dying, "import { parentPort } from 'node:worker_threads';\nparentPort.on('message', (m) => { if (m.type === 'compare') process.exit(3); });\n");

const answer = () => ({ status: 200, headers: {}, body: Buffer.from('{"a":1}'), truncated: false });
const pair = (): PairInput => ({ route: 'r', method: 'GET', path: '/x', primaryIsNew: false, primary: answer(), shadow: answer(), baseline: null });
// The dying worker never reads the settings.
const settings = {} as CompareSettings;

describe('comparison worker pool', () => {
  it('answers the comparisons of a worker that died, replaces it a bounded number of times, then gives up', async () => {
    const pool = new ComparePool(1, pathToFileURL(dying));
    try {
      for (let i = 0; i < 6; i++) {
        expect(pool.usable).toBe(true);
        const compared = await pool.compare(pair(), settings);
        expect(compared).toEqual({ baseline: null, main: null, failure: 'compare_failed: comparison worker exited' });
      }
      // Five replacements, all dead: the analysis compares on its own thread from now on.
      expect(pool.usable).toBe(false);
      expect(await pool.compare(pair(), settings)).toEqual({ baseline: null, main: null, failure: 'compare_failed: no comparison worker' });
    } finally {
      await pool.close();
    }
  });
});
