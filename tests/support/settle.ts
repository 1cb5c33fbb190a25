/**
 * Facts that a system has finished its work, for a test to wait on before it asserts exact counts
 * ("exactly one"): once they hold, nothing in flight can still deliver, so a late duplicate would
 * already be counted. Read from JetStream itself (consumer and stream state), never a sleep.
 */
import { JetStreamApiError } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { RequestError } from '@nats-io/transport-node';
import type { Lane } from '../../transport/subjects.ts';
import { laneConsumerNames } from '../../transport/topology.ts';
import type { TestClient } from './client.ts';
import { waitFor, type DeviceProcess } from './processes.ts';

/** A key no user has: a refused write to it is the user records' stream answering in order. */
const BARRIER_KEY = 'test-barrier';

/** What a lane's partition consumers have, summed over the partitions. */
export interface LaneTotals {
  /** Stored and not yet delivered. */
  pending: number;
  /** Delivered and not yet acknowledged. */
  ackPending: number;
  /** Messages delivered (consumer sequence: redeliveries count again). */
  delivered: number;
}

/** A lane's partition consumers summed (one listing of the stream's consumers). */
export async function laneTotals(client: TestClient, lane: Lane): Promise<LaneTotals> {
  const names = new Set(laneConsumerNames(client.topology, lane));
  const totals: LaneTotals = { pending: 0, ackPending: 0, delivered: 0 };
  for await (const info of client.jsm.consumers.list(client.topology.streams[lane])) {
    if (!names.has(info.name)) continue;
    totals.pending += info.num_pending;
    totals.ackPending += info.num_ack_pending;
    totals.delivered += info.delivered.consumer_seq;
  }
  return totals;
}

/**
 * Waits until the runtime committed every event stored so far: every partition consumer of both
 * lanes has nothing pending and nothing unacknowledged. A node acknowledges an event only once the
 * views, audit records, dead letters and user record of its commit are stored (a batch held for
 * coalescing, or refused by a fence, stays unacknowledged), so nothing it holds can publish more.
 */
export async function lanesSettled(client: TestClient, timeoutMs?: number): Promise<void> {
  await waitFor(async () => {
    for (const lane of ['normal', 'crisis'] as const) {
      const { pending, ackPending } = await laneTotals(client, lane);
      if (pending || ackPending) return false;
    }
    return true;
  }, 'both lanes to have nothing pending or unacknowledged', timeoutMs);
}

/**
 * Waits until devices (`user:device`, running in `process`) applied the view stored for their user:
 * the version each printed last is the stored one (a device the stored view no longer lists was
 * removed, and waits for nothing). `timeoutMs` is each device's (waitFor's default when omitted).
 */
export async function devicesSettled(client: TestClient, process: DeviceProcess, devices: readonly string[], timeoutMs?: number): Promise<void> {
  for (const device of devices) {
    const [userId, deviceId] = device.split(':') as [string, string];
    await waitFor(
      async () => {
        const stored = await client.lastView(userId);
        return !stored || !stored.devices.includes(deviceId) || process.latest(device)?.version === stored.version;
      },
      `${device} to have applied the stored view`,
      timeoutMs,
    );
  }
}

/** Waits until the runtime committed everything stored, and then `devices` (in `process`) applied the last view. */
export async function settled(client: TestClient, process?: DeviceProcess, ...devices: string[]): Promise<void> {
  await lanesSettled(client);
  if (process) await devicesSettled(client, process, devices);
}

/**
 * Waits, after a runtime node was killed, until every user record it had sent is stored. First
 * nobody answers the node's metrics subject: the server dropped the node's connection (the one its
 * records and that subscription share), having read it to the end. Then the records' stream
 * answers a write of ours that it refuses (a revision the key cannot have): a stream takes writes
 * in the order they reached the server, so it answers ours after storing the node's.
 */
export async function killedNodeWritesStored(client: TestClient): Promise<void> {
  const metrics = client.topology.subjects.control('metrics');
  await waitFor(
    () =>
      client.nc.request(metrics, '', { timeout: 1_000 }).then(
        () => false,
        (err: unknown) => err instanceof RequestError && err.isNoResponders(),
      ),
    'the server to drop the killed node',
  );
  const records = await new Kvm(client.nc).open(client.topology.buckets.users);
  const refused = await records.update(BARRIER_KEY, new Uint8Array(), Number.MAX_SAFE_INTEGER).then(
    () => null,
    (err: unknown) => err,
  );
  if (!(refused instanceof JetStreamApiError)) throw new Error(`expected the records' stream to refuse the barrier write, got ${String(refused)}`);
}
