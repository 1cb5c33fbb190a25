/**
 * Where user records live: one KV entry per user, written only with the revision the writer read.
 * A node that lost a partition (or a second process serving the same user) gets {@link FencedError}
 * instead of overwriting the newer owner's state.
 */
import { decode, encode } from '@msgpack/msgpack';
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { SafetyContent } from '../machines/safety.ts';
import type { PersistedUserState } from '../machines/userState.ts';
import type { AuditRecord } from '../transport/schemas.ts';
import type { Lane } from '../transport/subjects.ts';

/** What is stored per user. */
export interface UserRecord {
  state: PersistedUserState;
  /** Safety plan and contacts: beside the statechart, never in its snapshot or audit. */
  safety: SafetyContent;
  /** Version of the last view published to the user's devices. */
  viewVersion: number;
  /** Highest stream sequence applied per lane: a redelivery at or below it was already applied. */
  lastSeq: Record<Lane, number>;
  /**
   * What the commit that wrote this record publishes (views, audit records, purges), saved at the
   * same time as it is published: if the node dies between the two, the next owner publishes it
   * again from here (see `UserActor`). Absent when the commit published nothing.
   */
  outbox?: Outbox;
}

/** A commit's output, enough to publish it again: views are rebuilt from the record's state. */
export interface Outbox {
  /** Devices that were sent the record's view, at `viewVersion`. */
  viewDevices: string[];
  audits: AuditRecord[];
  /** Devices whose last view was purged (they left the account). */
  removed: string[];
}

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

/** Reads and writes user records. */
export class UserStore {
  private readonly kv: KV;
  constructor(kv: KV) {
    this.kv = kv;
  }

  /** Loads a user's record. */
  async load(userId: string): Promise<StoredRecord> {
    const entry = await this.kv.get(userId);
    if (!entry || entry.operation !== 'PUT') return { record: null, revision: entry?.revision ?? 0 };
    return { record: decode(entry.value) as UserRecord, revision: entry.revision };
  }

  /**
   * Writes a record if it is still at `revision`; returns the new revision. A retry of a write that
   * timed out but landed finds its own bytes there: that is success, not another owner.
   */
  async save(userId: string, record: UserRecord, revision: number): Promise<number> {
    const bytes = encode(record);
    try {
      return revision === 0 ? await this.kv.create(userId, bytes) : await this.kv.update(userId, bytes, revision);
    } catch (err) {
      if (!isWrongLastSequence(err)) throw err;
      const current = await this.kv.get(userId);
      if (current?.operation === 'PUT' && Buffer.from(current.value).equals(bytes)) return current.revision;
      throw new FencedError(userId);
    }
  }
}

function isWrongLastSequence(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}
