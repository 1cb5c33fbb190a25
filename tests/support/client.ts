/**
 * The test's own NATS client: publishes events as a producer would, reads the streams the runtime
 * writes (dead letters, audit records, views) and asks a node for its metrics.
 */
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { UserEvent } from '../../machines/events.ts';
import type { MetricsSnapshot } from '../../actors/metrics.ts';
import type { UserRecord } from '../../actors/userRecord.ts';
import { loadUserRecord } from '../../actors/userStore.ts';
import { decode } from '../../transport/codec.ts';
import { connectNats, drainNats } from '../../transport/connection.ts';
import { publishEvent } from '../../transport/eventPublisher.ts';
import { AuditRecord, DeadLetter, type DeviceView } from '../../transport/schemas.ts';
import { createTopology, type Topology } from '../../transport/topology.ts';
import { lastView } from '../../transport/viewStore.ts';

/** A connected test client. */
export class TestClient {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly topology: Topology;

  private constructor(nc: NatsConnection, jsm: JetStreamManager, topology: Topology) {
    this.nc = nc;
    this.js = jetstream(nc);
    this.jsm = jsm;
    this.topology = topology;
  }

  static async connect(url: string, topology: Topology = createTopology()): Promise<TestClient> {
    const nc = await connectNats({ servers: url, name: 'test-client', credentials: { role: 'runtime' } });
    return new TestClient(nc, await jetstreamManager(nc), topology);
  }

  /** Publishes events in order, each acknowledged by JetStream before the next. */
  async publish(...events: UserEvent[]): Promise<void> {
    for (const e of events) await publishEvent(this.js, this.topology.subjects, e);
  }

  /** Publishes raw bytes to a subject through JetStream (for bad input). */
  async publishRaw(subject: string, data: Uint8Array): Promise<void> {
    await this.js.publish(subject, data);
  }

  /** The node's counters. */
  async metrics(): Promise<MetricsSnapshot> {
    const reply = await this.nc.request(this.topology.subjects.control('metrics'), '', { timeout: 5_000 });
    return JSON.parse(new TextDecoder().decode(reply.data)) as MetricsSnapshot;
  }

  /** Every message of a stream stored when the call starts, in order, decoded by `read` (one ordered consumer). */
  async readStream<T>(stream: string, read: (data: Uint8Array) => T): Promise<T[]> {
    const info = await this.jsm.streams.info(stream);
    if (info.state.messages === 0) return [];
    const messages = await (await this.js.consumers.get(stream, {})).consume({ max_messages: 1_024 });
    const out: T[] = [];
    try {
      for await (const m of messages) {
        // A plain copy: the consumer hands out Buffer views, a stored-message get plain bytes.
        out.push(read(Uint8Array.from(m.data)));
        if (m.seq >= info.state.last_seq) break;
      }
    } finally {
      messages.stop();
    }
    return out;
  }

  /** Every dead letter so far. */
  deadLetters(): Promise<DeadLetter[]> {
    return this.readStream(this.topology.streams.deadLetters, (d) => decode(DeadLetter, d));
  }

  /** Every audit record so far (all users). */
  audit(): Promise<AuditRecord[]> {
    return this.readStream(this.topology.streams.audit, (d) => decode(AuditRecord, d));
  }

  /** The user's view last stored in the views stream; with `deviceId`, only if it lists that device (the view it would apply). */
  async lastView(userId: string, deviceId?: string): Promise<DeviceView | null> {
    const view = await lastView(this.jsm.direct, this.topology, userId);
    return view && (deviceId === undefined || view.devices.includes(deviceId)) ? view : null;
  }

  /** The stored user record, decoded (what the runtime persisted). */
  async userRecord(userId: string): Promise<UserRecord | null> {
    return (await loadUserRecord(await this.users(), userId)).record;
  }

  /** Writes a user's stored record again, unchanged: a new revision, as another owner would make. */
  async rewriteUserRecord(userId: string): Promise<void> {
    const kv = await this.users();
    const entry = await kv.get(userId);
    if (!entry) throw new Error(`no record for ${userId}`);
    await kv.put(userId, entry.value);
  }

  private users() {
    return new Kvm(this.nc).open(this.topology.buckets.users);
  }

  async close(): Promise<void> {
    await drainNats(this.nc);
  }
}
