/**
 * The bench's device process: device actors (the real client library) for many users, forked by
 * `bench/run.ts`. It receives `{ start: [user:device…] }` over IPC and reports every applied view
 * back in batches as `[userId, deviceId, version, tier, crisis, appliedAt]` rows, where
 * `appliedAt` is a high-resolution wall-clock time comparable across the bench's processes.
 */
import { DeviceActor } from '../clients/deviceActor.ts';
import { connectNats } from '../transport/connection.ts';

/** One applied view. */
export type AppliedRow = [userId: string, deviceId: string, version: number, tier: string, crisis: boolean, appliedAt: number];

const FLUSH_MS = 2;
const now = () => performance.timeOrigin + performance.now();
const nc = await connectNats({ name: `bench-devices/${process.pid}` });
let pending: AppliedRow[] = [];
let timer: NodeJS.Timeout | undefined;
const flush = () => {
  timer = undefined;
  process.send!({ applied: pending });
  pending = [];
};

process.on('message', async (message: { start?: string[]; stop?: boolean }) => {
  if (message.start) {
    const started = await Promise.all(
      message.start.map((pair) => {
        const [userId, deviceId] = pair.split(':') as [string, string];
        return DeviceActor.start({
          nc,
          userId,
          deviceId,
          onApply: (v) => {
            pending.push([v.userId, v.deviceId, v.version, v.tier, v.crisis.active, now()]);
            timer ??= setTimeout(flush, FLUSH_MS);
          },
        });
      }),
    );
    process.send!({ started: started.length });
  }
  if (message.stop) process.exit(0);
});
process.send!({ ready: true });
