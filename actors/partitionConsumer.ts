/**
 * One lane of one partition, consumed by this node while it holds the partition. The partition's
 * durable consumer has a `pinned_client` priority group, so the server lets one client pull it at a
 * time; taking it over therefore starts with an `unpin` of whoever held it last.
 *
 * In order, always: a previous owner's unacknowledged messages would come back only `ack_wait`
 * after their first delivery, behind newer ones, and a user must see its events in stream order.
 * So when the last holder left messages unacknowledged, the taker resets the consumer to its ack
 * floor (nats-server 2.14+; the consumer and its pin group stay): it delivers again, in stream
 * order, everything from the first unacknowledged message.
 * Messages up to the last one delivered before may have been partly processed (views out, record
 * not saved) and are marked redelivered; a user skips what it applied by its event ids.
 */
import type { ConsumerMessages, JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import type { Lane } from '../transport/subjects.ts';
import { laneConsumerName, PRIORITY_GROUP, type PinnedConsumerInfo, type Topology } from '../transport/topology.ts';

/** What the node does with each message of a partition lane. */
export interface PartitionSink {
  /** A message from the lane; `redelivered` when it may have been partly processed before (by any holder). */
  receive(lane: Lane, m: JsMsg, redelivered: boolean): void;
  /** The server gave the partition to another client (this node paused past its pin, or was unpinned). */
  lost(partition: number): void;
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
  /** The last sequence the previous holder was delivered, when it left messages unacknowledged. */
  private redeliveredUpTo = 0;

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

  /** Takes the partition's lane over: unpins the last holder, rewinds to the ack floor if it left messages unacknowledged, consumes. */
  async start(yieldEvery: number): Promise<void> {
    const info: PinnedConsumerInfo = await this.jsm.consumers.info(this.stream, this.name);
    if (info.priority_groups?.some((g) => g.pinned_client_id)) await this.jsm.consumers.unpin(this.stream, this.name, PRIORITY_GROUP);
    if (info.num_ack_pending > 0) {
      // After a reset every delivery counts as a first one: what the last holder had is marked here.
      await this.jsm.consumers.reset(this.stream, this.name, info.ack_floor.stream_seq + 1);
      this.redeliveredUpTo = info.delivered.stream_seq;
    }
    const consumer = await this.js.consumers.get(this.stream, this.name);
    // Pulls renew well within the pin timeout, or the server would unpin an idle holder.
    const messages = await consumer.consume({ group: PRIORITY_GROUP, ...this.pull });
    this.messages = messages;
    this.loops = [
      (async () => {
        let n = 0;
        for await (const m of messages) {
          this.sink.receive(this.lane, m, m.info.redelivered || m.seq <= this.redeliveredUpTo);
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

  /** Stops pulling; what was received stays with the node until acknowledged or nak'ed. */
  async stop(): Promise<void> {
    this.messages?.stop();
    await Promise.allSettled(this.loops);
    this.messages = undefined;
  }

  /** Lets another client take the partition's lane at once (after {@link stop}). */
  async unpin(): Promise<void> {
    await this.jsm.consumers.unpin(this.stream, this.name, PRIORITY_GROUP);
  }
}
