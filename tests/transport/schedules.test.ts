/**
 * Deadlines as server-side message schedules in a partitioned lane (DESIGN §8): a schedule stored on
 * its own subject fires its payload onto the user's lane subject, and the lane's subject transform
 * files it under the user's partition, where that partition's consumer reads it. Replacing and
 * cancelling a schedule. Against a real nats-server (2.12+); waits on deliveries, never on time.
 */
import { AckPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partitionOf } from '../../actors/partitions.ts';
import { asRuntime, useNatsServer } from '../support/nats-server.ts';
import { laneSubjects, PARTITIONS, partitionedLane } from './partitionedLane.ts';

const server = useNatsServer();
const STREAM = 'SCHED';
const lane = laneSubjects('fm.evt');
/** Schedules live on `fm.sched.<user>.<deadline>`: one subject per pending deadline of a user. */
const schedule = (userId: string, deadline: string) => `fm.sched.${userId}.${deadline}`;
let nc: NatsConnection;
let jsm: JetStreamManager;
let js: JetStreamClient;

beforeAll(async () => {
  nc = await connect({ ...asRuntime(), servers: server().url });
  jsm = await jetstreamManager(nc);
  js = jetstream(nc);
  await jsm.streams.add(partitionedLane(STREAM, 'fm.evt', { subjects: ['fm.sched.>'], allow_msg_schedules: true }));
});
afterAll(() => nc?.close());

/**
 * The first `count` messages stored for a user in its partition (`fm.evt.<p>.<user>.*`), read by a
 * consumer created for the call; the user narrows the partition so that tests do not share messages.
 */
async function readPartition(userId: string, count: number): Promise<JsMsg[]> {
  const name = `read_${userId}`;
  await jsm.consumers.add(STREAM, { durable_name: name, filter_subject: lane.stored(userId, '*'), ack_policy: AckPolicy.Explicit });
  const messages: JsMsg[] = [];
  const iterator = await (await js.consumers.get(STREAM, name)).consume({ max_messages: count });
  for await (const m of iterator) {
    messages.push(m);
    m.ack();
    if (messages.length === count) break;
  }
  await jsm.consumers.delete(STREAM, name);
  return messages;
}

const soon = (ms: number) => new Date(Date.now() + ms);

describe('message schedules in a partitioned lane', () => {
  it('keeps the schedule on its own subject and fires it into the user partition', async () => {
    const user = 'usr_42';
    const ack = await js.publish(schedule(user, 'grace'), 'grace-payload', {
      schedule: { specification: soon(500), target: lane.published(user, 'grace_ended') },
    });
    expect((await jsm.streams.getMessage(STREAM, { seq: ack.seq }))?.subject).toBe(schedule(user, 'grace'));

    const [fired] = await readPartition(user, 1);
    expect(fired!.subject).toBe(`fm.evt.${partitionOf(user, PARTITIONS)}.${user}.grace_ended`);
    expect(fired!.string()).toBe('grace-payload');
    expect(fired!.headers?.get('Nats-Scheduler')).toBe(schedule(user, 'grace'));
    // A fired @at schedule is removed: nothing is left on the schedule subject.
    expect((await jsm.streams.info(STREAM, { subjects_filter: schedule(user, 'grace') })).state.subjects).toBeUndefined();
  });

  it('does not carry the schedule message headers (Nats-Msg-Id included) to the fired message', async () => {
    const user = 'usr_hdr';
    await js.publish(schedule(user, 'trial'), 'x', {
      msgID: 'deadline-1',
      schedule: { specification: soon(300), target: lane.published(user, 'trial_ended') },
    });
    const [fired] = await readPartition(user, 1);
    expect(fired!.headers?.get('Nats-Msg-Id')).toBe('');
  });

  it('refuses a target on the partitioned subject when the stream does not list it', async () => {
    const user = 'usr_7';
    await expect(
      js.publish(schedule(user, 'grace'), 'x', { schedule: { specification: soon(500), target: lane.stored(user, 'grace_ended') } }),
    ).rejects.toThrow('message schedules target is invalid');
  });

  it('replaces a schedule published again on its subject, and cancels one purged by subject', async () => {
    const user = 'usr_9';
    const target = lane.published(user, 'grace_ended');
    await js.publish(schedule(user, 'grace'), 'v1', { schedule: { specification: soon(300), target } });
    await js.publish(schedule(user, 'grace'), 'v2', { schedule: { specification: soon(600), target } });
    await js.publish(schedule(user, 'trial'), 'cancelled', { schedule: { specification: soon(300), target } });
    await jsm.streams.purge(STREAM, { filter: schedule(user, 'trial') });
    // Due after the others: once it fired, a schedule due before it would have fired too.
    await js.publish(schedule(user, 'last'), 'sentinel', { schedule: { specification: soon(1200), target } });

    const fired = await readPartition(user, 2);
    expect(fired.map((m) => m.string())).toEqual(['v2', 'sentinel']);
    expect((await jsm.streams.info(STREAM, { subjects_filter: lane.stored(user, '*') })).state.subjects).toEqual({
      [lane.stored(user, 'grace_ended')]: 2,
    });
  });
});
