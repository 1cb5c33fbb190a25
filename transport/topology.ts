/**
 * Every stream, consumer and KV bucket of the runtime, named and configured in one place, and
 * `provision`, which creates or updates them idempotently (safe to run on every node start).
 */
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
  type ConsumerConfig,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { createSubjects, DEFAULT_PREFIX, type Lane, type Subjects } from './subjects.ts';

const DAY_MS = 24 * 60 * 60 * 1000;

/** Tunables of the topology; defaults in {@link DEFAULT_TOPOLOGY_OPTIONS}. */
export interface TopologyOptions {
  prefix: string;
  /** How long the lanes keep events: the window for replays and audits of raw input. */
  eventRetentionMs: number;
  /** JetStream's window for dropping a re-published `Nats-Msg-Id`. */
  duplicateWindowMs: number;
  /** Normal-lane events the node holds unacknowledged: how much the normal lane may have in flight. */
  normalMaxAckPending: number;
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
  eventRetentionMs: 30 * DAY_MS,
  duplicateWindowMs: 2 * 60 * 1000,
  normalMaxAckPending: 1000,
  crisisMaxAckPending: 256,
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
  /** Durable consumers: the two lanes (runtime) and the customer links (ingress). */
  consumers: Record<Lane | 'customerLinks', string>;
  buckets: { users: string; deadlines: string; partitions: string; customers: string };
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
    consumers: { normal: 'runtime_normal', crisis: 'runtime_crisis', customerLinks: 'ingress_customer_links' },
    buckets: {
      users: `${b}_users`,
      deadlines: `${b}_deadlines`,
      partitions: `${b}_partitions`,
      customers: `${b}_customers`,
    },
  };
}

/** Stream configurations of a topology. */
export function streamConfigs(t: Topology): Array<Partial<StreamConfig> & { name: string }> {
  const o = t.options;
  const s = t.subjects.all;
  const base = { storage: StorageType.File, retention: RetentionPolicy.Limits, num_replicas: 1 };
  const lane = { ...base, max_age: nanos(o.eventRetentionMs), duplicate_window: nanos(o.duplicateWindowMs) };
  return [
    { ...lane, name: t.streams.normal, subjects: [s.normal] },
    { ...lane, name: t.streams.crisis, subjects: [s.crisis] },
    // Last value per device: a device that was away catches up with the latest view only.
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
 * Consumer configurations of the two lanes. No filter: a message on a lane subject that is no
 * event must reach the node to become a dead letter (a filter would leave it unread).
 */
export function laneConsumerConfig(t: Topology, lane: Lane): Partial<ConsumerConfig> & { durable_name: string } {
  const o = t.options;
  return {
    durable_name: t.consumers[lane],
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: lane === 'crisis' ? o.crisisMaxAckPending : o.normalMaxAckPending,
    ack_wait: nanos(lane === 'crisis' ? o.crisisAckWaitMs : o.normalAckWaitMs),
    max_deliver: -1,
  };
}

function mutable(c: Partial<ConsumerConfig>): Partial<ConsumerConfig> {
  return { max_ack_pending: c.max_ack_pending, ack_wait: c.ack_wait, max_deliver: c.max_deliver };
}

/**
 * Makes a lane consumer deliver again, in stream order, everything from its first unacknowledged
 * message. Run by a node at start: after a crash, JetStream would otherwise redeliver the unacked
 * messages only after `ack_wait`, behind newer ones, and a user must see its events in order.
 * Assumes this node is the lane's only reader (one node per deployment until partitions move).
 * Returns the highest stream sequence delivered before (0 when nothing was pending): messages up
 * to it may have been partly processed by the previous reader.
 */
export async function rewindToAckFloor(jsm: JetStreamManager, t: Topology, lane: Lane): Promise<number> {
  const stream = t.streams[lane];
  const info = await jsm.consumers.info(stream, t.consumers[lane]);
  if (info.num_ack_pending === 0) return 0;
  await jsm.consumers.delete(stream, t.consumers[lane]);
  await jsm.consumers.add(stream, {
    ...laneConsumerConfig(t, lane),
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: info.ack_floor.stream_seq + 1,
  });
  return info.delivered.stream_seq;
}

/** Handles on what {@link provision} made. */
export interface Provisioned {
  jsm: JetStreamManager;
  users: KV;
  deadlines: KV;
  partitions: KV;
  /** Stripe customer id → user id, for webhooks whose metadata names no user. */
  customers: KV;
}

/** Creates or updates every stream, durable consumer and KV bucket of the topology. Idempotent. */
export async function provision(nc: NatsConnection, t: Topology): Promise<Provisioned> {
  const jsm = await jetstreamManager(nc);
  for (const config of streamConfigs(t)) {
    const exists = await jsm.streams.info(config.name).then(
      () => true,
      () => false,
    );
    if (exists) await jsm.streams.update(config.name, config);
    else await jsm.streams.add(config);
  }
  for (const lane of ['normal', 'crisis'] as const) {
    const config = laneConsumerConfig(t, lane);
    const stream = t.streams[lane];
    const existing = await jsm.consumers.info(stream, config.durable_name).catch(() => null);
    // Where delivery starts cannot change on an existing consumer (see rewindToAckFloor): keep it.
    if (existing) await jsm.consumers.update(stream, config.durable_name, { ...existing.config, ...mutable(config) });
    else await jsm.consumers.add(stream, config);
  }
  const links = t.consumers.customerLinks;
  if (!(await jsm.consumers.info(t.streams.normal, links).catch(() => null))) {
    await jsm.consumers.add(t.streams.normal, {
      durable_name: links,
      filter_subject: t.subjects.all.customerLinks,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
    });
  }
  const kvm = new Kvm(nc);
  const { users, deadlines, partitions, customers } = t.buckets;
  const [u, d, p, c] = await Promise.all([users, deadlines, partitions, customers].map((name) => kvm.create(name, { history: 1 })));
  return { jsm, users: u!, deadlines: d!, partitions: p!, customers: c! };
}
