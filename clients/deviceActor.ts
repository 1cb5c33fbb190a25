/**
 * The device side: a small client library that runs in the device's process. A device actor holds
 * the last view it applied, applies a view only when its version is newer, and acknowledges every
 * view it received. Its durable consumer on the views stream (last value per device subject) means
 * a device that was away applies only the latest view when it returns, once.
 */
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type ConsumerMessages } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import type { DeviceView } from '../transport/schemas.ts';
import { createTopology, type Topology } from '../transport/topology.ts';
import { decodeDeviceView } from '../transport/viewWire.ts';

/** A device's consumer is removed after this long without the device: it was thrown away. */
const ABANDONED_AFTER_MS = 30 * 24 * 60 * 60 * 1000;

/** Options of {@link DeviceActor.start}. */
export interface DeviceActorOptions {
  nc: NatsConnection;
  userId: string;
  deviceId: string;
  /** The deployment's topology (default prefix when omitted). */
  topology?: Topology;
  /** The view the device held from an earlier run, if it stored one. */
  held?: DeviceView | null;
  /** Called for each view the device applies. */
  onApply?: (view: DeviceView) => void;
  /** Called for a view that could not be decoded (acknowledged and skipped). */
  onReject?: (error: Error) => void;
}

/** One device of one user. */
export class DeviceActor {
  readonly userId: string;
  readonly deviceId: string;
  /** Views applied by this actor. */
  applied = 0;
  private held: DeviceView | null;
  private readonly messages: ConsumerMessages;
  private readonly loop: Promise<void>;

  private constructor(options: DeviceActorOptions, messages: ConsumerMessages) {
    this.userId = options.userId;
    this.deviceId = options.deviceId;
    this.held = options.held ?? null;
    this.messages = messages;
    this.loop = this.run(messages, options);
  }

  private async run(messages: ConsumerMessages, options: DeviceActorOptions): Promise<void> {
    for await (const m of messages) {
      try {
        const view = decodeDeviceView(m.data, m.headers, { userId: this.userId });
        if (view.deviceId === this.deviceId && (!this.held || view.version > this.held.version)) {
          this.held = view;
          this.applied++;
          options.onApply?.(view);
        }
      } catch (err) {
        options.onReject?.(err as Error);
      }
      m.ack();
    }
  }

  /** Starts (or resumes) the device's consumer and begins applying views. */
  static async start(options: DeviceActorOptions): Promise<DeviceActor> {
    const t = options.topology ?? createTopology();
    const name = consumerName(options.userId, options.deviceId);
    const jsm = await jetstreamManager(options.nc);
    const exists = await jsm.consumers.info(t.streams.views, name).then(
      () => true,
      () => false,
    );
    if (!exists) {
      await jsm.consumers.add(t.streams.views, {
        durable_name: name,
        filter_subject: t.subjects.view(options.userId, options.deviceId),
        deliver_policy: DeliverPolicy.LastPerSubject,
        ack_policy: AckPolicy.Explicit,
        max_ack_pending: 1,
        inactive_threshold: nanos(ABANDONED_AFTER_MS),
        // A device's read position, not data: one replica, whatever the views stream has.
        num_replicas: 1,
      });
    }
    const consumer = await jetstream(options.nc).consumers.get(t.streams.views, name);
    // A pull waits 5 s, not nats.js's 30: after a server restart a device pulls again that soon.
    return new DeviceActor(options, await consumer.consume({ max_messages: 1, expires: 5_000 }));
  }

  /** The view the device holds now. */
  get view(): DeviceView | null {
    return this.held;
  }

  /** Stops applying; the consumer stays, so views published meanwhile wait for the next start. */
  async stop(): Promise<void> {
    this.messages.stop();
    await this.loop;
  }
}

/** The durable consumer name of a device. */
export function consumerName(userId: string, deviceId: string): string {
  return `dev_${userId}_${deviceId}`;
}
