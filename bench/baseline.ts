/**
 * The transport's limits, measured the same way as the runtime: a process that consumes events from
 * a JetStream stream and, for each, stores a view in a last-value stream, acknowledging the event
 * once the view is stored. No decoding, no state: JetStream alone. Two shapes of the same work
 * (`BENCH_BASELINE`):
 *
 * - `transport`: three views per event, one per device subject (`bench.view.<user>.d<n>`), as the
 *   runtime did with a view per device;
 * - `fanout`: one view per event on the user's subject (`bench.view.<user>`), which the user's
 *   devices receive by core NATS subscriptions on it, as the runtime does now.
 *
 * Forked by `bench/run.ts`, which publishes the events and holds the devices' subscriptions.
 */
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { DEFAULT_RUNTIME_CONFIG } from '../actors/config.ts';
import { deriveView } from '../machines/deviceView.ts';
import { EMPTY_SAFETY } from '../machines/safety.ts';
import { applyEvent, createUserState } from '../machines/userState.ts';
import { encode } from '../transport/codec.ts';
import { connectNats } from '../transport/connection.ts';
import { DeviceView } from '../transport/schemas.ts';

/** Which limit a baseline worker measures (see the module comment). */
export type BaselineMode = 'transport' | 'fanout';

/** Names of the baseline's streams and subjects. */
export const BASELINE = {
  inStream: 'BENCH_IN',
  inSubject: (user: string) => `bench.in.${user}`,
  viewStream: 'BENCH_VIEWS',
  /** `transport`: one subject per device. */
  viewSubject: (user: string, device: number) => `bench.view.${user}.d${device}`,
  /** `fanout`: one subject per user, every device of the user subscribed to it. */
  userViewSubject: (user: string) => `bench.view.${user}`,
  consumer: 'bench_worker',
} as const;

/** The devices of a baseline user, as many as the runtime's saturated run gives each user. */
export const BASELINE_DEVICES = [0, 1, 2];

/** Creates the baseline's streams and consumer (fresh each run). */
export async function provisionBaseline(url: string, maxAckPending: number): Promise<void> {
  const nc = await connectNats({ servers: url, name: 'bench-baseline-setup', credentials: { role: 'runtime' } });
  const jsm = await jetstreamManager(nc);
  for (const name of [BASELINE.inStream, BASELINE.viewStream]) await jsm.streams.delete(name).catch(() => false);
  const base = { storage: StorageType.File, retention: RetentionPolicy.Limits, num_replicas: 1 };
  await jsm.streams.add({ ...base, name: BASELINE.inStream, subjects: ['bench.in.>'] });
  // As the runtime's views stream: the last value per subject, read by direct get.
  await jsm.streams.add({ ...base, name: BASELINE.viewStream, subjects: ['bench.view.>'], max_msgs_per_subject: 1, allow_direct: true });
  await jsm.consumers.add(BASELINE.inStream, { durable_name: BASELINE.consumer, ack_policy: AckPolicy.Explicit, max_ack_pending: maxAckPending });
  await nc.close();
}

/** A view as large as the runtime's: a premium user's device view for three devices, encoded. */
export function sampleView(): Uint8Array {
  const state = applyEvent(createUserState('bench-user', 0), {
    type: 'subscription_activated',
    id: 'bench',
    userId: 'bench-user',
    at: 1,
    subscriptionId: 'sub_bench',
    tier: 'premium',
  }).state;
  return encode(DeviceView, {
    userId: 'bench-user',
    version: 1,
    devices: BASELINE_DEVICES.map((d) => `d${d}`),
    issuedAt: Date.now(),
    ...deriveView(state.snapshot),
    crisisLines: DEFAULT_RUNTIME_CONFIG.crisisLines,
    safety: EMPTY_SAFETY,
  });
}

/** The subjects a worker stores one event's views on, per mode. */
const VIEW_SUBJECTS: Record<BaselineMode, (user: string) => string[]> = {
  transport: (user) => BASELINE_DEVICES.map((d) => BASELINE.viewSubject(user, d)),
  fanout: (user) => [BASELINE.userViewSubject(user)],
};

if (import.meta.main) {
  const subjects = VIEW_SUBJECTS[(process.env.BENCH_BASELINE as BaselineMode | undefined) ?? 'transport'];
  const view = sampleView();
  const nc = await connectNats({ name: 'bench-baseline-worker', credentials: { role: 'runtime' } });
  const js = jetstream(nc);
  const consumer = await js.consumers.get(BASELINE.inStream, BASELINE.consumer);
  const messages = await consumer.consume({ max_messages: 512 });
  process.send?.({ ready: true });
  for await (const m of messages) {
    const user = m.subject.slice('bench.in.'.length);
    // The same shape of work as a user commit: the views stored, then the ack.
    void Promise.all(subjects(user).map((s) => js.publish(s, view))).then(
      () => m.ack(),
      () => m.nak(),
    );
  }
}
