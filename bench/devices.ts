/**
 * The bench's device process: device actors (the real client library) for many users, forked by
 * `DeviceWatch` (bench/harness.ts). Over IPC it takes:
 *
 * - `{ start: [user:device…] }`: starts those devices on the process's own connection (a load's
 *   devices); answers `{ started: n }`.
 * - `{ connect: { pairs, perConnection } }`: starts those devices on new connections of
 *   `perConnection` devices each (the population's connected devices); answers `{ connected }`,
 *   each device's catch-up time: its `DeviceActor.start` call → its first catch-up holding a view, in
 *   ms. Devices that found no view are counted in `{ viewless }`.
 * - `{ storm: [[user:device, version]…] }`: from now on, each of those devices has converged at its
 *   first catch-up (the one after a reconnect) holding at least that version; answers `{ armed: true }`,
 *   then `{ converged: at }` once all of them have. `{ pending: true }` answers how many have not yet.
 *
 * Every applied view is reported back in batches as `[userId, deviceId, version, tier, crisis,
 * appliedAt]` rows (the device id is the actor's: a view lists all of its user's devices). Times are
 * high-resolution wall-clock times, comparable across the bench's processes.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { DeviceActor } from '../clients/deviceActor.ts';
import { connectNats } from '../transport/connection.ts';
import type { DeviceView } from '../transport/schemas.ts';

/** One applied view. */
export type AppliedRow = [userId: string, deviceId: string, version: number, tier: string, crisis: boolean, appliedAt: number];

/** What the process is asked over IPC (see the module comment). */
export interface DevicesRequest {
  start?: string[];
  connect?: { pairs: string[]; perConnection: number };
  storm?: Array<[pair: string, version: number]>;
  pending?: boolean;
}

const FLUSH_MS = 2;
/**
 * Device actors starting at once, per request: each start is a subscription and a direct get, so
 * thousands of devices queue at most this many reads on the server.
 */
const STARTS_IN_FLIGHT = 64;
const now = () => performance.timeOrigin + performance.now();
const own = await connectNats({ name: `bench-devices/${process.pid}`, credentials: { role: 'runtime' } });
let rows: AppliedRow[] = [];
let timer: NodeJS.Timeout | undefined;
const flush = () => {
  timer = undefined;
  process.send!({ applied: rows });
  rows = [];
};
const report = (deviceId: string) => (v: DeviceView) => {
  rows.push([v.userId, deviceId, v.version, v.tier, v.crisis.active, now()]);
  timer ??= setTimeout(flush, FLUSH_MS);
};

/** The storm being waited for: devices (user:device) not converged yet, with the version each must hold. */
let storm: Map<string, number> | undefined;
/** A device caught up (at start or after a reconnect): it may complete the storm. */
function caughtUp(pair: string, view: DeviceView | null): void {
  const wanted = storm?.get(pair);
  if (wanted === undefined || !view || view.version < wanted) return;
  storm!.delete(pair);
  if (storm!.size > 0) return;
  storm = undefined;
  process.send!({ converged: now() });
}

/** Starts `pairs` (user:device), {@link STARTS_IN_FLIGHT} at a time, on the connection `connectionOf(i)` gives the i-th. */
async function startAll(pairs: string[], connectionOf: (i: number) => NatsConnection, onCatchUp?: (i: number, view: DeviceView | null) => void): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < pairs.length) {
      const i = next++;
      const [userId, deviceId] = pairs[i]!.split(':') as [string, string];
      await DeviceActor.start({
        nc: connectionOf(i),
        userId,
        deviceId,
        onApply: report(deviceId),
        onCatchUp: (view) => {
          onCatchUp?.(i, view);
          caughtUp(pairs[i]!, view);
        },
      });
    }
  };
  await Promise.all(Array.from({ length: STARTS_IN_FLIGHT }, worker));
}

/** Starts devices on new connections of `perConnection` each; resolves with each one's catch-up time (ms), and the number without a view. */
async function connect(pairs: string[], perConnection: number): Promise<{ connected: number[]; viewless: number }> {
  const count = Math.ceil(pairs.length / perConnection);
  const connections = await Promise.all(Array.from({ length: count }, (_, c) => connectNats({ name: `bench-devices/${process.pid}/${c}`, credentials: { role: 'runtime' } })));
  const startedAt = new Array<number>(pairs.length);
  const caughtUpMs = new Array<number | undefined>(pairs.length);
  await startAll(
    pairs,
    // Asked right before the device's start: its catch-up time counts from here.
    (i) => {
      startedAt[i] = now();
      return connections[Math.floor(i / perConnection)]!;
    },
    (i, view) => {
      if (view && caughtUpMs[i] === undefined) caughtUpMs[i] = now() - startedAt[i]!;
    },
  );
  const connected = caughtUpMs.filter((t) => t !== undefined);
  return { connected, viewless: pairs.length - connected.length };
}

process.on('message', async (message: DevicesRequest) => {
  if (message.start) {
    await startAll(message.start, () => own);
    process.send!({ started: message.start.length });
  }
  if (message.connect) process.send!(await connect(message.connect.pairs, message.connect.perConnection));
  if (message.storm) {
    storm = new Map(message.storm);
    process.send!({ armed: true });
  }
  if (message.pending) process.send!({ pending: storm?.size ?? 0 });
});
process.send!({ ready: true });
