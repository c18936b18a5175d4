/**
 * Reading a proxy's metrics in tests the way Prometheus does: over HTTP from its admin listener,
 * then by series. One place, so every test reads the exposition the same way.
 */
import { request } from 'undici';

/** The proxy's `/metrics` text (the admin listener serves it without a token, as Prometheus scrapes it). */
export async function scrape(p: { adminUrl: string }): Promise<string> {
  return (await request(`${p.adminUrl}/metrics`)).body.text();
}

/** One sample's value, by its series exactly as exposed (`name{a="1",b="2"}`, labels in order), or 0 when absent. */
export function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

/** The sum of every sample whose series starts with `prefix`: `name{route="w"` adds up all of that route's series. */
export function total(text: string, prefix: string): number {
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(prefix)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}
