/**
 * Partition consumers with a `pinned_client` priority group (DESIGN §8): what nats-server 2.15 and
 * @nats-io/jetstream 3.4.0 do that partition ownership relies on. One pinned puller at a time,
 * `unpin` hands over, `reset` rewinds to the ack floor under the same pin (the runtime's takeover;
 * a delete and re-create instead stalls the pinned iterator until it misses two heartbeats), and
 * the priority settings can be changed on an existing consumer. Against a real nats-server; waits on facts.
 */
import {
  AckPolicy,
  jetstream,
  jetstreamManager,
  type ConsumerConfig,
  type ConsumerInfo,
  type ConsumerMessages,
  type ConsumerNotification,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asRuntime, useNatsServer } from '../support/nats-server.ts';
import { waitFor } from '../support/processes.ts';
import { laneSubjects, partitionedLane, usersIn } from './partitionedLane.ts';

const server = useNatsServer();
const STREAM = 'PINNED';
const GROUP = 'owners';
const lane = laneSubjects('pin.evt');
let admin: NatsConnection;
let jsm: JetStreamManager;
const owners: Owner[] = [];

beforeAll(async () => {
  admin = await connect({ ...asRuntime(), servers: server().url });
  jsm = await jetstreamManager(admin);
  await jsm.streams.add(partitionedLane(STREAM, 'pin.evt'));
});
afterAll(async () => {
  await Promise.all(owners.map((o) => o.nc.close()));
  await admin?.close();
});

/**
 * A partition consumer. `ack_wait` is far beyond the test's timeout, so any redelivery seen is the
 * one the test caused; the pin times out after 2 s of silence from the pinned client.
 */
function partitionConsumer(p: number): Partial<ConsumerConfig> & { durable_name: string } {
  return {
    durable_name: `p${p}`,
    filter_subject: lane.partition(p),
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(10 * 60_000),
    priority_groups: [GROUP],
    priority_policy: 'pinned_client',
    priority_timeout: nanos(2_000),
  };
}

/**
 * The client the group is pinned to, from consumer info: the server reports it, but
 * @nats-io/jetstream 3.4.0's `ConsumerInfo` type does not declare the field.
 */
async function pinnedClient(consumer: string): Promise<string | undefined> {
  const info: ConsumerInfo & { priority_groups?: Array<{ group: string; pinned_client_id?: string }> } = await jsm.consumers.info(
    STREAM,
    consumer,
  );
  return info.priority_groups?.find((g) => g.group === GROUP)?.pinned_client_id;
}

/** A would-be owner of a partition: its own connection pulling through the group. */
class Owner {
  readonly nc: NatsConnection;
  readonly iterator: ConsumerMessages;
  readonly messages: JsMsg[] = [];
  readonly statuses: ConsumerNotification['type'][] = [];
  /** Acknowledge each message as it arrives. */
  autoAck = true;

  private constructor(nc: NatsConnection, iterator: ConsumerMessages) {
    this.nc = nc;
    this.iterator = iterator;
    void this.read();
  }

  static async start(consumer: string, expiresMs = 2_000): Promise<Owner> {
    const nc = await connect({ ...asRuntime(), servers: server().url });
    const c = await jetstream(nc).consumers.get(STREAM, consumer);
    const owner = new Owner(nc, await c.consume({ group: GROUP, max_messages: 10, expires: expiresMs }));
    owners.push(owner);
    return owner;
  }

  private async read(): Promise<void> {
    void (async () => {
      for await (const s of this.iterator.status()) this.statuses.push(s.type);
    })();
    for await (const m of this.iterator) {
      this.messages.push(m);
      if (this.autoAck) m.ack();
    }
  }

  seqs(): number[] {
    return this.messages.map((m) => m.seq);
  }
}

/** Publishes one event for each user, in order; returns the stream sequences. */
async function publish(users: string[]): Promise<number[]> {
  const js = jetstream(admin);
  const seqs: number[] = [];
  for (const u of users) seqs.push((await js.publish(lane.published(u, 't'), u)).seq);
  return seqs;
}

describe('pinned_client partition consumers', () => {
  it('deliver to one pinned client only, and hand over on unpin', async () => {
    const ci = await jsm.consumers.add(STREAM, partitionConsumer(1));
    expect([ci.config.priority_groups, ci.config.priority_policy, ci.config.priority_timeout]).toEqual([[GROUP], 'pinned_client', nanos(2_000)]);
    const users = usersIn(1, 10, 'a');
    const first = await Owner.start('p1');
    const second = await Owner.start('p1');
    const before = await publish(users);
    await waitFor(() => first.messages.length + second.messages.length === before.length, 'every message delivered');
    const [pinned, waiting] = first.messages.length > 0 ? [first, second] : [second, first];
    expect([pinned.seqs(), waiting.seqs()]).toEqual([before, []]);
    expect(pinned.statuses).toContain('consumer_pinned');
    const pinId = await pinnedClient('p1');
    expect(pinId).toBeTruthy();

    await jsm.consumers.unpin(STREAM, 'p1', GROUP);
    const after = await publish(users);
    await waitFor(() => waiting.messages.length === after.length, 'the waiting client to take over');
    expect([pinned.seqs(), waiting.seqs()]).toEqual([before, after]);
    expect(pinned.statuses).toContain('consumer_unpinned');
    expect(waiting.statuses).toContain('consumer_pinned');
    expect(await pinnedClient('p1')).not.toBe(pinId);
  });

  it('rewind to the ack floor with reset: the pin holds and the unacked messages come again in order at once', async () => {
    await jsm.consumers.add(STREAM, partitionConsumer(2));
    const owner = await Owner.start('p2');
    const users = usersIn(2, 6, 'b');
    const acked = await publish(users.slice(0, 2));
    await waitFor(() => owner.messages.length === 2, 'the first two delivered');
    owner.autoAck = false;
    const held = await publish(users.slice(2));
    await waitFor(() => owner.messages.length === 6, 'the rest delivered');
    const before = await jsm.consumers.info(STREAM, 'p2');
    const pinId = await pinnedClient('p2');
    expect([before.ack_floor.stream_seq, before.num_ack_pending]).toEqual([acked.at(-1), held.length]);
    const stale = owner.messages.splice(2);

    const reset = await jsm.consumers.reset(STREAM, 'p2', before.ack_floor.stream_seq + 1);
    expect(reset.reset_seq).toBe(held[0]);
    await waitFor(() => owner.messages.length === 2 + held.length, 'the unacked messages again');
    const again = owner.messages.slice(2);
    expect(again.map((m) => m.seq)).toEqual(held);
    // The redelivery looks like a first delivery: delivery sequences start again at 1, delivery count 1.
    expect(again.map((m) => [m.info.deliverySequence, m.info.deliveryCount])).toEqual(held.map((_, i) => [i + 1, 1]));
    expect(owner.statuses).not.toContain('consumer_deleted');
    expect([pinId, await pinnedClient('p2')]).toEqual([expect.any(String), pinId]);

    // So an ack sent for a delivery from before the reset acknowledges the new one.
    expect(await stale[0]!.ackAck()).toBe(true);
    expect((await jsm.consumers.info(STREAM, 'p2')).ack_floor.stream_seq).toBe(held[0]);
  });

  it('take priority settings on update of an existing consumer', async () => {
    await jsm.consumers.add(STREAM, { durable_name: 'plain', filter_subject: lane.partition(4), ack_policy: AckPolicy.Explicit });
    const { durable_name: _, ...pinned } = partitionConsumer(4);
    const made = await jsm.consumers.update(STREAM, 'plain', pinned);
    expect([made.config.priority_groups, made.config.priority_policy]).toEqual([[GROUP], 'pinned_client']);
    const changed = await jsm.consumers.update(STREAM, 'plain', { priority_timeout: nanos(5_000), priority_groups: [GROUP, 'spare'] });
    expect([changed.config.priority_groups, changed.config.priority_timeout]).toEqual([[GROUP, 'spare'], nanos(5_000)]);
  });
});
