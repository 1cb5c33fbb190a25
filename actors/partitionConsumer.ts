/**
 * One lane of one partition, consumed by this node while it holds the partition. The partition's
 * durable consumer has a `pinned_client` priority group, so the server lets one client pull it at a
 * time; taking it over therefore starts with an `unpin` of whoever held it last.
 *
 * In stream order, always (`deliveryOrder.ts`): every session starts with a reset of the consumer
 * to its ack floor (nats-server 2.14+; the consumer and its pin group stay), so it delivers again,
 * in stream order, everything from the first unacknowledged message, with delivery sequences from
 * 1. Each delivery must then be the next one of a later message; the first that is not (a delivery
 * lost in flight, a redelivery behind newer ones) ends the session, and the node replays the lane
 * from its ack floor. A delivery lost just before a quiet spell is noticed when the server sends it
 * again, an ack wait later (5 s on the crisis lane, 30 s on the normal one): its gap replays the lane.
 * Messages up to the last one delivered before the reset may have been partly processed (views
 * out, record not saved) and are marked redelivered; a user skips what it applied by its sequence.
 */
import type { ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import type { Lane } from '../transport/subjects.ts';
import { laneConsumerName, PRIORITY_GROUP, type PinnedConsumerInfo, type Topology } from '../transport/topology.ts';
import { DeliveryOrder, type OrderBreak } from './deliveryOrder.ts';

/** What the node does with each message of a partition lane. */
export interface PartitionSink {
  /** A message from the lane, in stream order; `redelivered` when it may have been partly processed before (by any holder). */
  receive(lane: Lane, m: JsMsg, redelivered: boolean): void;
  /** The server unpinned this node: another client took the partition, or the consumer's new leader does not know the pin. */
  lost(partition: number): void;
  /** The lane's deliveries are no longer its stream order: nothing more of this session is received. */
  outOfOrder(lane: Lane, partition: number, why: OrderBreak): void;
}

/** Consumes one lane of one partition. */
export class PartitionConsumer {
  readonly lane: Lane;
  readonly partition: number;
  private readonly js: JetStreamClient;
  private readonly jsm: JetStreamManager;
  private readonly topology: Topology;
  private readonly sink: PartitionSink;
  private readonly pull: { max_messages: number; expires: number };
  private messages: ConsumerMessages | undefined;
  private loops: Promise<void>[] = [];

  constructor(
    js: JetStreamClient,
    jsm: JetStreamManager,
    topology: Topology,
    lane: Lane,
    partition: number,
    pull: { max_messages: number; expires: number },
    sink: PartitionSink,
  ) {
    this.js = js;
    this.jsm = jsm;
    this.topology = topology;
    this.lane = lane;
    this.partition = partition;
    this.pull = pull;
    this.sink = sink;
  }

  private get stream(): string {
    return this.topology.streams[this.lane];
  }

  private get name(): string {
    return laneConsumerName(this.lane, this.partition);
  }

  /**
   * Starts a session: unpins the last holder (this node too, when it replays), rewinds the consumer
   * to its ack floor and consumes, checking every delivery's order.
   */
  async start(yieldEvery: number): Promise<void> {
    const info: PinnedConsumerInfo = await this.jsm.consumers.info(this.stream, this.name);
    if (info.priority_groups?.some((g) => g.pinned_client_id)) await this.jsm.consumers.unpin(this.stream, this.name, PRIORITY_GROUP);
    // After a reset every delivery counts as a first one: what was delivered before is marked here.
    const redeliveredUpTo = info.delivered.stream_seq;
    const reset = await this.jsm.consumers.reset(this.stream, this.name);
    const order = new DeliveryOrder({ consumerSeq: reset.delivered.consumer_seq, streamSeq: reset.delivered.stream_seq });
    const consumer = await this.js.consumers.get(this.stream, this.name);
    // Pulls renew well within the pin timeout, or the server would unpin an idle holder.
    const messages = await consumer.consume({ group: PRIORITY_GROUP, ...this.pull });
    this.messages = messages;
    const broke = (why: OrderBreak) => {
      if (this.messages !== messages) return;
      this.messages = undefined;
      messages.stop();
      this.sink.outOfOrder(this.lane, this.partition, why);
    };
    this.loops = [
      (async () => {
        let n = 0;
        for await (const m of messages) {
          if (this.messages !== messages) break;
          const why = order.accept(m.info.deliverySequence, m.seq);
          if (why) {
            broke(why);
            break;
          }
          this.sink.receive(this.lane, m, m.info.redelivered || m.seq <= redeliveredUpTo);
          // Let I/O in every few messages, so other partitions and the crisis lane are read.
          if (++n % yieldEvery === 0) await new Promise((resolve) => setImmediate(resolve));
        }
      })(),
      (async () => {
        for await (const status of messages.status()) {
          if (status.type === 'consumer_unpinned') this.sink.lost(this.partition);
        }
      })(),
    ];
  }

  /** Stops pulling; what was received stays with the node, unacknowledged until its user commits it. */
  async stop(): Promise<void> {
    const messages = this.messages;
    this.messages = undefined;
    messages?.stop();
    await Promise.allSettled(this.loops);
  }

  /** Lets another client take the partition's lane at once (after {@link stop}). */
  async unpin(): Promise<void> {
    await this.jsm.consumers.unpin(this.stream, this.name, PRIORITY_GROUP);
  }
}
