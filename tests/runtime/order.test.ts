/**
 * Integration: a user's events are applied in the order their lane stored them, even when a commit
 * is fenced with later events of the user already received behind it. Before the ordering fix the
 * fenced actor nak'ed what it held; the server sent those back behind the later events, which a new
 * actor had applied meanwhile (the chaos test's e7 after e8 and e9). And a view is stored only over
 * the one its owner knows, never over a newer one another owner stored.
 */
import { describe, expect, it } from 'vitest';
import type { EventOf } from '../../machines/events.ts';
import type { DeviceView } from '../../transport/schemas.ts';
import { encodeDeviceView } from '../../transport/viewWire.ts';
import { event, registerDevices } from '../support/events.ts';
import { waitFor } from '../support/processes.ts';
import { lanesSettled } from '../support/settle.ts';
import { useSystem } from '../support/system.ts';

const system = useSystem();

/** More than the node lets in at once (admission starts at 25 normal deliveries): the rest wait behind the fenced ones. */
const BURST = 60;

describe('a second owner: stream order and the stored view', () => {
  it('a fenced commit with later events of its user waiting: every event applied once, in stream order', async () => {
    const { client, runtime } = system();
    const user = 'order-fenced-user';
    await client.publish(...registerDevices(user, ['phone']), event(user, 'subscription_activated', { subscriptionId: 's', tier: 'premium' }));
    await waitFor(async () => (await client.lastView(user, 'phone'))?.tier === 'premium', 'premium view');

    // The node stands still while the burst is stored, so it receives all of it at once on resuming;
    // meanwhile another writer moves the record on, so the user's first commit after is fenced.
    const burst: EventOf<'assessment_completed'>[] = Array.from({ length: BURST }, () =>
      event(user, 'assessment_completed', { instrument: 'gad7', answers: [0, 1, 0, 1, 0, 1, 0] }),
    );
    runtime.child.kill('SIGSTOP');
    try {
      await client.rewriteUserRecord(user);
      await client.publish(...burst);
    } finally {
      runtime.child.kill('SIGCONT');
    }

    // Long enough to see, before the fix, what a stalled delivery did once its ack wait (30 s) ran out.
    await lanesSettled(client, 45_000);
    const record = (await client.userRecord(user))!;
    // The record remembers the last 32 ids in the order they were applied: the burst's last 32, in order.
    expect(record.state.recentEventIds).toEqual(burst.slice(-32).map((e) => e.id));
    const last = await client.jsm.streams.getMessage(client.topology.streams.normal, { last_by_subj: client.topology.subjects.stored('normal', '*', user, '*') });
    expect(record.lastSeq.normal).toBe(last!.seq);
    expect(runtime.logs.some((l) => l.msg === 'user actor stopped' && l.userId === user)).toBe(true);
  });

  it('a view another owner stored since is never replaced by an older one', async () => {
    const { client } = system();
    const user = 'order-view-user';
    await client.publish(...registerDevices(user, ['phone']), event(user, 'subscription_activated', { subscriptionId: 's', tier: 'premium' }));
    const premium = await waitFor(async () => {
      const view = await client.lastView(user, 'phone');
      return view?.tier === 'premium' ? view : undefined;
    }, 'premium view');
    const { supersededViews } = await client.metrics();
    // What a new owner would have stored meanwhile: a later version, which this node never saw.
    const newer: DeviceView = { ...premium, version: premium.version + 5, issuedAt: Date.now() };
    await client.js.publish(client.topology.subjects.view(user), encodeDeviceView(newer, false).data);
    await client.publish(event(user, 'plan_changed', { subscriptionId: 's', tier: 'basic' }));

    await waitFor(async () => (await client.userRecord(user))?.viewVersion === premium.version + 1, 'the basic commit');
    await lanesSettled(client);
    expect((await client.lastView(user, 'phone'))?.version).toBe(newer.version);
    expect((await client.metrics()).supersededViews).toBe(supersededViews + 1);
  });
});
