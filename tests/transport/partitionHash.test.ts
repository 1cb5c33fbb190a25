/**
 * The lanes are partitioned by nats-server (a stream subject transform, `{{partition(n,1)}}`), and a
 * node decides which users it serves with `partitionOf`: the two must agree for every user id, or a
 * user's events would be applied by a node that does not own it. Against a real nats-server.
 */
import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { partitionOf } from '../../actors/partitions.ts';
import { SubjectToken } from '../../machines/events.ts';
import { asRuntime, useNatsServer } from '../support/nats-server.ts';
import { laneSubjects, PARTITIONS, partitionedLane, usersIn } from './partitionedLane.ts';

const server = useNatsServer();
let nc: NatsConnection;
let jsm: JetStreamManager;
beforeAll(async () => {
  nc = await connect({ ...asRuntime(), servers: server().url });
  jsm = await jetstreamManager(nc);
});
afterAll(() => nc?.close());

/** Every user id the wire accepts: SubjectToken's alphabet and lengths. */
const userId = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/).filter((id) => SubjectToken.safeParse(id).success);

describe('partitioned lane', () => {
  it('stores each event under the partition partitionOf names, for 1,000 random user ids', async () => {
    const lane = laneSubjects('hash.evt');
    await jsm.streams.add(partitionedLane('HASH', 'hash.evt'));
    const seed = Date.now();
    const [ids] = fc.sample(fc.uniqueArray(userId, { minLength: 1000, maxLength: 1000 }), { numRuns: 1, seed });
    const js = jetstream(nc);
    await Promise.all(ids!.map((id) => js.publish(lane.published(id, 'plan_changed'), id)));

    const stored = Object.keys((await jsm.streams.info('HASH', { subjects_filter: '>' })).state.subjects ?? {});
    expect(stored.sort(), `seed ${seed}`).toEqual(ids!.map((id) => lane.stored(id, 'plan_changed')).sort());
    expect(lane.stored('usr_42', 'plan_changed')).toBe(`hash.evt.${partitionOf('usr_42', PARTITIONS)}.usr_42.plan_changed`);
  });

  it('still drops a re-published Nats-Msg-Id', async () => {
    const lane = laneSubjects('dedup.evt');
    await jsm.streams.add(partitionedLane('DEDUP', 'dedup.evt'));
    const js = jetstream(nc);
    const first = await js.publish(lane.published('usr_42', 'plan_changed'), 'a', { msgID: 'event-1' });
    const again = await js.publish(lane.published('usr_42', 'plan_changed'), 'a', { msgID: 'event-1' });
    expect([first.duplicate, again.duplicate, again.seq]).toEqual([false, true, first.seq]);
    expect((await jsm.streams.info('DEDUP')).state.messages).toBe(1);
  });

  it('gives a consumer filtered on one partition exactly that partition', async () => {
    const lane = laneSubjects('filter.evt');
    await jsm.streams.add(partitionedLane('FILTER', 'filter.evt'));
    const js = jetstream(nc);
    const in7 = usersIn(7, 5);
    const others = [...usersIn(6, 5), ...usersIn(8, 5)];
    for (const id of [...others, ...in7]) await js.publish(lane.published(id, 't'), id);

    const info = await jsm.consumers.add('FILTER', { durable_name: 'p7', filter_subject: lane.partition(7), ack_policy: AckPolicy.Explicit });
    expect(info.num_pending).toBe(in7.length);
    const messages = await (await js.consumers.get('FILTER', 'p7')).fetch({ max_messages: in7.length });
    const seen: string[] = [];
    for await (const m of messages) {
      seen.push(m.subject);
      m.ack();
    }
    expect(seen).toEqual(in7.map((id) => lane.stored(id, 't')));
  });

  it('stores a subject the transform does not match as published, so a stray lane subject is not lost', async () => {
    await jsm.streams.add({ ...partitionedLane('STRAY', 'stray.evt'), subjects: ['stray.evt.>'] });
    const js = jetstream(nc);
    const acks = await Promise.all(['stray.evt.u1', 'stray.evt.u1.t.extra', 'stray.evt.u1.t'].map((s) => js.publish(s, 'x')));
    const subjects = await Promise.all(acks.map(async (a) => (await jsm.streams.getMessage('STRAY', { seq: a.seq }))?.subject));
    expect(subjects).toEqual(['stray.evt.u1', 'stray.evt.u1.t.extra', `stray.evt.${partitionOf('u1', PARTITIONS)}.u1.t`]);
  });
});
