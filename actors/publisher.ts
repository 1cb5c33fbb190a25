/**
 * Everything the runtime publishes to JetStream, awaited until stored: device views, audit records,
 * alerts, dead letters and deadline schedules. A view replaces the user's last value; audit records
 * carry a `Nats-Msg-Id`, so a retried commit stores them once; a user's deadline is one server-side
 * schedule, replaced or removed as it changes.
 */
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { deadlineEvent, type Deadline } from '../machines/deadlines.ts';
import { UserEvent } from '../machines/events.ts';
import { encode } from '../transport/codec.ts';
import { Alert, AuditRecord, DeadLetter, type DeviceView } from '../transport/schemas.ts';
import type { Topology } from '../transport/topology.ts';
import { lastView } from '../transport/viewStore.ts';
import { encodeDeviceView } from '../transport/viewWire.ts';

/** Publishes the runtime's output. */
export class Publisher {
  private readonly js: JetStreamClient;
  private readonly jsm: JetStreamManager;
  private readonly topology: Topology;
  private reader: Promise<JetStreamManager> | undefined;

  constructor(js: JetStreamClient, jsm: JetStreamManager, topology: Topology) {
    this.js = js;
    this.jsm = jsm;
    this.topology = topology;
  }

  /**
   * Stores the user's view as its last value; the same publish reaches the user's connected
   * devices through core NATS. Resolves once stored.
   */
  async view(view: DeviceView, compress: boolean): Promise<void> {
    const { data, headers } = encodeDeviceView(view, compress);
    await this.js.publish(this.topology.subjects.view(view.userId), data, headers ? { headers } : {});
  }

  /**
   * The view last stored for a user (`null`: none, or one this runtime cannot read). A runtime that
   * crashed between publishing a view and saving the user's record (one that published first, as
   * this one did before it ran on several nodes) left a view newer than the record: the next owner
   * must not reuse its version.
   */
  async lastView(userId: string): Promise<DeviceView | null> {
    // On this publisher's own connection: the crisis lane's reads do not queue behind normal output.
    const jsm = await (this.reader ??= this.js.jetstreamManager(false));
    return lastView(jsm.direct, this.topology, userId);
  }

  /** Appends audit records; each is stored once however often it is published. */
  async audit(records: AuditRecord[]): Promise<void> {
    await Promise.all(
      records.map((r) =>
        this.js.publish(this.topology.subjects.audit(r.userId), encode(AuditRecord, r), { msgID: `audit:${r.eventId}` }),
      ),
    );
  }

  /** Raises an alert (a seed budget was exceeded). */
  async alert(alert: Alert): Promise<void> {
    await this.js.publish(this.topology.subjects.alert(alert.kind), encode(Alert, alert));
  }

  /** Stores a dead letter. */
  async deadLetter(letter: DeadLetter): Promise<void> {
    await this.js.publish(this.topology.subjects.deadLetter(letter.reason), encode(DeadLetter, letter));
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
    await this.js.publish(subject, encode(UserEvent, event), {
      schedule: { specification: new Date(deadline.at), target: this.topology.subjects.event(userId, event.type) },
    });
  }

  /** The JetStream manager of this publisher's connection. */
  get manager(): JetStreamManager {
    return this.jsm;
  }
}
