/** One valid example of every wire message, for codec and schema tests. */
import { deriveView } from '../../machines/deviceView.ts';
import type { UserEvent } from '../../machines/events.ts';
import { applyEvent, createUserState } from '../../machines/userState.ts';
import type { Alert, AuditRecord, DeadLetter, DeviceView } from '../../transport/schemas.ts';
import { ANSWERS, EMERGENCY_CONTACTS, SAFETY_PLAN } from '../support/pii.ts';

const userId = 'user-1';

/** One event of every type, in an order that makes sense for a user. */
export const EVENTS: UserEvent[] = [
  { type: 'device_registered', id: 'e1', userId, at: 1, deviceId: 'phone', platform: 'ios' },
  { type: 'subscription_activated', id: 'e2', userId, at: 2, subscriptionId: 'sub_1', tier: 'premium' },
  { type: 'plan_changed', id: 'e3', userId, at: 3, subscriptionId: 'sub_1', tier: 'basic' },
  { type: 'payment_failed', id: 'e4', userId, at: 4, subscriptionId: 'sub_1', attemptCount: 1, nextAttemptAt: 86_400_004 },
  { type: 'payment_recovered', id: 'e5', userId, at: 5, subscriptionId: 'sub_1' },
  { type: 'subscription_canceled', id: 'e6', userId, at: 6, subscriptionId: 'sub_1' },
  { type: 'grace_ended', id: 'e7', userId, at: 7 },
  { type: 'trial_ended', id: 'e8', userId, at: 8 },
  { type: 'assessment_completed', id: 'e9', userId, at: 9, instrument: 'gad7', answers: [...ANSWERS.gad7] },
  { type: 'safety_plan_updated', id: 'e10', userId, at: 10, plan: SAFETY_PLAN },
  { type: 'emergency_contacts_updated', id: 'e11', userId, at: 11, contacts: EMERGENCY_CONTACTS },
  { type: 'device_removed', id: 'e12', userId, at: 12, deviceId: 'phone' },
  { type: 'crisis_button', id: 'e13', userId, at: 13, deviceId: 'phone' },
  { type: 'crisis_detected', id: 'e14', userId, at: 14, source: 'clinician', level: 'critical' },
  { type: 'crisis_resolved', id: 'e15', userId, at: 15, by: 'clinician' },
];

const state = EVENTS.slice(0, 14).reduce((s, e) => applyEvent(s, e).state, createUserState(userId, 0));

/** A device view of a user in crisis, with safety content. */
export const DEVICE_VIEW: DeviceView = {
  userId,
  version: 7,
  devices: ['phone', 'web'],
  issuedAt: 100,
  ...deriveView(state.snapshot),
  crisisLines: [{ name: '988 Suicide & Crisis Lifeline', phone: '988' }],
  safety: { plan: null, contacts: EMERGENCY_CONTACTS },
};

/** An audit record of a crisis starting. */
export const AUDIT_RECORD: AuditRecord = {
  userId,
  eventId: 'e13',
  eventType: 'crisis_button',
  at: 13,
  recordedAt: 20,
  from: { subscription: 'lapsed', crisis: 'stable' },
  to: { subscription: 'lapsed', crisis: 'active' },
  crisisLevel: 'high',
  viewVersion: 7,
};

/** A dead letter that kept its bytes. */
export const DEAD_LETTER: DeadLetter = {
  reason: 'malformed',
  detail: 'not msgpack',
  subject: 'fm.evt.user-1.payment_failed',
  receivedAt: 30,
  raw: new Uint8Array([0xc1, 0x00]),
  size: 2,
  truncated: false,
  redacted: false,
};

/** A crisis latency alert. */
export const ALERT: Alert = { kind: 'crisis_latency', userId, eventId: 'e13', latencyMs: 250.5, budgetMs: 200, at: 40 };
