/**
 * The transport's limit, measured the same way as the runtime: a process that consumes events from
 * a JetStream stream and, for each, re-publishes a view to three subjects of a last-value stream,
 * acknowledging the event once the three are stored. No decoding, no state: JetStream alone.
 * Forked by `bench/run.ts`, which publishes the events and subscribes to the three subjects.
 */
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { DEFAULT_RUNTIME_CONFIG } from '../actors/config.ts';
import { deriveView } from '../machines/deviceView.ts';
import { EMPTY_SAFETY } from '../machines/safety.ts';
import { applyEvent, createUserState } from '../machines/userState.ts';
import { encode } from '../transport/codec.ts';
import { connectNats } from '../transport/connection.ts';
import { DeviceView } from '../transport/schemas.ts';

/** Names of the baseline's streams and subjects. */
export const BASELINE = {
  inStream: 'BENCH_IN',
  inSubject: (user: string) => `bench.in.${user}`,
  viewStream: 'BENCH_VIEWS',
  viewSubject: (user: string, device: number) => `bench.view.${user}.d${device}`,
  consumer: 'bench_worker',
} as const;

/** Creates the baseline's streams and consumer (fresh each run). */
export async function provisionBaseline(url: string, maxAckPending: number): Promise<void> {
  const nc = await connectNats({ servers: url, name: 'bench-baseline-setup' });
  const jsm = await jetstreamManager(nc);
  for (const name of [BASELINE.inStream, BASELINE.viewStream]) await jsm.streams.delete(name).catch(() => false);
  const base = { storage: StorageType.File, retention: RetentionPolicy.Limits, num_replicas: 1 };
  await jsm.streams.add({ ...base, name: BASELINE.inStream, subjects: ['bench.in.>'] });
  await jsm.streams.add({ ...base, name: BASELINE.viewStream, subjects: ['bench.view.>'], max_msgs_per_subject: 1 });
  await jsm.consumers.add(BASELINE.inStream, { durable_name: BASELINE.consumer, ack_policy: AckPolicy.Explicit, max_ack_pending: maxAckPending });
  await nc.close();
}

/** A view as large as the runtime's: a premium user's device view, encoded. */
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
    deviceId: 'd0',
    version: 1,
    issuedAt: Date.now(),
    ...deriveView(state.snapshot),
    crisisLines: DEFAULT_RUNTIME_CONFIG.crisisLines,
    safety: EMPTY_SAFETY,
  });
}

if (import.meta.main) {
  const view = sampleView();
  const nc = await connectNats({ name: 'bench-baseline-worker' });
  const js = jetstream(nc);
  const consumer = await js.consumers.get(BASELINE.inStream, BASELINE.consumer);
  const messages = await consumer.consume({ max_messages: 512 });
  process.send?.({ ready: true });
  for await (const m of messages) {
    const user = m.subject.slice('bench.in.'.length);
    // The same shape of work as a user commit: three stored views, then the ack.
    void Promise.all([0, 1, 2].map((d) => js.publish(BASELINE.viewSubject(user, d), view))).then(
      () => m.ack(),
      () => m.nak(),
    );
  }
}
