/**
 * Integration (real nats-server, runtime and device processes): the runtime node is killed with
 * SIGKILL while 10,000 events for 1,000 users are in flight, a new node is started and killed the
 * same way, and a third one finishes. Every stored record is always the statechart's fold of a
 * prefix of its user's events and ends as the fold of all of them, every device holds the latest
 * view, and no event is applied twice: the last node applies exactly the events not yet durable.
 */
import { describe, expect, it } from 'vitest';
import type { UserEvent } from '../../machines/events.ts';
import { deriveView } from '../../machines/deviceView.ts';
import { applyEvent, createUserState, foldEvents, fromPersisted, toPersisted, type UserState } from '../../machines/userState.ts';
import type { UserRecord } from '../../actors/userStore.ts';
import { decode } from '../../transport/codec.ts';
import { AuditRecord, type DeviceView } from '../../transport/schemas.ts';
import { encodeDeviceView } from '../../transport/viewWire.ts';
import { event, registerDevices } from '../support/events.ts';
import { waitFor } from '../support/processes.ts';
import { killedNodeWritesStored, lanesSettled, settled } from '../support/settle.ts';
import { useSystem } from '../support/system.ts';
import { partitionOf } from '../../actors/partitions.ts';
import { laneConsumerName, PRIORITY_GROUP } from '../../transport/topology.ts';
import type { JsMsg } from '@nats-io/jetstream';

const system = useSystem();

const USERS = 1_000;
const EVENTS_PER_USER = 10;
const TOTAL = USERS * EVENTS_PER_USER;
/**
 * Crash the first node once it reports this many events applied, and the second once it applied
 * this many more: well under way, far from done. Each round of publishing stores 500 spread events
 * then 500 back-to-back ones; these counts put each kill around the back-to-back part of a round
 * (the stream's events 2,500-3,000 and 4,500-5,000), with every spread user part-way.
 */
const CRASH_AFTER_EVENTS = [2_600, 1_900] as const;
const DEVICE = 'phone';

const userId = (n: number) => `crash-u${String(n).padStart(4, '0')}`;

/**
 * A user's ten events, in order, with increasing `at` and one subscription: a device, then plan
 * changes, a failed and a recovered payment, a cancellation and a resubscription. The first tier
 * and the last event vary per user, so users end in premium, basic or the grace period, and some
 * events (a plan change to the tier the user already has) are applied without a transition.
 */
function eventsOf(n: number, start: number): UserEvent[] {
  const user = userId(n);
  const subscriptionId = `sub_${user}`;
  const first = n % 2 === 0 ? 'premium' : 'basic';
  const other = first === 'premium' ? 'basic' : 'premium';
  const at = (i: number) => ({ id: `crash-${user}-${i}`, at: start + i * 1_000 });
  const last: UserEvent =
    n % 3 === 0
      ? event(user, 'payment_failed', { ...at(9), subscriptionId, attemptCount: 1, nextAttemptAt: null })
      : event(user, 'plan_changed', { ...at(9), subscriptionId, tier: n % 3 === 1 ? 'basic' : 'premium' });
  return [
    event(user, 'device_registered', { ...at(0), deviceId: DEVICE, platform: 'ios' }),
    event(user, 'subscription_activated', { ...at(1), subscriptionId, tier: first }),
    event(user, 'plan_changed', { ...at(2), subscriptionId, tier: other }),
    event(user, 'payment_failed', { ...at(3), subscriptionId, attemptCount: 1, nextAttemptAt: start + 86_400_000 }),
    event(user, 'payment_recovered', { ...at(4), subscriptionId }),
    event(user, 'plan_changed', { ...at(5), subscriptionId, tier: 'premium' }),
    event(user, 'plan_changed', { ...at(6), subscriptionId, tier: 'basic' }),
    event(user, 'subscription_canceled', { ...at(7), subscriptionId }),
    event(user, 'plan_changed', { ...at(8), subscriptionId, tier: 'premium' }),
    last,
  ];
}

/** A transition the fold makes: what the node must audit, once. */
interface Transition {
  eventId: string;
  eventType: string;
  from: string;
  to: string;
}

/** A user's events and the statechart's fold of every prefix of them (`prefixes[k]`: the first k). */
interface Expected {
  events: UserEvent[];
  prefixes: UserState[];
  /** The transitions of the whole fold, in order. */
  transitions: Transition[];
}

/** Folds a user's events as the node does (default policy; the trial starts at the first event). */
function expectationsOf(user: string, events: UserEvent[]): Expected {
  let state = createUserState(user, events[0]!.at);
  const prefixes = [state];
  const transitions: Transition[] = [];
  for (const e of events) {
    const before = state.snapshot.value;
    const step = applyEvent(state, e);
    expect(step.outcome).toBe('applied');
    state = step.state;
    prefixes.push(state);
    if (JSON.stringify(before) !== JSON.stringify(state.snapshot.value)) {
      transitions.push({ eventId: e.id, eventType: e.type, from: JSON.stringify(before), to: JSON.stringify(state.snapshot.value) });
    }
  }
  return { events, prefixes, transitions };
}

/** Events of a user whose effects are in its stored record (the event ids it remembers). */
const appliedIn = (record: UserRecord | null | undefined) => record?.state.recentEventIds.length ?? 0;

/** A stored record is the fold of the first events of its user, in order, each once (the whole persisted state). */
function expectFoldOfPrefix(user: string, record: UserRecord, expected: Expected): void {
  const k = appliedIn(record);
  const state = expected.prefixes[k]!;
  expect(record.state.recentEventIds, user).toEqual(expected.events.slice(0, k).map((e) => e.id));
  expect(record.state, user).toEqual(toPersisted(state));
  expect(deriveView(fromPersisted(record.state).snapshot), user).toEqual(deriveView(state.snapshot));
}

describe('crash: kill -9 with 10,000 events for 1,000 users in flight', () => {
  // Its own timeout: a thousand devices signing in through the callout (30–36 s on two cores, each a
  // TLS connection) and ten thousand events through two kills and three nodes, about 75 s in all.
  it('every user ends in the fold of its events, every device holds the latest view, no event applied twice', async () => {
    const sys = system();
    const { client } = sys;
    const users = Array.from({ length: USERS }, (_, i) => userId(i + 1));
    const start = Date.now() - 60_000;
    const expected = new Map(users.map((u, i) => [u, expectationsOf(u, eventsOf(i + 1, start))]));
    const eventsOfUser = (u: string) => expected.get(u)!.events;

    // One device process hosts all 1,000 devices (a second or two to start): every user's device
    // is checked, so a crash between any user's view publish and its save is caught.
    const devicesStarted = Date.now();
    const devices = await sys.devices(...users.map((u) => `${u}:${DEVICE}`));
    console.log(`crash: ${USERS} devices started in ${Date.now() - devicesStarted} ms`);

    // Half the users have their events spread over the stream (event i of all of them, then event
    // i + 1), so all of them are part-way at a kill. The other half have their ten events back to
    // back (each user's published in order on one connection, acknowledged together): the node
    // before a kill may have committed them in other batches than the node after it replays them.
    const spread = users.filter((_, i) => i % 2 === 0);
    const blocks = users.filter((_, i) => i % 2 === 1);
    const blockUsersPerRound = blocks.length / EVENTS_PER_USER;
    const publishing = (async () => {
      for (let i = 0; i < EVENTS_PER_USER; i++) {
        await Promise.all(spread.map((u) => client.publish(eventsOfUser(u)[i]!)));
        const round = blocks.slice(i * blockUsersPerRound, (i + 1) * blockUsersPerRound);
        await Promise.all(round.flatMap((u) => eventsOfUser(u).map((e) => client.publish(e))));
      }
    })();

    /** Waits until the running node applied `events`, kills it, and reads every record meanwhile. */
    const crashAfter = async (events: number) => {
      const polled = await waitFor(async () => {
        const m = await client.metrics();
        return m.events > events ? m : undefined;
      }, `the node to apply ${events} events`, 30_000);
      let durable = new Map<string, UserRecord | null>();
      await sys.restartRuntime({
        crash: true,
        before: async () => {
          await killedNodeWritesStored(client);
          durable = new Map(await Promise.all(users.map(async (u) => [u, await client.userRecord(u)] as const)));
        },
      });
      const total = users.reduce((sum, u) => sum + appliedIn(durable.get(u)), 0);
      const partial = users.filter((u) => appliedIn(durable.get(u)) > 0 && appliedIn(durable.get(u)) < EVENTS_PER_USER);
      return { polled, durable, total, partial };
    };

    // First crash: a good share applied. Second crash: the node that recovered, part-way again.
    const first = await crashAfter(CRASH_AFTER_EVENTS[0]);
    const second = await crashAfter(CRASH_AFTER_EVENTS[1]);
    await publishing;
    for (const [label, crash] of [['first', first], ['second', second]] as const) {
      console.log(
        `crash (${label}): node reported ${crash.polled.events} events applied (${crash.polled.duplicates} duplicates skipped) ` +
          `at its last poll; ${crash.total} events durable at the kill, ${crash.partial.length} users part-way ` +
          `(${crash.partial.filter((u) => blocks.includes(u)).length} with back-to-back events)`,
      );
      // Killed part-way: some events durable, far from all, and every record a fold of a prefix.
      expect(crash.total).toBeGreaterThan(0);
      expect(crash.total).toBeLessThan(TOTAL);
      expect(crash.partial.length).toBeGreaterThan(0);
      for (const u of users) {
        const record = crash.durable.get(u);
        if (record) expectFoldOfPrefix(u, record, expected.get(u)!);
      }
    }
    expect(second.total).toBeGreaterThan(first.total);
    for (const u of users) expect(appliedIn(second.durable.get(u))).toBeGreaterThanOrEqual(appliedIn(first.durable.get(u)));

    // The third node applies the rest.
    const records = new Map<string, UserRecord>();
    await waitFor(
      async () => {
        const missing = users.filter((u) => appliedIn(records.get(u)) < EVENTS_PER_USER);
        const loaded = await Promise.all(missing.map(async (u) => [u, await client.userRecord(u)] as const));
        for (const [u, r] of loaded) if (r) records.set(u, r);
        return loaded.every(([, r]) => appliedIn(r) === EVENTS_PER_USER);
      },
      'every user to have all its events',
      40_000,
    );

    // Final state: the fold of all ten events (the whole persisted state, and the view).
    for (const u of users) expectFoldOfPrefix(u, records.get(u)!, expected.get(u)!);

    // No event applied twice: the last node applied exactly the events that were not durable. Once
    // its lanes are settled, no redelivery is left that could still be applied.
    await lanesSettled(client);
    const after = await client.metrics();
    console.log(
      `crash (after): last node applied ${after.events} events, skipped ${after.duplicates} redelivered duplicates, ` +
        `found ${after.orphanedViews} users with views published but not recorded before the kill`,
    );
    expect(after.events).toBe(TOTAL - second.total);
    expect(after.stale).toBe(0);
    expect(after.fenced).toBe(0);
    expect(after.deadLetters).toBe(0);

    // One audit record per transition of the fold, in order, none twice.
    const audit = await client.readStream(client.topology.streams.audit, (d) => decode(AuditRecord, d));
    const ids = audit.map((a) => a.eventId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(audit).toHaveLength(users.reduce((sum, u) => sum + expected.get(u)!.transitions.length, 0));
    const byUser = Map.groupBy(audit, (a) => a.userId);
    for (const u of users) {
      const got = (byUser.get(u) ?? []).map((a) => ({
        eventId: a.eventId,
        eventType: a.eventType,
        from: JSON.stringify({ subscription: a.from.subscription, crisis: a.from.crisis }),
        to: JSON.stringify({ subscription: a.to.subscription, crisis: a.to.crisis }),
      }));
      expect(got, u).toEqual(expected.get(u)!.transitions);
    }

    // Every device holds the latest view: the stored version, with the fold's tier and status.
    const behind = () => users.filter((u) => devices.latest(`${u}:${DEVICE}`)?.version !== records.get(u)!.viewVersion);
    await waitFor(() => behind().length === 0, 'every device to apply its latest view', 15_000).catch(() => undefined);
    const wrong: string[] = [];
    for (const u of users) {
      const held = devices.latest(`${u}:${DEVICE}`);
      const view = deriveView(expected.get(u)!.prefixes[EVENTS_PER_USER]!.snapshot);
      const record = records.get(u)!;
      if (!held || held.version !== record.viewVersion || held.tier !== view.tier || held.status !== view.status) {
        wrong.push(`${u}: holds v${held?.version} ${held?.tier}/${held?.status}, stored v${record.viewVersion}, fold ${view.tier}/${view.status}`);
      }
    }
    expect(wrong).toEqual([]);
  }, 150_000);

  it('a view published but not recorded before the kill: the next node sends the current view above its version', async () => {
    const sys = system();
    const { client } = sys;
    const user = 'orphan-user';
    const key = `${user}:${DEVICE}`;
    const subscriptionId = `sub_${user}`;
    const devices = await sys.devices(key);
    await client.publish(...registerDevices(user, [DEVICE]), event(user, 'subscription_activated', { subscriptionId, tier: 'premium' }));
    const premium = await devices.waitForView(key, (v) => v.tier === 'premium', 'premium');
    const recorded = await waitFor(async () => {
      const r = await client.userRecord(user);
      return r?.viewVersion === premium.version ? r : undefined;
    }, 'the premium view recorded');

    // What a node killed between publishing a view and saving the record leaves behind: the event
    // unacknowledged in its lane, and its view, one version above the record's, on the device.
    // The real crash (above) leaves this at random; here it is made on purpose, then one more event
    // arrives, so the next node commits both events at once, under the version the device holds.
    const downgrade = event(user, 'plan_changed', { subscriptionId, tier: 'basic' });
    const failed = event(user, 'payment_failed', { subscriptionId, attemptCount: 1, nextAttemptAt: null });
    await sys.restartRuntime({
      crash: true,
      before: async () => {
        await client.publish(downgrade);
        // The killed node had received it: taken from its partition's consumer and never acknowledged
        // (the test pulls once the dead node's pin has timed out).
        const partition = partitionOf(user, client.topology.options.partitions);
        const consumer = await client.js.consumers.get(client.topology.streams.normal, laneConsumerName('normal', partition));
        let taken: JsMsg | undefined;
        for await (const m of await consumer.fetch({ group: PRIORITY_GROUP, max_messages: 1, expires: 5_000 })) taken = m;
        expect(taken?.subject).toBe(client.topology.subjects.stored('normal', partition, user, 'plan_changed'));
        const stored = await client.lastView(user, DEVICE);
        const afterDowngrade = foldEvents(fromPersisted(recorded.state), [downgrade]);
        const orphan: DeviceView = { ...stored!, ...deriveView(afterDowngrade.snapshot), version: premium.version + 1, issuedAt: Date.now() };
        await client.js.publish(client.topology.subjects.view(user), encodeDeviceView(orphan, false).data);
        await devices.waitForView(key, (v) => v.version === premium.version + 1 && v.tier === 'basic', 'the orphaned view');
        await client.publish(failed);
      },
    });

    const grace = await devices.waitForView(key, (v) => v.tier === 'grace_period', 'the grace period view', 10_000);
    await settled(client, devices, key);
    expect(devices.latest(key)).toBe(grace);
    expect(grace.version).toBe(premium.version + 2);
    expect(grace.status).toBe('past_due');
    const record = await waitFor(async () => {
      const r = await client.userRecord(user);
      return r && r.state.recentEventIds.includes(failed.id) ? r : undefined;
    }, 'both events recorded');
    expect(record.viewVersion).toBe(grace.version);
    expect(record.state.value).toEqual(foldEvents(fromPersisted(recorded.state), [downgrade, failed]).snapshot.value);
    expect((await client.lastView(user, DEVICE))!.version).toBe(grace.version);
    expect((await client.metrics()).orphanedViews).toBe(1);
  });

  it('a fenced commit publishes nothing: its events are redelivered at once, recorded, and the view applied once', async () => {
    const sys = system();
    const { client } = sys;
    const user = 'fenced-user';
    const key = `${user}:${DEVICE}`;
    const subscriptionId = `sub_${user}`;
    const devices = await sys.devices(key);
    await client.publish(...registerDevices(user, [DEVICE]), event(user, 'subscription_activated', { subscriptionId, tier: 'premium' }));
    const premium = await devices.waitForView(key, (v) => v.tier === 'premium', 'premium');
    await waitFor(async () => (await client.userRecord(user))?.viewVersion === premium.version, 'the premium view recorded');
    const before = await client.metrics();

    // Another owner writes the record: the node's next commit is fenced before it publishes anything.
    await client.rewriteUserRecord(user);
    const downgrade = event(user, 'plan_changed', { subscriptionId, tier: 'basic' });
    await client.publish(downgrade);
    const basic = await devices.waitForView(key, (v) => v.tier === 'basic', 'basic');
    // Redelivered at once (not after the lane's 30 s ack wait) and recorded by a fresh activation,
    // which publishes the view: no device held a version the record did not know.
    const record = await waitFor(async () => {
      const r = await client.userRecord(user);
      return r?.state.recentEventIds.includes(downgrade.id) ? r : undefined;
    }, 'the downgrade recorded', 5_000);
    await settled(client, devices, key);
    const after = await client.metrics();
    expect(after.fenced).toBe(before.fenced + 1);
    expect(after.activations).toBe(before.activations + 1);
    expect(after.orphanedViews).toBe(before.orphanedViews);
    expect(record.viewVersion).toBe(basic.version);
    expect(devices.applied.get(key)!.filter((v) => v.tier === 'basic')).toHaveLength(1);
    expect(devices.latest(key)!.version).toBe(record.viewVersion);
  });
});
