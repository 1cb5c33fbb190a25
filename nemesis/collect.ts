/**
 * Reads what the system stored, for the checker: both lanes (every message with its stream
 * sequence), the dead letters, the audit stream in its order, and per user its record (KV
 * `fm_users`) and last stored view (from the views stream's leader: a direct get may be answered by
 * a follower a moment behind). Bodies are decoded here and leniently (a body that does not parse is
 * a finding, never a crash of the run).
 */
import { decode as unpack } from '@msgpack/msgpack';
import type { JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import { decodeUserRecord } from '../actors/userRecord.ts';
import { UserEvent } from '../machines/events.ts';
import { surely } from '../tests/support/clusterSystem.ts';
import { decode } from '../transport/codec.ts';
import type { Lane } from '../transport/subjects.ts';
import { kvKeySubject, type Topology } from '../transport/topology.ts';
import { storedView } from '../transport/viewStore.ts';
import type { Regions, StoredAudit, StoredDeadLetter, StoredEvent, StoredUser } from './checker.ts';

/** A connection that may read everything (the runtime role). */
export interface Reader {
  js: JetStreamClient;
  jsm: JetStreamManager;
  topology: Topology;
}

/** Gives up a read that fails transiently for this long (the cluster is healed when the run collects). */
const READ_GIVE_UP_MS = 30_000;
/** Users' records and views read at once. */
const READS_IN_FLIGHT = 32;

/** Every message of a stream stored when the call starts, in order (one ordered consumer). */
export async function readStream(reader: Reader, stream: string, visit: (m: JsMsg) => void): Promise<number> {
  const info = await surely(() => reader.jsm.streams.info(stream), READ_GIVE_UP_MS);
  if (info.state.messages === 0) return 0;
  let read = 0;
  const messages = await (await reader.js.consumers.get(stream, {})).consume({ max_messages: 1_024 });
  try {
    for await (const m of messages) {
      visit(m);
      read++;
      // The last sequence may be gone (a purged schedule): what is left to deliver says when it is done.
      if (m.seq >= info.state.last_seq || m.info.pending === 0) break;
    }
  } finally {
    messages.stop();
  }
  return read;
}

/** Runs `fn` over `items`, at most `limit` at once. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/** Both lanes' messages (schedules, which share the normal lane's stream, left out). */
export async function readLanes(reader: Reader): Promise<StoredEvent[]> {
  const { topology } = reader;
  const events: StoredEvent[] = [];
  for (const lane of ['normal', 'crisis'] as const satisfies Lane[]) {
    await readStream(reader, topology.streams[lane], (m) => {
      const parsed = topology.subjects.parseEvent(m.subject);
      if (!parsed) return;
      let event: UserEvent | null;
      try {
        event = decode(UserEvent, m.data, { userId: parsed.userId });
      } catch {
        event = null;
      }
      events.push({ lane: parsed.lane, seq: m.seq, userId: parsed.userId, type: parsed.type, event });
    });
  }
  return events;
}

/** A msgpack map's fields, or an empty object when the bytes are not one. */
function fields(bytes: Uint8Array | null | undefined): Record<string, unknown> {
  if (!bytes) return {};
  try {
    const value = unpack(bytes);
    return typeof value === 'object' && value !== null && !ArrayBuffer.isView(value) ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

const text = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/** Every dead letter, with the event id when it kept the body. */
export async function readDeadLetters(reader: Reader): Promise<StoredDeadLetter[]> {
  const letters: StoredDeadLetter[] = [];
  await readStream(reader, reader.topology.streams.deadLetters, (m) => {
    const letter = fields(m.data);
    const subject = reader.topology.subjects.parseEvent(text(letter.subject) ?? '');
    const raw = letter.raw instanceof Uint8Array ? letter.raw : null;
    letters.push({
      reason: text(letter.reason) ?? 'unknown',
      userId: subject?.userId ?? null,
      type: subject?.type ?? null,
      eventId: text(fields(raw).id),
      detail: text(letter.detail) ?? '',
    });
  });
  return letters;
}

const regions = (v: unknown): Regions => {
  const r = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  return { subscription: text(r.subscription) ?? '?', crisis: text(r.crisis) ?? '?' };
};

/** Every audit record, in the audit stream's order. */
export async function readAudit(reader: Reader): Promise<StoredAudit[]> {
  const audit: StoredAudit[] = [];
  await readStream(reader, reader.topology.streams.audit, (m) => {
    const a = fields(m.data);
    const lane = a.lane === 'normal' || a.lane === 'crisis' ? a.lane : undefined;
    audit.push({
      auditSeq: m.seq,
      userId: text(a.userId) ?? '?',
      eventId: text(a.eventId) ?? '?',
      eventType: text(a.eventType) ?? '?',
      from: regions(a.from),
      to: regions(a.to),
      lane,
      seq: typeof a.seq === 'number' ? a.seq : undefined,
    });
  });
  return audit;
}

/** The streams the checker reads, with the records' bucket's. */
export function storedStreams(topology: Topology): string[] {
  const { normal, crisis, audit, views, deadLetters } = topology.streams;
  return [normal, crisis, audit, views, deadLetters, `KV_${topology.buckets.users}`];
}

/**
 * Whether every replica of the streams the checker reads is current (a restarted or cut-off server
 * catches up after healing; an ordered consumer may be served from any replica).
 */
export async function replicasCurrent(reader: Reader): Promise<boolean> {
  for (const stream of storedStreams(reader.topology)) {
    const info = await reader.jsm.streams.info(stream);
    if (!info.cluster?.leader || (info.cluster.replicas ?? []).some((r) => !r.current || (r.lag ?? 0) > 0 || r.offline)) return false;
  }
  return true;
}

/** Each user's record and last stored view, both from their stream's leader (a KV get may be answered by a follower). */
export async function readUsers(reader: Reader, users: readonly string[]): Promise<StoredUser[]> {
  const { topology, jsm } = reader;
  const recordStream = `KV_${topology.buckets.users}`;
  return mapLimit(users, READS_IN_FLIGHT, async (userId) => {
    const stored: StoredUser = { userId, record: null, view: null };
    try {
      const m = await surely(() => jsm.streams.getMessage(recordStream, { last_by_subj: kvKeySubject(topology.buckets.users, userId) }), READ_GIVE_UP_MS);
      // A deleted or purged key holds a marker, no record.
      stored.record = m && !m.header?.get('KV-Operation') ? decodeUserRecord(m.data) : null;
    } catch (err) {
      stored.recordError = (err as Error).message;
    }
    try {
      const last = await surely(() => storedView(jsm.streams, topology, userId), READ_GIVE_UP_MS);
      stored.view = last?.view ?? null;
      if (last && !last.view) stored.viewError = `the stored view (seq ${last.seq}) does not decode as a view of this user`;
    } catch (err) {
      stored.viewError = (err as Error).message;
    }
    return stored;
  });
}
