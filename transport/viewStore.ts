/**
 * The last view stored for a user, read from the views stream (last value per subject). Devices,
 * the callout and the viewer read it by direct get: the stream allows it, so any server holding the
 * stream answers, without a round trip through the JetStream API leader, and nats.js puts the
 * subject in the request's own subject (`$JS.API.DIRECT.GET.<stream>.<subject>`), so a permission
 * can allow one user's view only. The runtime, which replaces the view only over the one it read
 * (`Publisher.view`), reads it from the stream's leader after a refused replacement: a follower
 * (one cut off from the others, say) may answer with an older one for as long as it is behind.
 */
import type { DirectStreamAPI, StoredMsg, StreamAPI } from '@nats-io/jetstream';
import { CodecError } from './codec.ts';
import type { DeviceView } from './schemas.ts';
import type { Topology } from './topology.ts';
import { decodeDeviceView } from './viewWire.ts';

/** A stored view and its sequence in the views stream; `view` is `null` when it does not decode as a view of this user. */
export interface StoredView {
  view: DeviceView | null;
  seq: number;
}

/** Where a view is read: by direct get (any server holding the stream) or from the stream's leader. */
export type ViewSource = Pick<DirectStreamAPI, 'getMessage'> | Pick<StreamAPI, 'getMessage'>;

/** The user's last stored view with its sequence (`null`: none). */
export async function storedView(source: ViewSource, t: Topology, userId: string): Promise<StoredView | null> {
  const m: StoredMsg | null = await source.getMessage(t.streams.views, { last_by_subj: t.subjects.view(userId) });
  if (!m) return null;
  try {
    return { view: decodeDeviceView(m.data, m.header, { userId }), seq: m.seq };
  } catch (err) {
    if (err instanceof CodecError) return { view: null, seq: m.seq };
    throw err;
  }
}

/**
 * The user's last stored view: `null` when there is none, or one that does not decode as a view of
 * this user (it cannot be shown, nor its version trusted).
 */
export async function lastView(source: ViewSource, t: Topology, userId: string): Promise<DeviceView | null> {
  return (await storedView(source, t, userId))?.view ?? null;
}
