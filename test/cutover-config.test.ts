import { describe, expect, it } from 'vitest';
import { validateConfig } from '../src/config/load.js';
import { controllerConfig } from '../src/cutover/controller.js';
import { ConfigError } from '../src/errors.js';

const backends = { legacy: { url: 'http://127.0.0.1:9101' }, new: { url: 'http://127.0.0.1:9102' } };

function problems(cutover: unknown, routes: unknown[] = []): string[] {
  try {
    validateConfig({ backends, routes, cutover }, 'test.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

describe('cutover config', () => {
  it('has defaults for every key', () => {
    const config = validateConfig({ backends, routes: [{ name: 'r', match: { path: '/r' } }] });
    expect(config.cutover).toMatchObject({
      steps: [0, 1, 5, 25, 50, 100],
      interval: 30_000,
      holdIntervals: 2,
      failureThreshold: 3,
      mode: 'auto',
      gates: {},
      audit: { path: undefined },
      state: { store: 'file', path: 'state/cutover.json' },
    });
    expect(config.routes[0].gates).toEqual({ minComparisons: 200, maxMismatchRate: 0.01, maxErrorRateIncrease: 0.005, maxLatencyRatio: 1.5 });
  });

  it('merges routes[].gates over cutover.gates over the defaults', () => {
    const config = validateConfig({
      backends,
      cutover: { gates: { minComparisons: 50, maxMismatchRate: 0.02 }, interval: '5s', steps: [0, 10, { pause: true }, 100], mode: 'observe' },
      routes: [
        { name: 'a', match: { path: '/a' }, gates: { maxMismatchRate: 0.1 } },
        { name: 'b', match: { path: '/b' }, after: ['a'] },
      ],
    });
    const { settings, routes } = controllerConfig(config);
    expect(settings).toMatchObject({ intervalMs: 5_000, steps: [0, 10, { pause: true }, 100], mode: 'observe' });
    expect(routes[0].gates).toEqual({ minComparisons: 50, maxMismatchRate: 0.1, maxErrorRateIncrease: 0.005, maxLatencyRatio: 1.5 });
    expect(routes[1]).toMatchObject({ name: 'b', after: ['a'], gates: { maxMismatchRate: 0.02 } });
  });

  it('validates steps, naming the path', () => {
    expect(problems({ steps: [0, 5, 5, 100] })).toEqual(['cutover.steps[2]: must be above the step before it (5); steps go up']);
    expect(problems({ steps: [0, 50] })).toEqual(['cutover.steps[1]: the last step must be 100']);
    expect(problems({ steps: [0, 120] })[0]).toMatch(/^cutover\.steps\[1\]/);
    expect(problems({ steps: [{ pause: true }, 100] })).toEqual(['cutover.steps[0]: a pause step must sit between two percent steps']);
    expect(problems({ steps: [0, { pause: true }, { pause: true }, 100] })).toEqual(['cutover.steps[2]: a pause step must sit between two percent steps']);
    expect(problems({ steps: [0, { pause: false }, 100] })[0]).toMatch(/^cutover\.steps\[1\]/);
    expect(problems({ mode: 'yolo' })[0]).toMatch(/^cutover\.mode/);
    expect(problems({ gates: { maxMismatchRate: 2 } })[0]).toMatch(/^cutover\.gates\.maxMismatchRate/);
    expect(problems({ gates: { bogus: 1 } })[0]).toMatch(/^cutover\.gates: unknown key "bogus"/);
    expect(problems({}, [{ name: 'r', match: { path: '/r' }, gates: { maxLatencyRatio: 0.5 } }])[0]).toMatch(/^routes\[0\]\.gates\.maxLatencyRatio/);
  });

  it('refuses an interval past what Node\'s timers take (they would judge every 1 ms), naming the key', () => {
    expect(problems({ interval: '600h' })).toEqual([expect.stringMatching(/^cutover\.interval: must be at most 596h/)]);
    expect(problems({ interval: '596h' })).toEqual([]);
  });

  it('refuses percents finer than the split (0.01) and routes waiting for each other in a ring', () => {
    expect(problems({ steps: [0, 0.004, 33.333, 100] }, [{ name: 'r', match: { path: '/r' }, weight: 0.004 }])).toEqual([
      'routes[0].weight: must be a multiple of 0.01 (traffic is split in hundredths of a percent)',
      'cutover.steps[1]: must be a multiple of 0.01 (traffic is split in hundredths of a percent)',
      'cutover.steps[2]: must be a multiple of 0.01 (traffic is split in hundredths of a percent)',
    ]);
    expect(problems({ steps: [0, 0.01, 33.33, 100] }, [{ name: 'r', match: { path: '/r' }, weight: 0.07 }])).toEqual([]);
    const ring = [
      { name: 'a', match: { path: '/a' }, after: ['b'] },
      { name: 'b', match: { path: '/b' }, after: ['c'] },
      { name: 'c', match: { path: '/c' }, after: ['a'] },
    ];
    expect(problems({}, ring)).toEqual(['routes[0].after: the routes wait for each other in a ring (a -> b -> c -> a), so none would ever start']);
    expect(problems({}, [ring[0], ring[1], { name: 'c', match: { path: '/c' } }])).toEqual([]);
  });

  it('reads the webhook from the config, a variable or a file, and accepts only one', () => {
    process.env.CUTOVER_TEST_HOOK = 'http://127.0.0.1:1/hook';
    expect(validateConfig({ backends, cutover: { webhookEnv: 'CUTOVER_TEST_HOOK' } }).cutoverWebhook).toBe('http://127.0.0.1:1/hook');
    expect(validateConfig({ backends, cutover: { webhook: 'https://hooks.example/x' } }).cutoverWebhook).toBe('https://hooks.example/x');
    expect(problems({ webhook: 'https://hooks.example/x', webhookEnv: 'CUTOVER_TEST_HOOK' })).toEqual(['cutover: give one of webhook, webhookFile or webhookEnv']);
    expect(problems({ webhookEnv: 'CUTOVER_TEST_UNSET_HOOK' })).toEqual(['cutover.webhookEnv: environment variable CUTOVER_TEST_UNSET_HOOK is not set']);
    process.env.CUTOVER_TEST_HOOK = 'ftp://x';
    expect(problems({ webhookEnv: 'CUTOVER_TEST_HOOK' })).toEqual(['cutover.webhookEnv: does not hold an http:// or https:// URL']);
    delete process.env.CUTOVER_TEST_HOOK;
  });
});
