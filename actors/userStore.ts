/**
 * Where user records live: one KV entry per user, written only with the revision the writer read.
 * A node that lost a partition (or a second process serving the same user) gets {@link FencedError}
 * instead of overwriting the newer owner's state.
 */
import type { KV } from '@nats-io/kv';
import { isWrongLastSequence } from '../transport/errors.ts';
import type { StreamWriter } from '../transport/streamWriter.ts';
import { kvKeySubject } from '../transport/topology.ts';
import { decodeUserRecord, encodeUserRecord, type UserRecord } from './userRecord.ts';

// The record's format lives in userRecord.ts; the user actor imports its types with the store's.
export type { Outbox, UserRecord } from './userRecord.ts';

/** A record and the KV revision it was read at (0: the user has no record yet). */
export interface StoredRecord {
  record: UserRecord | null;
  revision: number;
}

/** Another owner wrote this user's record since we read it. */
export class FencedError extends Error {
  override readonly name = 'FencedError';
  constructor(userId: string) {
    super(`user ${userId}: record changed by another owner`);
  }
}

/** Reads a user's record (the viewer and the CLI read them too); throws `UserRecordError` when the stored bytes are not one. */
export async function loadUserRecord(kv: KV, userId: string): Promise<StoredRecord> {
  const entry = await kv.get(userId);
  if (!entry || entry.operation !== 'PUT') return { record: null, revision: entry?.revision ?? 0 };
  return { record: decodeUserRecord(entry.value), revision: entry.revision };
}

/** Reads and writes user records: reads through the bucket, writes through the lane's stream writer. */
export class UserStore {
  private readonly kv: KV;
  private readonly writer: StreamWriter;
  private readonly bucket: string;

  constructor(kv: KV, bucket: string, writer: StreamWriter) {
    this.kv = kv;
    this.bucket = bucket;
    this.writer = writer;
  }

  /** Loads a user's record; throws `UserRecordError` when the stored bytes are not one. */
  load(userId: string): Promise<StoredRecord> {
    return loadUserRecord(this.kv, userId);
  }

  /**
   * Writes a record if it is still at `revision` (its key's last sequence in the bucket's stream, 0:
   * none); returns the new revision. A retry of a write that timed out but landed finds its own
   * bytes there: that is success, not another owner.
   */
  async save(userId: string, record: UserRecord, revision: number): Promise<number> {
    const bytes = encodeUserRecord(record);
    try {
      const ack = await this.writer.publish(kvKeySubject(this.bucket, userId), bytes, { expect: { lastSubjectSequence: revision } });
      return ack.seq;
    } catch (err) {
      if (!isWrongLastSequence(err)) throw err;
      const current = await this.kv.get(userId);
      if (current?.operation === 'PUT' && Buffer.from(current.value).equals(bytes)) return current.revision;
      throw new FencedError(userId);
    }
  }
}
