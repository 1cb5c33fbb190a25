/**
 * Integration (real nats-server, the `npm start` process: runtime node + ingress): a
 * `customer_linked` event feeds the ingress's customer lookup and never reaches a user actor (the
 * node acknowledges it as it arrives: no activation, no commit), while a message on a lane subject
 * of a type that does not exist still becomes a dead letter.
 */
import { encode } from '@msgpack/msgpack';
import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import type { MetricsSnapshot } from '../../actors/metrics.ts';
import { event, registerDevices } from '../support/events.ts';
import { waitFor } from '../support/processes.ts';
import { useSystem } from '../support/system.ts';
import { laneTotals } from '../support/settle.ts';

const system = useSystem({ PORT: '0' }, { script: 'scripts/start.ts' });

/** What the runtime has applied and its normal-lane consumer delivered so far. */
async function runtimeCounts(): Promise<{ metrics: MetricsSnapshot; delivered: number }> {
  const { client } = system();
  return { metrics: await client.metrics(), delivered: (await laneTotals(client, 'normal')).delivered };
}

/** Waits until the node applied `events` events in all and acknowledged everything on the normal lane. */
async function applied(events: number): Promise<void> {
  const { client } = system();
  await waitFor(async () => {
    const normal = await laneTotals(client, 'normal');
    return (await client.metrics()).events >= events && normal.pending === 0 && normal.ackPending === 0;
  }, `${events} events applied and acknowledged`);
}

/**
 * Links `customerId` to a user who already has a record, then sends the same user one event more
 * on the same lane. Stream order makes that event the fact to wait on: once it is applied, a
 * delivered link would have been applied before it.
 */
async function linkThenNext(userId: string, customerId: string) {
  const { client } = system();
  const { events } = await client.metrics();
  await client.publish(...registerDevices(userId, ['phone']));
  await applied(events + 1);
  const before = await runtimeCounts();
  await client.publish(event(userId, 'customer_linked', { customerId }), event(userId, 'device_registered', { deviceId: 'tablet', platform: 'web' }));
  await applied(before.metrics.events + 1);
  const after = await runtimeCounts();
  const customers = await new Kvm(client.nc).open(client.topology.buckets.customers);
  const linked = await waitFor(async () => (await customers.get(customerId))?.string(), 'the link in the customer lookup');
  return { before, after, linked };
}

describe('customer links', () => {
  it('a customer_linked event reaches the customer lookup and no user actor', async () => {
    const { before, after, linked } = await linkThenNext('linked-user', 'cus_linked1');
    expect(linked).toBe('linked-user');
    // Both are delivered to the node; only the device registration is applied and committed.
    expect(after.delivered - before.delivered).toBe(2);
    expect(after.metrics.events - before.metrics.events).toBe(1);
    expect(after.metrics.commits - before.metrics.commits).toBe(1);
    expect(after.metrics.deadLetters).toBe(before.metrics.deadLetters);
    const { client } = system();
    expect((await client.audit()).filter((a) => a.userId === 'linked-user').map((a) => a.eventType)).not.toContain('customer_linked');
  });

  it('a message of a type that does not exist on a lane subject becomes a dead letter', async () => {
    const { client } = system();
    const subject = `${client.topology.subjects.prefix}.evt.linked-user.not_an_event`;
    await client.publishRaw(subject, encode({ type: 'not_an_event', id: 'bogus-1', userId: 'linked-user', at: 1 }));
    const letter = await waitFor(async () => (await client.deadLetters()).find((l) => l.subject === subject), 'the dead letter');
    expect(letter.reason).toBe('invalid');
  });
});
