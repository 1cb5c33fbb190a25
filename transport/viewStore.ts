/**
 * The last view stored for each of a user's devices, read from the views stream (last value per
 * subject) by direct get: the stream allows it, so any server holding the stream answers, without
 * a round trip through the JetStream API leader.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import { CodecError } from './codec.ts';
import type { DeviceView } from './schemas.ts';
import type { Topology } from './topology.ts';
import { decodeDeviceView } from './viewWire.ts';

/**
 * The view last stored for each device, in order: `null` when there is none, or one that does not
 * decode as a view of this user (it cannot be shown, nor its version trusted).
 */
export function lastViews(jsm: JetStreamManager, t: Topology, userId: string, deviceIds: readonly string[]): Promise<Array<DeviceView | null>> {
  return Promise.all(
    deviceIds.map(async (deviceId) => {
      const m = await jsm.direct.getMessage(t.streams.views, { last_by_subj: t.subjects.view(userId, deviceId) });
      if (!m) return null;
      try {
        return decodeDeviceView(m.data, m.header, { userId });
      } catch (err) {
        if (err instanceof CodecError) return null;
        throw err;
      }
    }),
  );
}
