/**
 * The user record: what the runtime stores per user (KV `fm_users`), its schema and version, and
 * the one encoder and decoder of its bytes. Every save writes {@link USER_RECORD_VERSION}; the
 * reader also migrates version 1 (views per device: its outbox named the devices it sent to), so
 * old bytes are never read as new.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { z } from 'zod';
import { SubjectToken } from '../machines/events.ts';
import { applyEvent, createUserState, PersistedUserState, toPersisted } from '../machines/userState.ts';
import { CodecError, decode, encode } from '../transport/codec.ts';
import { AuditRecord, SafetyContent } from '../transport/schemas.ts';

/** The version every save writes and the reader requires. */
export const USER_RECORD_VERSION = 2;

/** A commit's output, enough to publish it again: the view is rebuilt from the record's state. */
export const Outbox = z.strictObject({
  /** Whether the commit published the record's view, at `viewVersion`. */
  view: z.boolean(),
  audits: z.array(AuditRecord),
});

/** Version 1's outbox: a view per device. */
const OutboxV1 = z.strictObject({ viewDevices: z.array(SubjectToken), audits: z.array(AuditRecord), removed: z.array(SubjectToken) });

const StreamSeq = z.number().int().nonnegative();

/** What is stored per user (without its version, which only the bytes carry). */
export const UserRecord = z.strictObject({
  /** The statechart and what makes applying events idempotent: the domain's own schema. */
  state: PersistedUserState,
  /** Safety plan and contacts: beside the statechart, never in its snapshot or audit. */
  safety: SafetyContent,
  /** Version of the last view published to the user's devices. */
  viewVersion: z.number().int().nonnegative(),
  /** Highest stream sequence applied per lane: deliveries come in stream order, so a redelivery is one at or below it. */
  lastSeq: z.strictObject({ normal: StreamSeq, crisis: StreamSeq }),
  /**
   * What the commit that wrote this record publishes (the view, audit records), saved before
   * it is published: if the node dies after the save, the next owner publishes it again from here
   * (see `UserActor`). Absent when the commit published nothing.
   */
  outbox: Outbox.optional(),
});

/** The record as stored: its version first, so the reader checks it before anything else. */
const StoredUserRecord = z.strictObject({ schemaVersion: z.literal(USER_RECORD_VERSION), ...UserRecord.shape });

/** Version 1 as stored. */
const StoredUserRecordV1 = z.strictObject({ schemaVersion: z.literal(1), ...UserRecord.shape, outbox: OutboxV1.optional() });

/** Every version the reader takes. */
const AnyStoredUserRecord = z.discriminatedUnion('schemaVersion', [StoredUserRecord, StoredUserRecordV1]);

/** A user's record. */
export type UserRecord = z.infer<typeof UserRecord>;
/** A commit's output kept in the record. */
export type Outbox = z.infer<typeof Outbox>;

/**
 * Stored bytes that are not a user record of {@link USER_RECORD_VERSION}. Terminal: the same bytes
 * fail the same way however often they are read.
 */
export class UserRecordError extends Error {
  override readonly name = 'UserRecordError';
  /** Dotted path of the offending field (`schemaVersion`, `state.context.devices.0`), when there is one. */
  readonly field: string | undefined;
  constructor(cause: CodecError) {
    super(`user record does not parse: ${cause.field === 'schemaVersion' ? `unknown version (${cause.message})` : cause.message}`, { cause });
    this.field = cause.field;
  }
}

// A record holds the safety content and a commit's audit records: no wire body limit applies.
const UNLIMITED = { maxBytes: Number.POSITIVE_INFINITY };

/** The bytes of a record, at {@link USER_RECORD_VERSION}; validated, so the reader never refuses what a save wrote. */
export function encodeUserRecord(record: UserRecord): Uint8Array {
  try {
    return encode(StoredUserRecord, { schemaVersion: USER_RECORD_VERSION, ...record }, UNLIMITED);
  } catch (err) {
    throw err instanceof CodecError ? new UserRecordError(err) : err;
  }
}

/** Reads a record's bytes; throws {@link UserRecordError} naming the field when they are not one. */
export function decodeUserRecord(bytes: Uint8Array): UserRecord {
  try {
    const stored = decode(AnyStoredUserRecord, bytes, UNLIMITED);
    if (stored.schemaVersion === USER_RECORD_VERSION) {
      const { schemaVersion: _, ...record } = stored;
      return record;
    }
    // Version 1 sent a view when it sent one to any device.
    const { schemaVersion: _, outbox, ...record } = stored;
    return outbox ? { ...record, outbox: { view: outbox.viewDevices.length > 0, audits: outbox.audits } } : record;
  } catch (err) {
    throw err instanceof CodecError ? new UserRecordError(err) : err;
  }
}

/**
 * A typical record's bytes: the preset dictionary of {@link freezeUserRecord}. Most of a small
 * record is its keys and their layout, which the dictionary already holds: about 425 bytes deflate
 * to about 80 with it (300 without).
 */
const FREEZE_DICTIONARY = encodeUserRecord({
  state: toPersisted(
    applyEvent(createUserState('usr-typical', 0), {
      type: 'subscription_activated',
      id: 'evt-typical',
      userId: 'usr-typical',
      at: 0,
      subscriptionId: 'sub_typical',
      tier: 'premium',
    }).state,
  ),
  safety: { plan: null, contacts: [] },
  viewVersion: 1,
  lastSeq: { normal: 1, crisis: 0 },
});

/**
 * A record as an idle resident keeps it in memory: its bytes deflated with a preset dictionary, as
 * a one-byte string (no buffer object per user).
 */
export function freezeUserRecord(record: UserRecord): string {
  return deflateRawSync(encodeUserRecord(record), { dictionary: FREEZE_DICTIONARY }).toString('latin1');
}

/** The record {@link freezeUserRecord} kept. */
export function thawUserRecord(frozen: string): UserRecord {
  return decodeUserRecord(inflateRawSync(Buffer.from(frozen, 'latin1'), { dictionary: FREEZE_DICTIONARY }));
}
