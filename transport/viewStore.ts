/**
 * The last view stored for a user, read from the views stream (last value per subject) by direct
 * get: the stream allows it, so any server holding the stream answers, without a round trip through
 * the JetStream API leader. nats.js puts the subject in the request's own subject
 * (`$JS.API.DIRECT.GET.<stream>.<subject>`), so a permission can allow one user's view only.
 */
import type { DirectStreamAPI } from '@nats-io/jetstream';
import { CodecError } from './codec.ts';
import type { DeviceView } from './schemas.ts';
import type { Topology } from './topology.ts';
import { decodeDeviceView } from './viewWire.ts';

/**
 * The user's last stored view: `null` when there is none, or one that does not decode as a view of
 * this user (it cannot be shown, nor its version trusted).
 */
export async function lastView(direct: DirectStreamAPI, t: Topology, userId: string): Promise<DeviceView | null> {
  const m = await direct.getMessage(t.streams.views, { last_by_subj: t.subjects.view(userId) });
  if (!m) return null;
  try {
    return decodeDeviceView(m.data, m.header, { userId });
  } catch (err) {
    if (err instanceof CodecError) return null;
    throw err;
  }
}
