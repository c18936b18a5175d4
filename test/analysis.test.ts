import { describe, expect, it } from 'vitest';
import { Analysis } from '../src/analysis/analysis.js';
import { validateConfig } from '../src/config/load.js';
import type { UpstreamAnswer } from '../src/forward/capture.js';
import { RouteTable } from '../src/routing/table.js';
import { Telemetry } from '../src/telemetry/metrics.js';

function answer(body: string): UpstreamAnswer {
  return { outcome: '2xx', status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(body), truncated: false, seconds: 0.01 };
}

describe('analysis queue', () => {
  it('counts pairs dropped for a full comparison queue against their own route only', async () => {
    const config = validateConfig({
      backends: { legacy: { url: 'http://127.0.0.1:1' }, new: { url: 'http://127.0.0.1:2' } },
      routes: [
        { name: 'busy', match: { path: '/busy' } },
        { name: 'calm', match: { path: '/calm' } },
      ],
    });
    const telemetry = new Telemetry({ defaultMetrics: false });
    const routes = new RouteTable(config.routes, config.defaults, telemetry);
    const analysis = new Analysis(routes, { queueLimit: 2 });
    const pair = (name: string) => ({ route: routes.get(name)!, method: 'GET', path: `/${name}`, primaryIsNew: false, primary: answer('{"a":1}'), shadow: answer('{"a":1}'), baseline: null });
    for (let i = 0; i < 5; i++) analysis.submit(pair('busy'));
    expect(analysis.diffs('busy')!.droppedForOverload).toBe(3);
    expect(analysis.diffs('calm')!.droppedForOverload).toBe(0);
    expect(await telemetry.exposition()).toMatch(/cutover_shadow_skipped_total\{route="busy",reason="overload"\} 3/);
  });
});
