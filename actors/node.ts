/**
 * A runtime node: connects to NATS (a connection for the normal lane and output, its own for the
 * crisis lane), provisions the topology, joins the members, takes and hands over partitions (the
 * server pins each partition's consumers to one client; the nodes agree on who asks, see
 * `partitions.ts`), consumes both lanes of the partitions it holds, decodes and validates every
 * message (bad ones become dead letters, the lane goes on), limits each user's crisis presses
 * (`crisisRateLimit.ts`), hands deliveries to user actors crisis first, freezes and passivates idle
 * users, and on stop hands its partitions over and drains.
 */
import { jetstream, jetstreamManager, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { UserEvent, type UserEventType } from '../machines/events.ts';
import { createUserMachine, type UserMachine } from '../machines/userMachine.ts';
import { CodecError, decode, encode } from '../transport/codec.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
import { deadLetter } from '../transport/deadLetters.ts';
import { DeviceRevocation, type DeadLetterReason } from '../transport/schemas.ts';
import { StreamWriter } from '../transport/streamWriter.ts';
import type { Lane } from '../transport/subjects.ts';
import { createTopology, provision, type Topology } from '../transport/topology.ts';
import { AdaptiveLimit } from './admission.ts';
import type { RuntimeConfig } from './config.ts';
import { CrisisRateLimit } from './crisisRateLimit.ts';
import type { OrderBreak } from './deliveryOrder.ts';
import { Fifo } from './fifo.ts';
import { LaneScheduler, type Delivery } from './laneScheduler.ts';
import { createLogger, type Logger } from './logger.ts';
import { RuntimeMetrics } from './metrics.ts';
import { Membership } from './membership.ts';
import { PartitionConsumer, type PartitionSink } from './partitionConsumer.ts';
import { assignPartitions, partitionOf, planMoves } from './partitions.ts';
import { Publisher } from './publisher.ts';
import { retry } from './retry.ts';
import { UserActor, type ActorHost, type LaneOutput } from './userActor.ts';
import { UserStore } from './userStore.ts';

/**
 * Idle users are frozen (each about 60 µs: encode and deflate) every {@link FREEZE_EVERY_MS}, for
 * at most {@link FREEZE_BUDGET_MS} each time: a wave of users going idle never holds the event loop,
 * and a crisis behind it, for long. The rest wait for the next round.
 */
const FREEZE_EVERY_MS = 50;
const FREEZE_BUDGET_MS = 5;

/** Both lanes, crisis first. */
const LANES = ['crisis', 'normal'] as const;

/** A partition lane's key in the node's sets. */
const laneKey = (lane: Lane, partition: number) => `${lane}.${partition}`;

/** A running runtime node. */
export class RuntimeNode implements ActorHost, PartitionSink {
  readonly config: RuntimeConfig;
  readonly machine: UserMachine;
  readonly topology: Topology;
  readonly metrics: RuntimeMetrics;
  readonly log: Logger;
  /** Each lane's JetStream writes, on the lane's connection. */
  private writers!: Record<Lane, StreamWriter>;
  private outputs!: Record<Lane, LaneOutput>;
  private membership!: Membership;

  private nc!: NatsConnection;
  private crisisNc!: NatsConnection;
  private readonly residents = new Map<string, UserActor>();
  private readonly scheduler: LaneScheduler;
  private readonly admission: AdaptiveLimit;
  private readonly crisisLimit: CrisisRateLimit;
  /** Partitions this node holds, with the consumers of both lanes. */
  private readonly held = new Map<number, PartitionConsumer[]>();
  /** Partitions being handed over: their deliveries go back to the lane. */
  private readonly releasing = new Set<number>();
  /** Partition lanes being replayed (`laneKey`), until their new session consumes. */
  private readonly replaying = new Map<string, Promise<unknown>>();
  /** Partition lanes whose deliveries go back to the lane until their replay's new session: what came before it. */
  private readonly paused = new Set<string>();
  private controls: Subscription[] = [];
  private sweeper: NodeJS.Timeout | undefined;
  private freezer: NodeJS.Timeout | undefined;
  /** Users that settled, in the order they did, with when: the next to freeze are at the head. */
  private readonly settledQueue = new Fifo<{ actor: UserActor; at: number }>();
  private ownershipTimer: NodeJS.Timeout | undefined;
  /** The ownership tick under way, so two never overlap and stop can wait for it. */
  private reconciling: Promise<void> = Promise.resolve();
  private readonly stopped = new AbortController();
  private stopRequested = false;

  private constructor(config: RuntimeConfig, log: Logger) {
    this.config = config;
    this.log = log;
    this.metrics = new RuntimeMetrics(config.nodeId);
    this.machine = createUserMachine(config.policy);
    this.topology = createTopology(config.topology);
    this.admission = new AdaptiveLimit(config.admission);
    this.crisisLimit = new CrisisRateLimit(config.crisisRateLimit);
    this.scheduler = new LaneScheduler(
      this.admission,
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
    this.nc = await connectNats({ servers: config.natsUrl, name: `${config.nodeId}/normal`, credentials: { role: 'runtime' } });
    this.crisisNc = await connectNats({ servers: config.natsUrl, name: `${config.nodeId}/crisis`, credentials: { role: 'runtime' } });
    const { jsm, users, members, partitions } = await provision(this.nc, topology);
    // The crisis lane's own handles, on its own connection, end to end.
    const crisisUsers = await new Kvm(this.crisisNc).open(topology.buckets.users);
    const crisisJsm = await jetstreamManager(this.crisisNc);
    this.writers = { normal: new StreamWriter(this.nc), crisis: new StreamWriter(this.crisisNc) };
    this.outputs = {
      normal: this.laneOutput(this.writers.normal, jsm, users),
      crisis: this.laneOutput(this.writers.crisis, crisisJsm, crisisUsers),
    };
    this.membership = new Membership(config.nodeId, members, partitions, topology.options.memberTtlMs, this.log);
    await this.membership.start(config.ownership.heartbeatMs);
    // `fm.ctl.metrics` is answered by every node (a cluster-wide view), `fm.ctl.metrics.<nodeId>` by this one.
    this.controls = [topology.subjects.control('metrics'), topology.subjects.control(`metrics.${config.nodeId}`)].map((subject) =>
      this.nc.subscribe(subject, {
        callback: (_err, msg) => {
          msg.respond(this.metricsReply(msg.string() === 'gc'));
        },
      }),
    );
    this.sweeper = setInterval(() => this.sweep(), config.sweepMs);
    this.freezer = setInterval(() => this.freezeIdle(), FREEZE_EVERY_MS);
    await this.reconcile();
    this.scheduleTick();
    this.log.info({ partitions: [...this.held.keys()].length, nats: config.natsUrl }, 'runtime node ready');
  }

  /** The next ownership tick, once this one is done (a hand-over may take a while). */
  private scheduleTick(): void {
    const due = Date.now() + this.config.ownership.tickMs;
    this.ownershipTimer = setTimeout(() => {
      this.giveUpAfterStall(Date.now() - due);
      this.reconciling = this.reconcile().finally(() => {
        if (!this.stopRequested) this.scheduleTick();
      });
    }, this.config.ownership.tickMs);
  }

  /**
   * A tick this late means the process stood still (SIGSTOP, a paused VM, a starved event loop)
   * longer than the others wait for its heartbeats: they may have taken its partitions meanwhile,
   * and even handed them back, in which case the server pins this node's next pull again and no
   * unpin ever reaches it (seen in tests/cluster/pausedOwner.test.ts: it went on serving two
   * partitions with no claim, so ownership never settled). So it gives them all up; the next ticks
   * take back, properly (reset to the ack floor, claimed), what is still its own.
   */
  private giveUpAfterStall(lateMs: number): void {
    if (lateMs <= this.topology.options.memberTtlMs || this.held.size === 0) return;
    this.log.warn({ stalledMs: lateMs, partitions: this.partitions }, 'stalled past the members\' time to live: giving partitions up');
    for (const p of this.held.keys()) if (!this.releasing.has(p)) void this.drop(p);
  }

  /** The metrics a node answers with; `gc` asks for a collection first (run with --expose-gc), for heap measurements. */
  private metricsReply(gc: boolean): string {
    if (gc) (globalThis as { gc?: () => void }).gc?.();
    const { heapUsed, rss } = process.memoryUsage();
    return JSON.stringify({ nodeId: this.config.nodeId, partitions: this.partitions, ...this.metrics.snapshot(), heapUsed, rss });
  }

  /** The partitions this node holds, in order. */
  get partitions(): number[] {
    return [...this.held.keys()].sort((a, b) => a - b);
  }

  /**
   * One ownership tick: the assignment over the live members, then this node's moves towards it
   * (take what is free and assigned here; hand over a few that are assigned elsewhere), and the
   * removal of claims under its id on partitions it does not hold.
   */
  private async reconcile(): Promise<void> {
    if (this.stopRequested) return;
    try {
      const live = this.membership.live();
      const assignment = assignPartitions(this.topology.options.partitions, live);
      const held = new Set(this.held.keys());
      const moves = planMoves(this.config.nodeId, assignment, held, this.membership.heldElsewhere(live), this.config.ownership.releasePerTick);
      await Promise.all(moves.release.map((p) => this.handOver(p)));
      await Promise.all(moves.acquire.map((p) => this.take(p)));
      await Promise.all(this.membership.strayClaims(new Set(this.held.keys())).map((p) => this.removeStrayClaim(p)));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'ownership tick failed');
    }
  }

  /** Removes a claim under this node's id on a partition it does not hold, so that the node it is assigned to takes it. */
  private async removeStrayClaim(partition: number): Promise<void> {
    if (await this.membership.unclaim(partition)) this.log.warn({ partition }, 'stray partition claim removed');
  }

  /** Takes a partition: both lanes' consumers (crisis first), each reset to its ack floor when its last holder left messages unacknowledged. */
  private async take(partition: number): Promise<void> {
    const started = performance.now();
    const consumers = LANES.map((lane) => {
      const nc = lane === 'crisis' ? this.crisisNc : this.nc;
      const pull = { max_messages: this.config.pullBatch[lane], expires: this.config.pullExpiresMs };
      return new PartitionConsumer(jetstream(nc), this.outputs[lane].publisher.manager, this.topology, lane, partition, pull, this);
    });
    this.held.set(partition, consumers);
    try {
      for (const c of consumers) await c.start(this.config.normalYieldEvery);
      await this.membership.claim(partition);
      this.metrics.partitionsTaken++;
      this.metrics.partitionsHeld = this.held.size;
      this.log.info({ partition, ms: Math.round(performance.now() - started) }, 'partition taken');
    } catch (err) {
      this.log.warn({ partition, err: (err as Error).message }, 'partition not taken');
      await this.drop(partition);
    }
  }

  /**
   * Hands a partition over: stops pulling it, sends back what its users have not started, lets
   * their commits finish, then unpins it and removes the claim, so the next owner takes it at once.
   */
  private async handOver(partition: number): Promise<void> {
    await this.leave(partition, true);
    this.metrics.partitionsHandedOver++;
    this.log.info({ partition }, 'partition handed over');
  }

  /** @inheritdoc */
  lost(partition: number): void {
    if (!this.held.has(partition) || this.releasing.has(partition)) return;
    if (this.heldByAnother(partition)) {
      this.log.warn({ partition }, 'partition lost to another client');
      void this.drop(partition);
      return;
    }
    // No live node claims it: the consumer's new leader (a server restarted, or was cut off) does
    // not know this node's pin. Taken back at once, from the ack floor, instead of left for a tick.
    this.replayAll(partition, { pinLost: true });
  }

  /** Forgets a partition at once (lost, or not taken): what its users have not started goes back to the lane. */
  private async drop(partition: number): Promise<void> {
    await this.leave(partition, false);
  }

  /**
   * Stops serving a partition: no more pulls, its waiting deliveries and what its users have not
   * started go back to the lane; `handOver` also waits for their commits, passivates them and
   * unpins the partition for the next owner. The claim goes last.
   */
  private async leave(partition: number, handOver: boolean): Promise<void> {
    this.releasing.add(partition);
    await Promise.all(LANES.map((lane) => this.replaying.get(laneKey(lane, partition))));
    const consumers = this.held.get(partition) ?? [];
    const actors = await this.stopServing(partition, consumers);
    if (handOver) {
      const deadline = Date.now() + this.config.stopGraceMs;
      while (actors.some((a) => !a.idle) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      for (const a of actors) this.passivate(a.userId);
      await Promise.all(consumers.map((c) => c.unpin().catch(() => undefined)));
    }
    await this.membership.unclaim(partition).catch(() => undefined);
    this.held.delete(partition);
    this.releasing.delete(partition);
    this.metrics.partitionsHeld = this.held.size;
  }

  /**
   * Stops some of a partition's lane consumers and gives back what of theirs was not applied yet:
   * the waiting deliveries and what its users have not started. Returns the partition's users.
   */
  private async stopServing(partition: number, consumers: readonly PartitionConsumer[]): Promise<UserActor[]> {
    await Promise.all(consumers.map((c) => c.stop()));
    const lanes = new Set(consumers.map((c) => c.lane));
    const inPartition = (userId: string) => partitionOf(userId, this.topology.options.partitions) === partition;
    // Not nak'ed: left unacknowledged, they come again from the next session's reset to the ack
    // floor, in stream order. A nak would send them ahead of that replay, out of order.
    this.scheduler.drop((d) => lanes.has(d.lane) && inPartition(d.event.userId));
    const actors = [...this.residents.values()].filter((a) => inPartition(a.userId));
    for (const a of actors) a.surrender(lanes);
    return actors;
  }

  /**
   * Replays a lane of a partition this node holds from its ack floor, in stream order: its
   * deliveries stopped being the stream's order (a delivery lost in flight, a redelivery), or a
   * user's commit was fenced while the node still holds the partition. Users keep what they
   * applied; what comes again that they applied is skipped by its sequence. A replay that cannot
   * start (no leader just now) lets the partition go: the next tick takes it again, from the ack floor.
   */
  private replay(partition: number, lane: Lane, why: object): void {
    const key = laneKey(lane, partition);
    const consumer = this.held.get(partition)?.find((c) => c.lane === lane);
    if (!consumer || this.releasing.has(partition) || this.replaying.has(key) || this.stopRequested) return;
    // At once: from now on none of the lane's deliveries reaches a user until the new session.
    this.paused.add(key);
    this.metrics.replays++;
    this.log.warn({ partition, lane, ...why }, 'partition lane replayed from its ack floor');
    const restart = async () => {
      await this.stopServing(partition, [consumer]);
      this.paused.delete(key);
      if (!this.releasing.has(partition)) await consumer.start(this.config.normalYieldEvery);
    };
    const run = restart().then(
      () => this.replaying.delete(key),
      (err: Error) => {
        this.log.warn({ partition, lane, err: err.message }, 'partition lane not replayed: the partition is let go');
        this.paused.delete(key);
        this.replaying.delete(key);
        void this.drop(partition);
      },
    );
    this.replaying.set(key, run);
  }

  /** @inheritdoc */
  outOfOrder(lane: Lane, partition: number, why: OrderBreak): void {
    this.replay(partition, lane, { why });
  }

  /** @inheritdoc */
  fenced(userId: string): void {
    const partition = partitionOf(userId, this.topology.options.partitions);
    if (!this.held.has(partition)) return;
    // Another live node holds it: this one is the stale owner, and lets it go.
    if (this.heldByAnother(partition)) void this.drop(partition);
    else this.replayAll(partition, { fencedUser: userId });
  }

  /** Whether another live node claims a partition. */
  private heldByAnother(partition: number): boolean {
    return this.membership.heldElsewhere(this.membership.live()).has(partition);
  }

  /** Replays both lanes of a partition ({@link replay}). */
  private replayAll(partition: number, why: object): void {
    for (const lane of LANES) this.replay(partition, lane, why);
  }

  /** Validates a message and hands it on, or dead-letters it without holding up the lane. */
  receive(lane: Lane, m: JsMsg, redelivered: boolean): void {
    const subject = this.topology.subjects.parseEvent(m.subject);
    if (!subject) return this.reject(m, 'invalid', 'subject is not an event subject');
    // By the subject, before decoding, the user's transition and commit: a device flooding its
    // crisis button, with events or with garbage, is acknowledged as fast as its dead letters are
    // stored, and never waits in (or holds) the crisis lane's scheduling.
    const verdict = this.crisisLimit.admit(lane, subject, performance.now());
    if (!verdict.allowed) return this.rateLimited(m, subject, verdict.inARow);
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
    this.scheduler.submit({ lane, seq: m.seq, event, redelivered, ack: () => m.ack() });
  }

  /** A crisis-lane message over its user's rate limit: a dead letter, logged once per run of them. */
  private rateLimited(m: JsMsg, event: { userId: string; type: string }, inARow: number): void {
    this.metrics.crisisRateLimited++;
    const { ratePerS, burst } = this.config.crisisRateLimit;
    if (inARow === 1) {
      this.log.warn({ userId: event.userId, eventType: event.type, ratePerS, burst }, 'crisis lane rate limit: excess events become dead letters');
    }
    this.reject(m, 'rate_limited', `${event.type} over its user's limit (${burst} at once, then ${ratePerS}/s)`);
  }

  private reject(m: JsMsg, reason: DeadLetterReason, detail: string): void {
    // Kept under the subject it was published to, not the partition the lane filed it under.
    const parsed = this.topology.subjects.parseEvent(m.subject);
    const subject = parsed ? this.topology.subjects.event(parsed.userId, parsed.type as UserEventType, parsed.lane) : m.subject;
    // Its id is its place in the lane: a message delivered again (its ack wait passed, or its
    // partition moved before the ack) is one dead letter, not two (found by fuzzing).
    // Not stored only when the node stops: then left unacknowledged for the next holder's replay.
    this.storeDeadLetter(reason, detail, subject, m.data, { seq: m.seq }, `dlq/${m.info.stream}/${m.seq}`).then(
      () => m.ack(),
      () => undefined,
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
    msgID?: string,
  ): Promise<void> {
    this.metrics.deadLetters++;
    // A flood would write a line per event: its start is logged once (rateLimited).
    this.log[reason === 'rate_limited' ? 'debug' : 'warn']({ subject, ...ids, reason, detail }, 'dead letter');
    const letter = deadLetter(this.topology.subjects, { reason, detail, subject, raw, receivedAt: Date.now() });
    try {
      await retry('store dead letter', () => this.outputs.normal.publisher.deadLetter(letter, msgID), this);
    } catch (err) {
      if (this.signal.aborted) throw err;
      this.log.error({ subject, ...ids, reason, err: (err as Error).message }, 'dead letter not stored');
    }
  }

  /** @inheritdoc */
  output(lane: Lane): LaneOutput {
    return this.outputs[lane];
  }

  private laneOutput(writer: StreamWriter, jsm: JetStreamManager, users: KV): LaneOutput {
    return { publisher: new Publisher(writer, jsm, this.topology), store: new UserStore(users, this.topology.buckets.users, writer) };
  }

  /** @inheritdoc */
  get signal(): AbortSignal {
    return this.stopped.signal;
  }

  /**
   * Hands a delivery to its user, activating it if needed. A normal delivery for a user who is not
   * resident comes only once the scheduler admitted it (room under the cap); a crisis delivery never
   * waits, so only crisis users can take the node over the cap, and only while every resident is busy.
   */
  private dispatch(d: Delivery): void {
    const { userId } = d.event;
    if ((this.releasing.size > 0 || this.paused.size > 0) && this.heldBack(d)) {
      // Left unacknowledged for the next holder's or session's replay (see leave, replay).
      this.scheduler.release(d);
      return;
    }
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

  /** Whether a delivery's partition is being left, or its lane replayed: it waits for that replay. */
  private heldBack(d: Delivery): boolean {
    const partition = partitionOf(d.event.userId, this.topology.options.partitions);
    return this.releasing.has(partition) || this.paused.has(laneKey(d.lane, partition));
  }

  /** @inheritdoc */
  release(d: Delivery): void {
    this.scheduler.release(d);
  }

  /** @inheritdoc */
  committed(lane: Lane, latencyMs: number): void {
    if (lane !== 'normal') return;
    this.admission.observe(latencyMs, this.scheduler.normalInFlight);
    this.metrics.normalLimit = this.admission.limit;
  }

  /** @inheritdoc */
  devicesRemoved(userId: string, deviceIds: readonly string[]): void {
    // Core NATS: every callout replica hears it; one that is down has its sessions end within DEVICE_SESSION_S.
    this.nc.publish(this.topology.subjects.deviceRevocation(userId), encode(DeviceRevocation, { userId, devices: [...deviceIds] }));
  }

  /** @inheritdoc */
  evict(actor: UserActor): void {
    if (this.residents.get(actor.userId) === actor) this.residents.delete(actor.userId);
    this.countResidents();
    this.scheduler.resume();
  }

  /** @inheritdoc */
  settled(actor: UserActor): void {
    // It can be passivated now: a delivery waiting for room under the cap may go.
    this.scheduler.resume();
    this.settledQueue.push({ actor, at: actor.lastActive });
  }

  /** Freezes the users settled longest ago, idle since, for at most {@link FREEZE_BUDGET_MS}. */
  private freezeIdle(): void {
    const cutoff = Date.now() - this.config.freezeAfterMs;
    const until = performance.now() + FREEZE_BUDGET_MS;
    const queue = this.settledQueue;
    while (queue.length > 0 && performance.now() < until) {
      const { actor, at } = queue.peek()!;
      if (at > cutoff) break;
      queue.shift();
      // Not if it worked since (a later entry stands for it) or left the node.
      if (actor.lastActive === at && actor.idle && this.residents.get(actor.userId) === actor) actor.freeze();
    }
  }

  /**
   * Passivates users idle longer than `idleMs`, then the least recent idle ones over the cap;
   * forgets the crisis rate limit's buckets that are full again.
   */
  private sweep(): void {
    const cutoff = Date.now() - this.config.idleMs;
    for (const [userId, actor] of this.residents) {
      if (actor.idle && actor.lastActive <= cutoff) this.passivate(userId);
    }
    this.enforceResidentCap();
    this.scheduler.resume();
    this.crisisLimit.prune(performance.now());
    this.metrics.crisisRateLimitUsers = this.crisisLimit.size;
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

  /**
   * Stops: hands every partition over (its users finish what they are committing, the rest goes
   * back to the lane, and the pins are released, so other nodes take over at once), leaves the
   * members, and drains the connections.
   */
  async stop(): Promise<void> {
    if (this.stopRequested) return;
    this.stopRequested = true;
    this.log.info('runtime node stopping');
    clearTimeout(this.ownershipTimer);
    await this.reconciling;
    await Promise.all([...this.held.keys()].map((p) => this.handOver(p)));
    this.stopped.abort(new Error('runtime node stopping'));
    clearInterval(this.sweeper);
    clearInterval(this.freezer);
    for (const c of this.controls) c.unsubscribe();
    await this.membership.stop();
    // Every commit is done: nothing waits for a store's answer any more.
    for (const writer of Object.values(this.writers)) writer.close();
    await Promise.all([drainNats(this.nc), drainNats(this.crisisNc)]);
    this.log.info(this.metrics.snapshot(), 'runtime node stopped');
  }
}
