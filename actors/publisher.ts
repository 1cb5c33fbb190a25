/**
 * Everything the runtime publishes to JetStream, awaited until stored: device views, audit records,
 * alerts, dead letters and deadline schedules. Views replace the device's last value; audit records
 * carry a `Nats-Msg-Id`, so a retried commit stores them once; a user's deadline is one server-side
 * schedule, replaced or removed as it changes.
 */
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { deadlineEvent, type Deadline } from '../machines/deadlines.ts';
import { UserEvent } from '../machines/events.ts';
import { encode } from '../transport/codec.ts';
import { Alert, AuditRecord, DeadLetter, type DeviceView } from '../transport/schemas.ts';
import type { Topology } from '../transport/topology.ts';
import { lastViews } from '../transport/viewStore.ts';
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

  /** Publishes one view per device (same version for all) and waits until all are stored. */
  async views(views: DeviceView[], compress: boolean): Promise<void> {
    await Promise.all(
      views.map((view) => {
        const { data, headers } = encodeDeviceView(view, compress);
        return this.js.publish(this.topology.subjects.view(view.userId, view.deviceId), data, headers ? { headers } : {});
      }),
    );
  }

  /**
   * The view last stored for each of these devices of a user (`null`: none, or one this runtime
   * cannot read). A node that crashed or was fenced between publishing a view and saving the
   * user's record left views newer than the record: the next owner must not reuse their versions.
   */
  async lastViews(userId: string, deviceIds: readonly string[]): Promise<Array<DeviceView | null>> {
    // On this publisher's own connection: the crisis lane's reads do not queue behind normal output.
    const jsm = await (this.reader ??= this.js.jetstreamManager(false));
    return lastViews(jsm, this.topology, userId, deviceIds);
  }

  /** Removes the last view of devices that left the account: their safety content must not linger. */
  async purgeViews(userId: string, deviceIds: string[]): Promise<void> {
    await Promise.all(
      deviceIds.map((d) => this.jsm.streams.purge(this.topology.streams.views, { filter: this.topology.subjects.view(userId, d) })),
    );
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
