/**
 * Integration: errors are terminal or transient, never a silent loop. An oversized event is stored
 * as a dead letter with a bounded prefix of its bytes; a record that does not parse dead-letters the
 * user's events once instead of redelivering them forever; a fenced actor's view publish, retrying
 * while the views stream cannot take it, is cancelled and never lands after the new owner's. The
 * node runs under a process title.
 */
import { readFileSync } from 'node:fs';
import { encode as pack } from '@msgpack/msgpack';
import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { decodeUserRecord, encodeUserRecord } from '../../actors/userRecord.ts';
import { UserEvent } from '../../machines/events.ts';
import { encode } from '../../transport/codec.ts';
import { DEAD_LETTER_RAW_BYTES } from '../../transport/schemas.ts';
import { streamConfigs } from '../../transport/topology.ts';
import { event, registerDevices } from '../support/events.ts';
import { waitFor } from '../support/processes.ts';
import { useSystem } from '../support/system.ts';
import { laneTotals } from '../support/settle.ts';

const system = useSystem();

/**
 * A body of exactly `bytes` bytes on a `type` subject: an event padded out in its subscription id
 * (a plain field: a dead letter may keep it, see `transport/deadLetters.ts`).
 */
function oversized(userId: string, type: 'plan_changed' | 'safety_plan_updated', bytes: number): Uint8Array {
  const body = { ...event(userId, 'plan_changed', { subscriptionId: '', tier: 'basic' }), type };
  // Past 65,535 characters msgpack's string header takes 5 bytes instead of the empty string's 1.
  return pack({ ...body, subscriptionId: 'x'.repeat(bytes - pack(body).byteLength - 4) });
}

describe('dead letters always fit', () => {
  it('a 200 KiB event is stored in FM_DLQ as too_large with its first bytes; a personal one without them; the lane goes on', async () => {
    const { client, runtime } = system();
    const user = 'oversized-user';
    await client.publish(...registerDevices(user, ['phone']), event(user, 'subscription_activated', { subscriptionId: 's', tier: 'basic' }));
    const body = oversized(user, 'plan_changed', 200 * 1024);
    const personal = oversized(user, 'safety_plan_updated', 200 * 1024);
    await client.publishRaw(client.topology.subjects.event(user, 'plan_changed'), body);
    await client.publishRaw(client.topology.subjects.event(user, 'safety_plan_updated'), personal);
    await client.publish(event(user, 'plan_changed', { subscriptionId: 's', tier: 'premium' }));

    await waitFor(async () => (await client.lastView(user, 'phone'))?.tier === 'premium', 'premium after the oversized events');
    const letters = await waitFor(async () => {
      const all = (await client.deadLetters()).filter((l) => l.subject.includes(user));
      return all.length >= 2 ? all : undefined;
    }, 'two dead letters');
    expect(body.byteLength).toBe(200 * 1024);
    expect(letters[0]).toMatchObject({ reason: 'too_large', size: body.byteLength, truncated: true, redacted: false });
    expect(letters[0]!.raw).toEqual(body.slice(0, DEAD_LETTER_RAW_BYTES));
    expect(letters[1]).toMatchObject({ reason: 'too_large', size: personal.byteLength, truncated: false, redacted: true, raw: null });
    expect(runtime.logs.filter((l) => l.msg === 'dead letter' && l.reason === 'too_large')).toHaveLength(2);
    expect(runtime.logs.filter((l) => l.msg === 'dead letter not stored' || l.msg === 'transient NATS failure, retrying')).toEqual([]);
  });
});

describe('terminal errors', () => {
  it('a user record that does not parse: each event becomes one dead letter and is acknowledged, never redelivered', async () => {
    const { client, runtime } = system();
    const user = 'corrupt-record-user';
    const users = await new Kvm(client.nc).open(client.topology.buckets.users);
    await users.put(user, new Uint8Array([0xc1, 0xc1, 0xc1]));
    const first = event(user, 'subscription_activated', { subscriptionId: 's', tier: 'premium' });
    const second = event(user, 'plan_changed', { subscriptionId: 's', tier: 'basic' });
    await client.publish(first, second);

    const letters = await waitFor(async () => {
      const all = (await client.deadLetters()).filter((l) => l.subject.includes(user));
      return all.length >= 2 ? all : undefined;
    }, 'a dead letter per event');
    expect(letters.map((l) => l.reason)).toEqual(['rejected', 'rejected']);
    expect(letters.every((l) => l.detail.startsWith('not committed:'))).toBe(true);
    expect(letters.map((l) => l.raw)).toEqual([encode(UserEvent, first), encode(UserEvent, second)]);
    // Acknowledged, not handed back: nothing of the lane stays pending, and each event failed once.
    await waitFor(async () => (await laneTotals(client, 'normal')).ackPending === 0, 'the lane acknowledged');
    expect((await client.deadLetters()).filter((l) => l.subject.includes(user))).toHaveLength(2);
    const stops = runtime.logs.filter((l) => l.msg === 'user actor stopped' && l.userId === user);
    expect(stops.length).toBeGreaterThanOrEqual(1);
    expect(stops.length).toBeLessThanOrEqual(2);
    expect(stops.every((l) => l.level === 50)).toBe(true);
    expect(runtime.running).toBe(true);
  });
});

describe('a fenced actor publishes nothing; output retries through an outage', () => {
  it('the fenced commit sends no view; the new owner’s view, retried while the views stream cannot take it, lands above the other owner’s', async () => {
    const { client, runtime } = system();
    const { topology, jsm } = client;
    const user = 'fenced-retry-user';
    await client.publish(...registerDevices(user, ['phone']), event(user, 'subscription_activated', { subscriptionId: 's', tier: 'premium' }));
    const before = await waitFor(async () => {
      const view = await client.lastView(user, 'phone');
      return view?.tier === 'premium' ? view : undefined;
    }, 'premium view');
    const { retries } = await client.metrics();

    // The views stream stops taking this user's views: every publish gets "no responders" (transient).
    const views = streamConfigs(topology).find((s) => s.name === topology.streams.views)!;
    await jsm.streams.update(views.name, { ...views, subjects: [`${topology.options.prefix}.view.nobody.>`] });
    // Another owner writes the record: its own view went out as the next version.
    const users = await new Kvm(client.nc).open(topology.buckets.users);
    const stored = decodeUserRecord((await users.get(user))!.value);
    await users.put(user, encodeUserRecord({ ...stored, viewVersion: stored.viewVersion + 1 }));
    await client.publish(event(user, 'plan_changed', { subscriptionId: 's', tier: 'basic' }));

    // This node's actor is fenced on its save, before it publishes anything.
    const stop = await waitFor(() => runtime.logs.find((l) => l.msg === 'user actor stopped' && l.userId === user), 'the fenced actor stopped');
    expect(stop.level).toBe(40);
    // The redelivery's actor saves, then retries its view publish with a log line and a count each.
    const retried = await waitFor(() => {
      const lines = runtime.logs.filter((l) => l.msg === 'transient NATS failure, retrying' && l.op === 'publish output');
      return lines.length ? lines : undefined;
    }, 'the new owner retrying its view');
    expect(retried.every((l) => (l.time as number) >= (stop.time as number))).toBe(true);
    expect(retried[0]).toMatchObject({ attempt: 2, delayMs: 50 });
    expect((await client.metrics()).retries).toBeGreaterThan(retries);

    await jsm.streams.update(views.name, views);
    // The new owner (the redelivery, on the stored record) publishes above the other owner's version.
    const after = await waitFor(async () => {
      const view = await client.lastView(user, 'phone');
      return view?.tier === 'basic' ? view : undefined;
    }, 'the new owner’s basic view', 20_000);
    expect(after.version).toBe(before.version + 2);
  });
});

describe('operations', () => {
  it('the node process runs under a title an operator can find in ps and ss', async () => {
    const { runtime } = system();
    const cmdline = readFileSync(`/proc/${runtime.child.pid}/cmdline`, 'utf8');
    const comm = readFileSync(`/proc/${runtime.child.pid}/comm`, 'utf8');
    expect(cmdline.replace(/\0+$/, '')).toBe('fullmind-sync node-1');
    // The kernel keeps 15 characters of a thread's name: what `ss -p` shows.
    expect(comm.trim()).toBe('fullmind-sync n');
  });
});
