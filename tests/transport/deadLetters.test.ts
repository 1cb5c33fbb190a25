/**
 * What a dead letter keeps of a rejected body: the bytes only when the body is plain (event fields
 * that never carry personal content, holding ids, enum values, times, counts), whatever subject it
 * came on; anything that may be personal is redacted, and a long plain body is cut.
 */
import { encode as pack } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import type { UserEventType } from '../../machines/events.ts';
import { deadLetter } from '../../transport/deadLetters.ts';
import { DEAD_LETTER_RAW_BYTES } from '../../transport/schemas.ts';
import { createSubjects } from '../../transport/subjects.ts';
import { event } from '../support/events.ts';
import { ANSWERS, EMERGENCY_CONTACTS, PERSON, SAFETY_PLAN } from '../support/pii.ts';

const subjects = createSubjects();
const USER = 'dead-letter-user';

function letter(type: UserEventType, raw: Uint8Array) {
  return deadLetter(subjects, { reason: 'invalid', detail: 'test', subject: subjects.event(USER, type), raw, receivedAt: 1 });
}

describe('dead letters keep plain bodies only', () => {
  it('a plain body is kept as it was: an unknown tier, a body of another type, a user mismatch', () => {
    for (const [type, body] of [
      ['plan_changed', { ...event(USER, 'plan_changed', { subscriptionId: 'sub_1', tier: 'basic' }), tier: 'platinum' }],
      ['payment_failed', event(USER, 'crisis_button', { deviceId: 'phone' })],
      ['payment_failed', event('someone-else', 'payment_failed', { subscriptionId: 'sub_1', attemptCount: 2, nextAttemptAt: null })],
    ] as const) {
      const raw = pack(body);
      expect(letter(type, raw)).toMatchObject({ raw, size: raw.byteLength, truncated: false, redacted: false });
    }
  });

  it('a body that may be personal is redacted, on any subject', () => {
    const bodies: Array<[UserEventType, Uint8Array]> = [
      ['plan_changed', pack(event(USER, 'emergency_contacts_updated', { contacts: EMERGENCY_CONTACTS }))],
      ['payment_failed', pack({ ...event(USER, 'payment_failed', { subscriptionId: 'sub_1', attemptCount: 1, nextAttemptAt: null }), answers: [...ANSWERS.phq9] })],
      ['device_registered', pack({ ...event(USER, 'device_registered', { deviceId: 'tablet', platform: 'ios' }), email: PERSON.email })],
      ['device_registered', pack({ ...event(USER, 'device_registered', { deviceId: 'tablet', platform: 'ios' }), deviceId: PERSON.name })],
      ['plan_changed', pack({ ...event(USER, 'plan_changed', { subscriptionId: 'sub_1', tier: 'basic' }), subscriptionId: PERSON.phone })],
      ['payment_failed', new TextEncoder().encode(JSON.stringify(event(USER, 'safety_plan_updated', { plan: SAFETY_PLAN })))],
      ['plan_changed', new Uint8Array([0xc1, 0x01, 0x02])],
      ['plan_changed', pack([USER, PERSON.email])],
      // Its own subject: redacted even when the body holds nothing personal.
      ['safety_plan_updated', pack({ type: 'safety_plan_updated', id: 'e1', userId: USER, at: 1 })],
    ];
    for (const [type, raw] of bodies) {
      expect(letter(type, raw)).toMatchObject({ raw: null, size: raw.byteLength, truncated: false, redacted: true });
    }
  });

  it('a long plain body is kept cut to its first bytes', () => {
    const raw = pack({ ...event(USER, 'plan_changed', { subscriptionId: 'sub_1', tier: 'basic' }), subscriptionId: 's'.repeat(2 * DEAD_LETTER_RAW_BYTES) });
    const kept = letter('plan_changed', raw);
    expect(kept).toMatchObject({ size: raw.byteLength, truncated: true, redacted: false });
    expect(kept.raw).toEqual(raw.slice(0, DEAD_LETTER_RAW_BYTES));
  });
});
