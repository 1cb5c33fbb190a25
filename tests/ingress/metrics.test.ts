/**
 * Integration: /metrics of `npm start`'s process exposes the node's metrics natively for
 * Prometheus (counters that only grow, latency histograms in seconds, resident gauges, each with
 * the node label), and agrees with the JSON snapshot a node answers on `fm.ctl.metrics`.
 */
import { describe, expect, it } from 'vitest';
import { event, registerDevices } from '../support/events.ts';
import { waitFor } from '../support/processes.ts';
import { useSystem } from '../support/system.ts';

const system = useSystem({ FM_NODE_ID: 'metrics-node' }, { script: 'scripts/start.ts' });

async function scrape(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${system().runtime.httpPort}/metrics`);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

/** The value of one sample: `name{…labels…} value`, every given label present. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const wanted = Object.entries({ node: 'metrics-node', ...labels }).map(([k, v]) => `${k}="${v}"`);
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && wanted.every((w) => l.slice(0, l.indexOf('}')).includes(w)));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('/metrics', () => {
  it('counts events with a counter that grows, times them in a histogram with buckets, and labels the node', async () => {
    const { client } = system();
    const before = await scrape();
    expect(before).toMatch(/^# TYPE fm_events_applied_total counter$/m);
    expect(before).toMatch(/^# TYPE fm_event_latency_seconds histogram$/m);
    expect(before).toMatch(/^# TYPE fm_residents gauge$/m);
    const applied = sample(before, 'fm_events_applied_total')!;
    expect(applied).toBeGreaterThanOrEqual(0);

    const user = 'metrics-user';
    await client.publish(...registerDevices(user, ['phone']), event(user, 'subscription_activated', { subscriptionId: 's', tier: 'premium' }), event(user, 'crisis_button'));
    await waitFor(async () => (await client.lastView(user, 'phone'))?.crisis.active, 'crisis view');
    const json = await waitFor(async () => {
      const m = await client.metrics();
      return m.events >= applied + 3 && m.crisisLatencyMs.count > 0 ? m : undefined;
    }, 'the events applied');

    const after = await scrape();
    expect(sample(after, 'fm_events_applied_total')).toBeGreaterThan(applied);
    expect(sample(after, 'fm_events_applied_total')).toBe(json.events);
    expect(sample(after, 'fm_crises_started_total')).toBe(json.crises);
    expect(sample(after, 'fm_residents')).toBe(json.residents);
    // Buckets in seconds, cumulative up to +Inf = the count; the crisis budget (0.2 s) is a bound.
    const count = sample(after, 'fm_crisis_latency_seconds_count')!;
    expect(count).toBe(json.crisisLatencyMs.count);
    const buckets = ['0.001', '0.01', '0.2', '0.5', '+Inf'].map((le) => sample(after, 'fm_crisis_latency_seconds_bucket', { le })!);
    expect(buckets.every((b, i) => i === 0 || b >= buckets[i - 1]!)).toBe(true);
    expect(buckets.at(-1)).toBe(count);
    expect(sample(after, 'fm_crisis_latency_seconds_sum')).toBeGreaterThan(0);
    expect(sample(after, 'fm_event_latency_seconds_count')).toBeGreaterThanOrEqual(3);
    expect(sample(after, 'fm_activation_seconds_count')).toBeGreaterThanOrEqual(1);
    // Every series of ours names the node; the ingress's own metrics too.
    const ours = after.split('\n').filter((l) => l.startsWith('fm_'));
    expect(ours.length).toBeGreaterThan(20);
    expect(ours.filter((l) => !l.includes('node="metrics-node"'))).toEqual([]);
    expect(after).toMatch(/^process_cpu_user_seconds_total\{node="metrics-node"\} /m);
    expect(after).not.toMatch(/fm_runtime\{/);
  });
});
