import { encode as pack } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { UserEvent } from '../../machines/events.ts';
import { CodecError, decode, encode, MAX_BODY_BYTES } from '../../transport/codec.ts';
import { Alert, AuditRecord, DeadLetter, DeviceView } from '../../transport/schemas.ts';
import { ALERT, AUDIT_RECORD, DEAD_LETTER, DEVICE_VIEW, EVENTS } from './fixtures.ts';

/** Runs `fn` and returns the CodecError it throws (failing the test when it throws none or another). */
function codecError(fn: () => unknown): CodecError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CodecError);
    return err as CodecError;
  }
  throw new Error('expected a CodecError');
}

describe('codec round trip', () => {
  it.each(EVENTS.map((e) => [e.type, e] as const))('event %s', (_type, event) => {
    expect(decode(UserEvent, encode(UserEvent, event), { userId: event.userId })).toEqual(event);
  });

  it.each([
    ['device view', DeviceView, DEVICE_VIEW],
    ['audit record', AuditRecord, AUDIT_RECORD],
    ['dead letter', DeadLetter, DEAD_LETTER],
    ['alert', Alert, ALERT],
  ] as const)('%s', (_name, schema, value) => {
    expect(decode(schema, encode(schema, value))).toEqual(value);
  });

  it('keeps the crisis view whole: every crisis feature survives the trip', () => {
    const view = decode(DeviceView, encode(DeviceView, DEVICE_VIEW));
    expect(view.crisis.active).toBe(true);
    expect(view.features.enabled).toEqual(expect.arrayContaining(['crisis_button', 'hotline_access', 'safety_plan', 'emergency_contacts']));
  });
});

describe('codec rejects bad input with a typed error', () => {
  it('malformed msgpack', () => {
    const err = codecError(() => decode(UserEvent, new Uint8Array([0xc1, 0xff, 0x00])));
    expect(err.code).toBe('malformed');
  });

  it('truncated msgpack', () => {
    const bytes = encode(UserEvent, EVENTS[1]!);
    expect(codecError(() => decode(UserEvent, bytes.subarray(0, bytes.length - 3))).code).toBe('malformed');
  });

  it('wrong type, naming the field', () => {
    const err = codecError(() => decode(UserEvent, pack({ ...EVENTS[3]!, attemptCount: 'two' })));
    expect(err.code).toBe('invalid');
    expect(err.field).toBe('attemptCount');
  });

  it('an unknown event type, naming the discriminator', () => {
    const err = codecError(() => decode(UserEvent, pack({ ...EVENTS[0]!, type: 'format_disk' })));
    expect(err.code).toBe('invalid');
    expect(err.field).toBe('type');
  });

  it('an assessment with an out-of-range answer, naming the item', () => {
    const err = codecError(() =>
      decode(UserEvent, pack({ type: 'assessment_completed', id: 'a', userId: 'u', at: 1, instrument: 'phq9', answers: [0, 0, 0, 0, 0, 0, 0, 0, 4] })),
    );
    expect(err.code).toBe('invalid');
    expect(err.field).toBe('answers.8');
  });

  it('a missing field', () => {
    const { at: _at, ...noTime } = EVENTS[2]!;
    const err = codecError(() => decode(UserEvent, pack(noTime)));
    expect(err).toMatchObject({ code: 'invalid', field: 'at' });
  });

  it('unknown keys in a device view, at the top and nested (the PII guard)', () => {
    const top = codecError(() => decode(DeviceView, pack({ ...DEVICE_VIEW, email: 'someone@example.com' })));
    expect(top).toMatchObject({ code: 'invalid', field: 'email' });
    expect(top.message).not.toContain('someone@example.com');
    const nested = codecError(() => decode(DeviceView, pack({ ...DEVICE_VIEW, sync: { ...DEVICE_VIEW.sync, cardLast4: '4242' } })));
    expect(nested).toMatchObject({ code: 'invalid', field: 'sync.cardLast4' });
  });

  it('an unknown key that does not read as a field name is not named (it may be a garbled personal value)', () => {
    const err = codecError(() => decode(DeviceView, pack({ ...DEVICE_VIEW, 'Marisol sister +1 555': 1 })));
    expect(err).toMatchObject({ code: 'invalid', field: '<key>' });
    expect(err.message).not.toContain('Marisol');
  });

  it('refuses to encode a device view carrying an unknown key', () => {
    const err = codecError(() => encode(DeviceView, { ...DEVICE_VIEW, customerName: 'Ada' } as DeviceView));
    expect(err).toMatchObject({ code: 'invalid', field: 'customerName' });
  });

  it('a user id that does not match the subject', () => {
    const err = codecError(() => decode(UserEvent, encode(UserEvent, EVENTS[0]!), { userId: 'someone-else' }));
    expect(err).toMatchObject({ code: 'user_mismatch', field: 'userId' });
  });

  it('a user id unfit for a subject token', () => {
    const err = codecError(() => decode(UserEvent, pack({ ...EVENTS[0]!, userId: 'a.b' })));
    expect(err).toMatchObject({ code: 'invalid', field: 'userId' });
  });

  it('an oversize body, before parsing it', () => {
    const err = codecError(() => decode(UserEvent, new Uint8Array(MAX_BODY_BYTES + 1)));
    expect(err.code).toBe('too_large');
    const small = codecError(() => decode(UserEvent, encode(UserEvent, EVENTS[9]!), { maxBytes: 64 }));
    expect(small.code).toBe('too_large');
  });
});
