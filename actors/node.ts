/**
 * A runtime node: connects to NATS (a connection for the normal lane and output, its own for the
 * crisis lane), provisions the topology, owns its partitions, consumes both lanes, decodes and
 * validates every message (bad ones become dead letters, the lane goes on), hands deliveries to
 * user actors crisis first, passivates idle users, raises durable deadlines, and drains on stop.
 */
import { jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { UserEvent } from '../machines/events.ts';
import { createUserMachine, type UserMachine } from '../machines/userMachine.ts';
import { CodecError, decode, encode } from '../transport/codec.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
import { deadLetter } from '../transport/deadLetters.ts';
import type { DeadLetterReason } from '../transport/schemas.ts';
import type { Lane } from '../transport/subjects.ts';
import { createTopology, provision, rewindToAckFloor, type Topology } from '../transport/topology.ts';
import type { RuntimeConfig } from './config.ts';
import { DeadlineScheduler } from './deadlineScheduler.ts';
import { LaneScheduler, type Delivery } from './laneScheduler.ts';
import { createLogger, type Logger } from './logger.ts';
import { RuntimeMetrics } from './metrics.ts';
import { claimPartitions, partitionOf, resolveOwned } from './partitions.ts';
import { Publisher } from './publisher.ts';
import { retry } from './retry.ts';
import { UserActor, type ActorHost, type LaneOutput } from './userActor.ts';
import { UserStore } from './userStore.ts';

/** A running runtime node. */
export class RuntimeNode implements ActorHost {
  readonly config: RuntimeConfig;
  readonly machine: UserMachine;
  readonly topology: Topology;
  readonly metrics: RuntimeMetrics;
  readonly log: Logger;
  private outputs!: Record<Lane, LaneOutput>;
  private deadlines!: DeadlineScheduler;

  private nc!: NatsConnection;
  private crisisNc!: NatsConnection;
  private readonly residents = new Map<string, UserActor>();
  private readonly scheduler: LaneScheduler;
  private readonly owned: Set<number>;
  private readonly consumers: ConsumerMessages[] = [];
  private readonly loops: Promise<void>[] = [];
  private control: Subscription | undefined;
  /** Per lane, the last sequence a previous run of the node had been delivered (see rewindToAckFloor). */
  private readonly replayedUpTo: Record<Lane, number> = { normal: 0, crisis: 0 };
  private sweeper: NodeJS.Timeout | undefined;
  private readonly stopped = new AbortController();
  private stopRequested = false;

  private constructor(config: RuntimeConfig, log: Logger) {
    this.config = config;
    this.log = log;
    this.metrics = new RuntimeMetrics(config.nodeId);
    this.machine = createUserMachine(config.policy);
    this.topology = createTopology(config.topology);
    this.owned = resolveOwned(config.ownedPartitions, config.partitions);
    this.scheduler = new LaneScheduler(
      config.normalConcurrency,
      (d) => this.dispatch(d),
      (d) => this.residents.has(d.event.userId) || this.enforceResidentCap(),
    );
  }

  /** Connects, provisions and starts consuming. */
  static async start(config: RuntimeConfig, log: Logger = createLogger({ node: config.nodeId })): Promise<RuntimeNode> {
    const node = new RuntimeNode(config, log);
    await node.open();
    return node;
  }

  private async open(): Promise<void> {
    const { config, topology } = this;
    this.nc = await connectNats({ servers: config.natsUrl, name: `${config.nodeId}/normal` });
    this.crisisNc = await connectNats({ servers: config.natsUrl, name: `${config.nodeId}/crisis` });
    const { jsm, users, deadlines, partitions } = await provision(this.nc, topology);
    this.replayedUpTo.normal = await rewindToAckFloor(jsm, topology, 'normal');
    this.replayedUpTo.crisis = await rewindToAckFloor(jsm, topology, 'crisis');
    await claimPartitions(partitions, config.nodeId, this.owned, Date.now());
    const publisher = new Publisher(jetstream(this.nc), jsm, topology);
    this.deadlines = new DeadlineScheduler(deadlines, publisher, (u) => this.owns(u), this.log);
    await this.deadlines.start();
    // The crisis lane's own handles, on its own connection, end to end.
    const crisisKvm = new Kvm(this.crisisNc);
    const [crisisUsers, crisisDeadlines] = await Promise.all([crisisKvm.open(topology.buckets.users), crisisKvm.open(topology.buckets.deadlines)]);
    const crisisPublisher = new Publisher(jetstream(this.crisisNc), await jetstreamManager(this.crisisNc), topology);
    this.outputs = {
      normal: this.laneOutput(publisher, users, deadlines),
      crisis: this.laneOutput(crisisPublisher, crisisUsers, crisisDeadlines),
    };
    this.control = this.nc.subscribe(topology.subjects.control('metrics'), {
      callback: (_err, msg) => {
        // `gc` asks for a collection first (when run with --expose-gc): for heap measurements.
        if (msg.string() === 'gc') (globalThis as { gc?: () => void }).gc?.();
        const { heapUsed, rss } = process.memoryUsage();
        msg.respond(JSON.stringify({ nodeId: config.nodeId, ...this.metrics.snapshot(), heapUsed, rss }));
      },
    });
    this.sweeper = setInterval(() => this.sweep(), config.sweepMs);
    await this.consume('crisis', this.crisisNc);
    await this.consume('normal', this.nc);
    this.log.info({ partitions: this.owned.size, nats: config.natsUrl }, 'runtime node ready');
  }

  private async consume(lane: Lane, nc: NatsConnection): Promise<void> {
    const consumer = await jetstream(nc).consumers.get(this.topology.streams[lane], this.topology.consumers[lane]);
    const messages = await consumer.consume({ max_messages: this.config.pullBatch[lane] });
    this.consumers.push(messages);
    this.loops.push(
      (async () => {
        let n = 0;
        for await (const m of messages) {
          this.receive(lane, m);
          // Let I/O in every few messages, so the crisis connection is read (see `normalYieldEvery`).
          if (lane === 'normal' && ++n % this.config.normalYieldEvery === 0) await new Promise((resolve) => setImmediate(resolve));
        }
      })(),
    );
  }

  /** Validates a message and hands it on, or dead-letters it without holding up the lane. */
  private receive(lane: Lane, m: JsMsg): void {
    const subject = this.topology.subjects.parseEvent(m.subject);
    if (!subject) return this.reject(m, 'invalid', 'subject is not an event subject');
    let event: UserEvent;
    try {
      event = decode(UserEvent, m.data, { userId: subject.userId });
    } catch (err) {
      if (err instanceof CodecError) return this.reject(m, err.code, err.message);
      throw err;
    }
    if (event.type !== subject.type) return this.reject(m, 'invalid', `type: ${event.type} does not match the subject`);
    // The ingress's customer lookup reads these; a user actor would commit nothing for them.
    if (event.type === 'customer_linked') {
      m.ack();
      return;
    }
    if (!this.owns(event.userId)) {
      m.nak(1_000);
      return;
    }
    this.scheduler.submit({
      lane,
      seq: m.seq,
      event,
      redelivered: m.info.redelivered || m.seq <= this.replayedUpTo[lane],
      ack: () => m.ack(),
      nak: () => m.nak(),
    });
  }

  private reject(m: JsMsg, reason: DeadLetterReason, detail: string): void {
    this.storeDeadLetter(reason, detail, m.subject, m.data, { seq: m.seq }).then(
      () => m.ack(),
      () => m.nak(),
    );
  }

  /** @inheritdoc */
  deadLetterEvent(event: UserEvent, detail: string): Promise<void> {
    const subject = this.topology.subjects.event(event.userId, event.type);
    return this.storeDeadLetter('rejected', detail, subject, encode(UserEvent, event), { eventId: event.id });
  }

  /**
   * Logs and stores a dead letter (see `deadLetter`). Retries transient failures until stored;
   * rejects only when the node stops (the message then goes to its next run). A terminal failure is
   * logged and resolves: the dead letter is built to always fit, and trying again would fail alike.
   */
  private async storeDeadLetter(
    reason: DeadLetterReason,
    detail: string,
    subject: string,
    raw: Uint8Array,
    ids: { seq?: number; eventId?: string },
  ): Promise<void> {
    this.metrics.deadLetters++;
    this.log.warn({ subject, ...ids, reason, detail }, 'dead letter');
    const letter = deadLetter(this.topology.subjects, { reason, detail, subject, raw, receivedAt: Date.now() });
    try {
      await retry('store dead letter', () => this.outputs.normal.publisher.deadLetter(letter), this);
    } catch (err) {
      if (this.signal.aborted) throw err;
      this.log.error({ subject, ...ids, reason, err: (err as Error).message }, 'dead letter not stored');
    }
  }

  /** @inheritdoc */
  output(lane: Lane): LaneOutput {
    return this.outputs[lane];
  }

  private laneOutput(publisher: Publisher, users: KV, deadlines: KV): LaneOutput {
    return { publisher, store: new UserStore(users), setDeadline: (userId, deadline) => this.deadlines.set(userId, deadline, deadlines) };
  }

  /** @inheritdoc */
  get signal(): AbortSignal {
    return this.stopped.signal;
  }

  private owns(userId: string): boolean {
    return this.owned.has(partitionOf(userId, this.config.partitions));
  }

  /**
   * Hands a delivery to its user, activating it if needed. A normal delivery for a user who is not
   * resident comes only once the scheduler admitted it (room under the cap); a crisis delivery never
   * waits, so only crisis users can take the node over the cap, and only while every resident is busy.
   */
  private dispatch(d: Delivery): void {
    const { userId } = d.event;
    let actor = this.residents.get(userId);
    if (actor) {
      // Map order is recency order: move the user to the end.
      this.residents.delete(userId);
    } else {
      actor = new UserActor(userId, this);
      this.enforceResidentCap();
    }
    this.residents.set(userId, actor);
    this.countResidents();
    actor.enqueue(d);
  }

  /** @inheritdoc */
  release(d: Delivery): void {
    this.scheduler.release(d);
  }

  /** @inheritdoc */
  evict(actor: UserActor): void {
    if (this.residents.get(actor.userId) === actor) this.residents.delete(actor.userId);
    this.countResidents();
    this.scheduler.resume();
  }

  /** @inheritdoc */
  settled(_actor: UserActor): void {
    // It can be passivated now: a delivery waiting for room under the cap may go.
    this.scheduler.resume();
  }

  /** Passivates users idle longer than `idleMs`, then the least recent idle ones over the cap. */
  private sweep(): void {
    const cutoff = Date.now() - this.config.idleMs;
    for (const [userId, actor] of this.residents) {
      if (actor.idle && actor.lastActive <= cutoff) this.passivate(userId);
    }
    this.enforceResidentCap();
    this.scheduler.resume();
  }

  /**
   * Passivates the least recently used idle users until one more fits under `maxResident`;
   * returns whether one more fits (not when every resident is busy).
   */
  private enforceResidentCap(): boolean {
    const limit = Math.max(1, this.config.maxResident);
    if (this.residents.size < limit) return true;
    for (const [userId, actor] of this.residents) {
      if (this.residents.size < limit) break;
      if (actor.idle) this.passivate(userId);
    }
    return this.residents.size < limit;
  }

  private passivate(userId: string): void {
    this.residents.delete(userId);
    this.metrics.passivations++;
    this.countResidents();
  }

  private countResidents(): void {
    this.metrics.residents = this.residents.size;
    this.metrics.residentsPeak = Math.max(this.metrics.residentsPeak, this.residents.size);
  }

  /** Stops consuming, lets users finish what they are committing, and drains the connections. */
  async stop(): Promise<void> {
    if (this.stopRequested) return;
    this.stopRequested = true;
    this.log.info('runtime node stopping');
    for (const m of this.consumers) m.stop();
    await Promise.allSettled(this.loops);
    const deadline = Date.now() + this.config.stopGraceMs;
    while ([...this.residents.values()].some((a) => !a.idle) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    this.stopped.abort(new Error('runtime node stopping'));
    clearInterval(this.sweeper);
    this.control?.unsubscribe();
    await this.deadlines.stop();
    await Promise.all([drainNats(this.nc), drainNats(this.crisisNc)]);
    this.log.info(this.metrics.snapshot(), 'runtime node stopped');
  }
}
