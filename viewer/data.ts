/**
 * What the clinician viewer reads from NATS, and only that: the user's stored record (statechart
 * state, crisis level, devices), each registered device's last view (the views stream), and the
 * user's audit records. Everything is projected onto an explicit allow-list before it leaves this
 * module: never the safety plan or emergency contacts (kept in the record and in every view), nor
 * crisis lines, event payloads or payment references.
 *
 * Live updates: a KV watch on the user's record, an ordered consumer on `fm.view.<userId>.*`
 * (last view per device, then each new one) and one on `fm.audit.<userId>` (from a stream sequence
 * on), all ended when the viewer's connection closes.
 */
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { Kvm, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { NatsConnection, QueuedIterator } from '@nats-io/transport-node';
import { decodeUserRecord, type UserRecord } from '../actors/userRecord.ts';
import { loadUserRecord } from '../actors/userStore.ts';
import { decode } from '../transport/codec.ts';
import { AuditRecord, type DeviceView } from '../transport/schemas.ts';
import type { Topology } from '../transport/topology.ts';
import { lastView } from '../transport/viewStore.ts';
import { decodeDeviceView } from '../transport/viewWire.ts';
import { activeStateIds, type ChartGraph } from './statechart.ts';
import { servingNode, type ServingNode } from '../actors/membership.ts';

/** Where a user is in the statechart, from their stored record. */
export interface UserSummary {
  userId: string;
  /** The statechart's state value, e.g. `{ subscription: 'basic', crisis: 'active' }`. */
  value: unknown;
  /** Ids of every state node the user is in (ancestors included), for the drawing. */
  activeStateIds: string[];
  crisis: { level: string; source: string; since: number } | null;
  paidTier: string | null;
  trialEndsAt: number | null;
  graceEndsAt: number | null;
  graceReason: string | null;
  /** Registered device ids. */
  devices: string[];
  /** Version of the last view published to the devices. */
  viewVersion: number;
  /** The partition and the runtime node serving the user (on a full read; live updates leave it out). */
  servedBy?: ServingNode;
}

/** What one device holds: its last view, without the safety content. */
export interface DeviceSummary {
  deviceId: string;
  version: number;
  issuedAt: number;
  tier: DeviceView['tier'];
  status: DeviceView['status'];
  gracePeriod: DeviceView['gracePeriod'];
  crisis: { active: boolean; level: string | null; since: number | null };
  features: DeviceView['features']['enabled'];
  sync: DeviceView['sync'];
}

/** One audit record, with its stream sequence (the page's cursor). */
export interface TimelineEntry {
  seq: number;
  eventId: string;
  eventType: string;
  at: number;
  recordedAt: number;
  from: AuditRecord['from'];
  to: AuditRecord['to'];
  crisisLevel: AuditRecord['crisisLevel'];
  viewVersion: number | null;
}

/** A user's audit history. */
export interface Timeline {
  entries: TimelineEntry[];
  /** Stream sequence of the newest record (0 when none): live updates start after it. */
  lastSeq: number;
  /** Whether older records were left out (only the newest {@link MAX_TIMELINE} are returned). */
  truncated: boolean;
}

/** Most audit records returned for one user. */
export const MAX_TIMELINE = 5_000;

/** Something the live feed reports. */
export type LiveEvent =
  | { type: 'user'; data: UserSummary }
  | { type: 'view'; data: DeviceSummary }
  | { type: 'audit'; data: TimelineEntry };

/** Projects a stored record onto what a clinician may see. */
export function summarizeUser(graph: ChartGraph, userId: string, record: UserRecord): UserSummary {
  const { value, context } = record.state;
  return {
    userId,
    value,
    activeStateIds: activeStateIds(graph, value),
    crisis: context.crisis && { level: context.crisis.level, source: context.crisis.source, since: context.crisis.since },
    paidTier: context.billing?.tier ?? null,
    trialEndsAt: context.trialEndsAt,
    graceEndsAt: context.graceEndsAt,
    graceReason: context.graceReason,
    devices: [...context.devices],
    viewVersion: record.viewVersion,
  };
}

/**
 * Projects the user's view onto what a clinician may see for each device it lists (no safety plan,
 * no contacts): every device of the user is sent the same view.
 */
export function summarizeView(view: DeviceView): DeviceSummary[] {
  return view.devices.map((deviceId) => summarizeDeviceView(view, deviceId));
}

function summarizeDeviceView(view: DeviceView, deviceId: string): DeviceSummary {
  return {
    deviceId,
    version: view.version,
    issuedAt: view.issuedAt,
    tier: view.tier,
    status: view.status,
    gracePeriod: view.gracePeriod,
    crisis: { active: view.crisis.active, level: view.crisis.level, since: view.crisis.since },
    features: [...view.features.enabled],
    sync: { ...view.sync },
  };
}

function timelineEntry(seq: number, r: AuditRecord): TimelineEntry {
  return {
    seq,
    eventId: r.eventId,
    eventType: r.eventType,
    at: r.at,
    recordedAt: r.recordedAt,
    from: { ...r.from },
    to: { ...r.to },
    crisisLevel: r.crisisLevel,
    viewVersion: r.viewVersion,
  };
}

/** Reads users, views and audit records for the viewer. */
export class ViewerData {
  private readonly nc: NatsConnection;
  private readonly topology: Topology;
  private readonly graph: ChartGraph;
  private readonly js: JetStreamClient;
  private jsmPromise: Promise<JetStreamManager> | undefined;
  private kvPromise: Promise<KV> | undefined;
  private partitionsPromise: Promise<KV> | undefined;

  constructor(nc: NatsConnection, topology: Topology, graph: ChartGraph) {
    this.nc = nc;
    this.topology = topology;
    this.graph = graph;
    this.js = jetstream(nc);
  }

  /** The user's summary with the node serving them, or `null` when the user has no record. */
  async user(userId: string): Promise<UserSummary | null> {
    const { record } = await loadUserRecord(await this.kv(), userId);
    if (!record) return null;
    const servedBy = await servingNode(await this.partitions(), userId, this.topology.options.partitions);
    return { ...summarizeUser(this.graph, userId, record), servedBy };
  }

  /** The last view each of these devices was sent (those the user's last readable view does not list are left out). */
  async devices(userId: string, deviceIds: readonly string[]): Promise<DeviceSummary[]> {
    const view = await lastView((await this.jsm()).direct, this.topology, userId);
    return view ? summarizeView(view).filter((d) => deviceIds.includes(d.deviceId)) : [];
  }

  /** The user's audit records in stream order (the newest {@link MAX_TIMELINE}). */
  async timeline(userId: string): Promise<Timeline> {
    const subject = this.topology.subjects.audit(userId);
    const info = await (await this.jsm()).streams.info(this.topology.streams.audit, { subjects_filter: subject });
    const count = info.state.subjects?.[subject] ?? 0;
    if (count === 0) return { entries: [], lastSeq: 0, truncated: false };
    const consumer = await this.js.consumers.get(this.topology.streams.audit, { filter_subjects: [subject] });
    const messages = await consumer.consume({ max_messages: 512 });
    const entries: TimelineEntry[] = [];
    let dropped = false;
    try {
      for await (const m of messages) {
        entries.push(timelineEntry(m.seq, decode(AuditRecord, m.data)));
        if (entries.length >= 2 * MAX_TIMELINE) {
          entries.splice(0, entries.length - MAX_TIMELINE);
          dropped = true;
        }
        if (m.info.pending === 0) break;
      }
    } finally {
      messages.stop();
    }
    const truncated = dropped || entries.length > MAX_TIMELINE;
    const newest = entries.slice(-MAX_TIMELINE);
    return { entries: newest, lastSeq: newest.at(-1)?.seq ?? 0, truncated };
  }

  /**
   * Follows a user: reports the current record and each device's last view at once, then every
   * change; audit records after stream sequence `afterSeq`. Returns the function that stops it.
   */
  async follow(userId: string, afterSeq: number, report: (e: LiveEvent) => void, onError: (err: Error) => void): Promise<() => void> {
    const stops: Array<() => void> = [];
    const pump = <T>(iterator: AsyncIterable<T>, each: (item: T) => void) => {
      void (async () => {
        try {
          for await (const item of iterator) each(item);
        } catch (err) {
          onError(err as Error);
        }
      })();
    };
    try {
      const watch: QueuedIterator<KvWatchEntry> = await (await this.kv()).watch({ key: userId });
      stops.push(() => watch.stop());
      pump(watch, (e) => {
        if (e.operation === 'PUT') report({ type: 'user', data: summarizeUser(this.graph, userId, decodeUserRecord(e.value)) });
      });

      const views = await this.js.consumers.get(this.topology.streams.views, {
        filter_subjects: [this.topology.subjects.view(userId)],
        deliver_policy: DeliverPolicy.LastPerSubject,
      });
      const viewMessages = await views.consume();
      stops.push(() => viewMessages.stop());
      pump(viewMessages, (m: JsMsg) => {
        try {
          for (const data of summarizeView(decodeDeviceView(m.data, m.headers, { userId }))) report({ type: 'view', data });
        } catch (err) {
          onError(err as Error);
        }
      });

      const audit = await this.js.consumers.get(this.topology.streams.audit, {
        filter_subjects: [this.topology.subjects.audit(userId)],
        ...(afterSeq > 0 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: afterSeq + 1 } : {}),
      });
      const auditMessages = await audit.consume();
      stops.push(() => auditMessages.stop());
      pump(auditMessages, (m: JsMsg) => {
        try {
          report({ type: 'audit', data: timelineEntry(m.seq, decode(AuditRecord, m.data)) });
        } catch (err) {
          onError(err as Error);
        }
      });
    } catch (err) {
      for (const stop of stops) stop();
      throw err;
    }
    return () => {
      for (const stop of stops) stop();
    };
  }

  // Opened on first use and kept; a failed attempt is forgotten, so the next request tries again.
  private jsm(): Promise<JetStreamManager> {
    return (this.jsmPromise ??= jetstreamManager(this.nc).catch((err: unknown) => {
      this.jsmPromise = undefined;
      throw err;
    }));
  }

  private partitions(): Promise<KV> {
    return (this.partitionsPromise ??= new Kvm(this.nc).open(this.topology.buckets.partitions).catch((err: unknown) => {
      this.partitionsPromise = undefined;
      throw err;
    }));
  }

  private kv(): Promise<KV> {
    return (this.kvPromise ??= new Kvm(this.nc).open(this.topology.buckets.users).catch((err: unknown) => {
      this.kvPromise = undefined;
      throw err;
    }));
  }
}
