/**
 * Everything the runtime publishes to JetStream, awaited until stored: device views, audit records,
 * alerts, dead letters and deadline schedules. A view replaces the user's last value; audit records
 * carry a `Nats-Msg-Id`, so a retried commit stores them once; a user's deadline is one server-side
 * schedule, replaced or removed as it changes.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import { deadlineEvent, type Deadline } from '../machines/deadlines.ts';
import { UserEvent } from '../machines/events.ts';
import { encode } from '../transport/codec.ts';
import { Alert, AuditRecord, DeadLetter, type DeviceView } from '../transport/schemas.ts';
import type { StreamWriter } from '../transport/streamWriter.ts';
import type { Topology } from '../transport/topology.ts';
import { storedView, type StoredView } from '../transport/viewStore.ts';
import { encodeDeviceView } from '../transport/viewWire.ts';

/** Publishes the runtime's output. */
export class Publisher {
  private readonly writer: StreamWriter;
  private readonly jsm: JetStreamManager;
  private readonly topology: Topology;

  /**
   * `writer` stores, `jsm` reads and purges: both on the lane's own connection, so the crisis lane's
   * output never queues behind the normal lane's.
   */
  constructor(writer: StreamWriter, jsm: JetStreamManager, topology: Topology) {
    this.writer = writer;
    this.jsm = jsm;
    this.topology = topology;
  }

  /**
   * Stores the user's view as its last value, in place of the stored one at `over` (its sequence, 0:
   * none); the same publish reaches the user's connected devices through core NATS. Resolves with
   * the stored view's sequence once stored; rejects (`isWrongLastSequence`) when another view was
   * stored since `over` was read. `over` undefined: replaces whatever is stored.
   */
  async view(view: DeviceView, compress: boolean, over: number | undefined): Promise<number> {
    const { data, headers } = encodeDeviceView(view, compress);
    const expect = over === undefined ? undefined : { lastSubjectSequence: over };
    const ack = await this.writer.publish(this.topology.subjects.view(view.userId), data, { headers, expect });
    return ack.seq;
  }

  /**
   * The view last stored for a user, with its sequence (`null`: none), by direct get. A runtime
   * that crashed between publishing a view and saving the user's record (one that published first,
   * as this one did before it ran on several nodes) left a view newer than the record: the next
   * owner must not reuse its version.
   */
  storedView(userId: string): Promise<StoredView | null> {
    return storedView(this.jsm.direct, this.topology, userId);
  }

  /** The same from the views stream's leader: what a refused replacement found there, never a follower's older copy. */
  storedViewAtLeader(userId: string): Promise<StoredView | null> {
    return storedView(this.jsm.streams, this.topology, userId);
  }

  /** Appends audit records; each is stored once however often it is published. */
  async audit(records: AuditRecord[]): Promise<void> {
    await Promise.all(
      records.map((r) =>
        this.writer.publish(this.topology.subjects.audit(r.userId), encode(AuditRecord, r), { msgID: `audit:${r.eventId}` }),
      ),
    );
  }

  /** Raises an alert (a seed budget was exceeded). */
  async alert(alert: Alert): Promise<void> {
    await this.writer.publish(this.topology.subjects.alert(alert.kind), encode(Alert, alert));
  }

  /** Stores a dead letter; with `msgID`, once per id within the stream's duplicate window. */
  async deadLetter(letter: DeadLetter, msgID?: string): Promise<void> {
    await this.writer.publish(this.topology.subjects.deadLetter(letter.reason), encode(DeadLetter, letter), { msgID });
  }

  /**
   * Sets a user's pending deadline as a message schedule in the normal lane (`null`: removes it).
   * The server publishes the deadline event to the user's lane subject when it comes due, once,
   * whichever node owns the user then, across restarts; a new schedule on the same subject
   * replaces the old one. The event's id is derived from user, type and time (`deadlineEvent`).
   */
  async schedule(userId: string, deadline: Deadline | null): Promise<void> {
    const subject = this.topology.subjects.schedule(userId);
    if (!deadline) {
      await this.jsm.streams.purge(this.topology.streams.normal, { filter: subject });
      return;
    }
    const event = deadlineEvent(userId, deadline);
    await this.writer.publish(subject, encode(UserEvent, event), {
      schedule: { specification: new Date(deadline.at), target: this.topology.subjects.event(userId, event.type) },
    });
  }

  /** The JetStream manager of this publisher's connection. */
  get manager(): JetStreamManager {
    return this.jsm;
  }
}
