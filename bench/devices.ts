/**
 * The bench's device process: device actors (the real client library) for many users, forked by
 * `bench/run.ts`. It receives `{ start: [user:device…] }` over IPC and reports every applied view
 * back in batches as `[userId, deviceId, version, tier, crisis, appliedAt]` rows, where
 * `appliedAt` is a high-resolution wall-clock time comparable across the bench's processes.
 */
import { DeviceActor } from '../clients/deviceActor.ts';
import { connectNats } from '../transport/connection.ts';
import { isTransient } from '../transport/errors.ts';

/** One applied view. */
export type AppliedRow = [userId: string, deviceId: string, version: number, tier: string, crisis: boolean, appliedAt: number];

const FLUSH_MS = 2;
/**
 * Device actors starting at once: each creates its durable consumer, and a cluster's meta leader
 * answers thousands of replicated consumer creations asked at once only after the request timeout.
 */
const STARTS_IN_FLIGHT = 32;
const now = () => performance.timeOrigin + performance.now();
const nc = await connectNats({ name: `bench-devices/${process.pid}` });
let pending: AppliedRow[] = [];
let timer: NodeJS.Timeout | undefined;
const flush = () => {
  timer = undefined;
  process.send!({ applied: pending });
  pending = [];
};

/** Starts one device actor, again after a transient failure (its consumer is created idempotently). */
async function startDevice(pair: string): Promise<DeviceActor> {
  const [userId, deviceId] = pair.split(':') as [string, string];
  for (;;) {
    try {
      return await DeviceActor.start({
        nc,
        userId,
        deviceId,
        onApply: (v) => {
          pending.push([v.userId, v.deviceId, v.version, v.tier, v.crisis.active, now()]);
          timer ??= setTimeout(flush, FLUSH_MS);
        },
      });
    } catch (err) {
      if (!isTransient(err)) throw err;
    }
  }
}

process.on('message', async (message: { start?: string[]; stop?: boolean }) => {
  if (message.start) {
    const pairs = message.start;
    let next = 0;
    const worker = async () => {
      while (next < pairs.length) await startDevice(pairs[next++]!);
    };
    await Promise.all(Array.from({ length: STARTS_IN_FLIGHT }, worker));
    process.send!({ started: pairs.length });
  }
  if (message.stop) process.exit(0);
});
process.send!({ ready: true });
