/**
 * Every stream, consumer and KV bucket of the runtime, named and configured in one place, and
 * `provision`, which creates or updates them idempotently (safe to run on every node start).
 *
 * The lanes are partitioned by the server: a subject transform stores `fm.evt.<user>.<type>` under
 * `fm.evt.<partition>.<user>.<type>` (`{{partition(n,1)}}`, FNV-1a of the user token, as
 * `actors/partitions.ts` computes it), and each lane has one durable consumer per partition with a
 * `pinned_client` priority group, so the server lets one node pull a partition at a time.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type ConsumerInfo,
  type JetStreamManager,
  type PriorityPolicy,
  type StreamConfig,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { isClusterForming, isTransient } from './errors.ts';
import { createSubjects, DEFAULT_PREFIX, type Lane, type Subjects } from './subjects.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

/** Tunables of the topology; defaults in {@link DEFAULT_TOPOLOGY_OPTIONS}. */
export interface TopologyOptions {
  /** Subject prefix (`FM_PREFIX`); stream and bucket names follow it. @default 'fm' */
  prefix: string;
  /**
   * Partitions the lanes store users' events under (`FM_PARTITIONS`). Fixed for the life of a
   * deployment: the lanes' subject transform hashes into this many.
   * @default 64
   */
  partitions: number;
  /** Replicas of every stream and bucket (`FM_REPLICAS`): 3 on a cluster of three or more servers. @default 1 */
  replicas: number;
  /**
   * How long the server keeps a partition pinned to a node that stopped pulling it (a node that
   * died or paused). A holder pulls every second; a taker unpins a gone holder itself, so this
   * bounds only what a paused node keeps while the others have not noticed.
   * @default 3000
   */
  pinTimeoutMs: number;
  /**
   * How long a node stays a member after its last heartbeat: the larger part of a failover (the
   * survivors take a dead node's partitions on their next ownership tick after it).
   * @default 1200
   */
  memberTtlMs: number;
  /** How long the lanes keep events: the window for replays and audits of raw input. */
  eventRetentionMs: number;
  /** JetStream's window for dropping a re-published `Nats-Msg-Id`. */
  duplicateWindowMs: number;
  /** Normal-lane events a node holds unacknowledged per partition. @default 256 */
  normalMaxAckPending: number;
  /** Crisis-lane events a node holds unacknowledged per partition. @default 64 */
  crisisMaxAckPending: number;
  /** Redelivery delay for an event a node took and never acknowledged (e.g. it crashed). */
  normalAckWaitMs: number;
  crisisAckWaitMs: number;
  deadLetterRetentionMs: number;
  alertRetentionMs: number;
}

/** Default topology options. */
export const DEFAULT_TOPOLOGY_OPTIONS: Readonly<TopologyOptions> = {
  prefix: DEFAULT_PREFIX,
  partitions: 64,
  replicas: 1,
  pinTimeoutMs: 3_000,
  memberTtlMs: 1_200,
  eventRetentionMs: 30 * DAY_MS,
  duplicateWindowMs: 2 * 60 * 1000,
  normalMaxAckPending: 256,
  crisisMaxAckPending: 64,
  normalAckWaitMs: 30_000,
  crisisAckWaitMs: 5_000,
  deadLetterRetentionMs: 30 * DAY_MS,
  alertRetentionMs: 7 * DAY_MS,
};

/** Names of everything the runtime uses in NATS. */
export interface Topology {
  options: TopologyOptions;
  subjects: Subjects;
  streams: { normal: string; crisis: string; views: string; audit: string; deadLetters: string; alerts: string };
  /** Durable consumers: the customer links (ingress); the lanes' are per partition ({@link laneConsumerName}). */
  consumers: { customerLinks: string };
  /** KV buckets: user records, live members, partition claims, Stripe customer links, devices' current token ids. */
  buckets: { users: string; members: string; partitions: string; customers: string; deviceTokens: string };
}

/** The subject a KV bucket stores a key under (NATS's own layout): a write to it is a put, fenced like `kv.update`. */
export function kvKeySubject(bucket: string, key: string): string {
  return `$KV.${bucket}.${key}`;
}

/** The priority group of every partition consumer: one pinned client pulls it. */
export const PRIORITY_GROUP = 'owners';

/** A partition consumer's info with its priority group's pin (the server sends it; nats.js 3.4 does not type it). */
export type PinnedConsumerInfo = ConsumerInfo & { priority_groups?: Array<{ group: string; pinned_client_id?: string; pinned_ts?: string }> };

/** The durable consumer of one lane's partition (the same in every deployment: consumers live in their stream). */
export function laneConsumerName(lane: Lane, partition: number): string {
  return `runtime_${lane}_${partition}`;
}

/** Every partition consumer of a lane, by partition. */
export function laneConsumerNames(t: Topology, lane: Lane): string[] {
  return Array.from({ length: t.options.partitions }, (_, p) => laneConsumerName(lane, p));
}

/** Builds the topology for some options (the defaults when omitted). */
export function createTopology(overrides: Partial<TopologyOptions> = {}): Topology {
  const options = { ...DEFAULT_TOPOLOGY_OPTIONS, ...overrides };
  const p = options.prefix.toUpperCase();
  const b = options.prefix.toLowerCase();
  return {
    options,
    subjects: createSubjects(options.prefix),
    streams: {
      normal: `${p}_EVENTS`,
      crisis: `${p}_CRISIS`,
      views: `${p}_VIEWS`,
      audit: `${p}_AUDIT`,
      deadLetters: `${p}_DLQ`,
      alerts: `${p}_ALERTS`,
    },
    consumers: { customerLinks: 'ingress_customer_links' },
    buckets: {
      users: `${b}_users`,
      members: `${b}_members`,
      partitions: `${b}_partitions`,
      customers: `${b}_customers`,
      deviceTokens: `${b}_device_tokens`,
    },
  };
}

/** Stream configurations of a topology. */
export function streamConfigs(t: Topology): Array<Partial<StreamConfig> & { name: string }> {
  const o = t.options;
  const s = t.subjects.all;
  const base = { storage: StorageType.File, retention: RetentionPolicy.Limits, num_replicas: o.replicas };
  const lane = (l: Lane) => ({
    ...base,
    max_age: nanos(o.eventRetentionMs),
    duplicate_window: nanos(o.duplicateWindowMs),
    subject_transform: { src: s[l], dest: t.subjects.stored(l, `{{partition(${o.partitions},1)}}`, '{{wildcard(1)}}', '{{wildcard(2)}}') },
  });
  return [
    // Deadlines are schedules on their own subject in the normal lane; the server fires each into
    // the user's lane subject, which the transform files under the user's partition.
    { ...lane('normal'), name: t.streams.normal, subjects: [s.normal, s.schedules], allow_msg_schedules: true },
    { ...lane('crisis'), name: t.streams.crisis, subjects: [s.crisis] },
    // The last view per user, and nothing per device: connected devices get each view from core
    // NATS as it is stored, and one that was away reads the last one by direct get.
    {
      ...base,
      name: t.streams.views,
      subjects: [s.views],
      max_msgs_per_subject: 1,
      discard: DiscardPolicy.Old,
      allow_direct: true,
    },
    // Kept without age limit: clinicians review whole histories.
    { ...base, name: t.streams.audit, subjects: [s.audit], duplicate_window: nanos(o.duplicateWindowMs) },
    { ...base, name: t.streams.deadLetters, subjects: [s.deadLetters], max_age: nanos(o.deadLetterRetentionMs) },
    { ...base, name: t.streams.alerts, subjects: [s.alerts], max_age: nanos(o.alertRetentionMs) },
  ];
}

/**
 * The consumer of one lane's partition: filtered on the partition, pulled by one pinned client at a
 * time (the server moves the pin when its holder stops pulling for `pinTimeoutMs`).
 */
export function laneConsumerConfig(t: Topology, lane: Lane, partition: number): Partial<ConsumerConfig> & { durable_name: string } {
  const o = t.options;
  return {
    durable_name: laneConsumerName(lane, partition),
    filter_subject: t.subjects.partition(lane, partition),
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: lane === 'crisis' ? o.crisisMaxAckPending : o.normalMaxAckPending,
    ack_wait: nanos(lane === 'crisis' ? o.crisisAckWaitMs : o.normalAckWaitMs),
    max_deliver: -1,
    num_replicas: o.replicas,
    priority_groups: [PRIORITY_GROUP],
    priority_policy: 'pinned_client' satisfies PriorityPolicy,
    priority_timeout: nanos(o.pinTimeoutMs),
  };
}

function mutable(c: Partial<ConsumerConfig>): Partial<ConsumerConfig> {
  return { max_ack_pending: c.max_ack_pending, ack_wait: c.ack_wait, max_deliver: c.max_deliver, priority_timeout: c.priority_timeout };
}

/** Handles on what {@link provision} made. */
export interface Provisioned {
  jsm: JetStreamManager;
  users: KV;
  /** Live runtime nodes: a key per node, dropped `memberTtlMs` after its last heartbeat. */
  members: KV;
  /** Partition claims: `p.<n>` → the node holding it. */
  partitions: KV;
  /** Stripe customer id → user id, for webhooks whose metadata names no user. */
  customers: KV;
}

/**
 * Creates or updates every stream, durable consumer and KV bucket of the topology. Idempotent. At
 * start-up a cluster may still be forming, or electing leaders: such failures are waited out for
 * up to `readyWithinMs`.
 */
export function provision(nc: NatsConnection, t: Topology, readyWithinMs = 30_000): Promise<Provisioned> {
  return retryFor(readyWithinMs, () => provisionOnce(nc, t), (err) => isTransient(err) || isClusterForming(err));
}

/**
 * Opens a KV bucket the runtime provisions, for a role that may not create it (the ingress): waits
 * up to `readyWithinMs` for a runtime node to have made it.
 */
export function openBucket(nc: NatsConnection, bucket: string, readyWithinMs = 30_000): Promise<KV> {
  return retryFor(readyWithinMs, () => new Kvm(nc).open(bucket), () => true);
}

/** Runs `attempt` until it succeeds, retrying what `retryable` accepts, with a backoff, for up to `forMs`. */
async function retryFor<T>(forMs: number, attempt: () => Promise<T>, retryable: (err: unknown) => boolean): Promise<T> {
  const giveUpAt = Date.now() + forMs;
  for (let delayMs = 100; ; delayMs = Math.min(delayMs * 2, 1_000)) {
    try {
      return await attempt();
    } catch (err) {
      if (!retryable(err) || Date.now() + delayMs > giveUpAt) throw err;
      await sleep(delayMs);
    }
  }
}

async function provisionOnce(nc: NatsConnection, t: Topology): Promise<Provisioned> {
  const jsm = await jetstreamManager(nc);
  for (const config of streamConfigs(t)) {
    const exists = await jsm.streams.info(config.name).then(
      () => true,
      () => false,
    );
    if (exists) await jsm.streams.update(config.name, config);
    else await jsm.streams.add(config);
  }
  await Promise.all(
    (['normal', 'crisis'] as const).flatMap((lane) =>
      Array.from({ length: t.options.partitions }, async (_, partition) => {
        const config = laneConsumerConfig(t, lane, partition);
        const stream = t.streams[lane];
        const existing = await jsm.consumers.info(stream, config.durable_name).catch(() => null);
        // Where delivery stands on an existing consumer is kept: only its limits follow the options.
        if (existing) await jsm.consumers.update(stream, config.durable_name, { ...existing.config, ...mutable(config) });
        else await jsm.consumers.add(stream, config);
      }),
    ),
  );
  const links = t.consumers.customerLinks;
  if (!(await jsm.consumers.info(t.streams.normal, links).catch(() => null))) {
    await jsm.consumers.add(t.streams.normal, {
      durable_name: links,
      filter_subject: t.subjects.all.customerLinks,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      num_replicas: t.options.replicas,
    });
  }
  const kvm = new Kvm(nc);
  const { users, members, partitions, customers, deviceTokens } = t.buckets;
  const replicas = t.options.replicas;
  const [u, m, p, c] = await Promise.all([
    kvm.create(users, { history: 1, replicas }),
    kvm.create(members, { history: 1, replicas, ttl: t.options.memberTtlMs }),
    kvm.create(partitions, { history: 1, replicas }),
    kvm.create(customers, { history: 1, replicas }),
    kvm.create(deviceTokens, { history: 1, replicas }),
  ]);
  return { jsm, users: u, members: m, partitions: p, customers: c };
}
