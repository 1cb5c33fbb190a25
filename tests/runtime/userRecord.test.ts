/**
 * The user record's bytes: every save carries the schema version, the reader takes that version
 * only, and bytes that are not a record are a typed error naming the field.
 */
import { decode as unpack, encode as pack } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { decodeUserRecord, encodeUserRecord, freezeUserRecord, thawUserRecord, USER_RECORD_VERSION, UserRecordError, type UserRecord } from '../../actors/userRecord.ts';
import { createUserState, foldEvents, toPersisted } from '../../machines/userState.ts';
import { event, registerDevices } from '../support/events.ts';

function record(): UserRecord {
  const user = 'record-user';
  const state = foldEvents(createUserState(user, 1_000), [
    ...registerDevices(user, ['phone']),
    event(user, 'subscription_activated', { subscriptionId: 'sub_1', tier: 'premium' }),
  ]);
  return {
    state: toPersisted(state),
    safety: { plan: null, contacts: [{ name: 'A', phone: '+100' }] },
    viewVersion: 2,
    lastSeq: { normal: 3, crisis: 0 },
    outbox: { view: true, audits: [] },
  };
}

/** A {@link UserRecordError} naming `field` (`undefined`: none). */
const recordError = (field: string | undefined) => expect.objectContaining({ name: UserRecordError.name, field });

describe('user record', () => {
  it('is saved with its schema version and read back as it was', () => {
    const saved = record();
    const bytes = encodeUserRecord(saved);
    expect((unpack(bytes) as { schemaVersion: unknown }).schemaVersion).toBe(USER_RECORD_VERSION);
    expect(decodeUserRecord(bytes)).toEqual(saved);
  });

  it('another version, or none, is an unknown version', () => {
    const stored = unpack(encodeUserRecord(record())) as Record<string, unknown>;
    for (const bytes of [pack({ ...stored, schemaVersion: USER_RECORD_VERSION + 1 }), pack({ ...stored, schemaVersion: undefined })]) {
      expect(() => decodeUserRecord(bytes)).toThrow(recordError('schemaVersion'));
      expect(() => decodeUserRecord(bytes)).toThrow(/unknown version/);
    }
  });

  it('version 1 (views per device) is migrated: its outbox sent the view if it sent it to any device', () => {
    const { outbox: _, ...current } = record();
    const v1 = (viewDevices: string[]) => pack({ schemaVersion: 1, ...current, outbox: { viewDevices, audits: [], removed: ['old'] } });
    expect(decodeUserRecord(v1(['phone']))).toEqual({ ...current, outbox: { view: true, audits: [] } });
    expect(decodeUserRecord(v1([]))).toEqual({ ...current, outbox: { view: false, audits: [] } });
    expect(decodeUserRecord(pack({ schemaVersion: 1, ...current }))).toEqual(current);
  });

  it('a field that breaks the schema is named; bytes that are not msgpack are refused', () => {
    const stored = unpack(encodeUserRecord(record())) as UserRecord & { schemaVersion: number };
    const badDevice = { ...stored, state: { ...stored.state, context: { ...stored.state.context, devices: ['not a token'] } } };
    expect(() => decodeUserRecord(pack(badDevice))).toThrow(recordError('state.context.devices.0'));
    expect(() => decodeUserRecord(pack({ ...stored, lastSeq: { normal: 3 } }))).toThrow(recordError('lastSeq.crisis'));
    expect(() => decodeUserRecord(new Uint8Array([0xc1]))).toThrow(recordError(undefined));
  });

  it('frozen for an idle resident, it comes back as it was, in a fraction of its bytes', () => {
    const saved = record();
    const frozen = freezeUserRecord(saved);
    expect(thawUserRecord(frozen)).toEqual(saved);
    expect(frozen.length).toBeLessThan(encodeUserRecord(saved).length / 2);
  });

  it('a record the reader would refuse is never written', () => {
    expect(() => encodeUserRecord({ ...record(), viewVersion: -1 })).toThrow(recordError('viewVersion'));
  });
});
