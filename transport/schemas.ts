/**
 * The wire contract: one zod schema per message (DESIGN §2). Event schemas are the domain's own
 * (`machines/events.ts`); this module adds the messages the runtime emits. The device view is strict
 * at every level: an unknown key is rejected, so nothing can smuggle payment details or PII onto a
 * device. `npm run schemas` writes all of them as JSON Schema to `schemas/`.
 */
import { z } from 'zod';
import { CRISIS_LEVELS } from '../machines/crisis.ts';
import type { UserView } from '../machines/deviceView.ts';
import type { SafetyContent as DomainSafetyContent } from '../machines/safety.ts';
import {
  CrisisLaneEvent,
  EmergencyContact,
  EpochMs,
  EventId,
  NormalLaneEvent,
  SafetyPlan,
  SubjectToken,
  UserEvent,
} from '../machines/events.ts';
import { ALL_FEATURES, SUBSCRIPTION_STATES, SYNC_PRIORITIES } from '../machines/features.ts';
import { MAX_DEVICES } from '../machines/userMachine.ts';
import type { Lane } from './subjects.ts';

const Feature = z.enum(ALL_FEATURES);
const SubscriptionState = z.enum(SUBSCRIPTION_STATES);
const CrisisState = z.enum(['stable', 'active']);

/** A crisis line shown in the crisis view (from configuration, per region). */
export const CrisisLine = z.strictObject({ name: z.string().min(1).max(100), phone: z.string().min(1).max(40) });

/** The entitlements part of a device view: exactly `UserView` (checked at compile time below). */
export const ViewEntitlements = z.strictObject({
  tier: SubscriptionState,
  status: z.enum(['trialing', 'active', 'past_due', 'canceled', 'lapsed']),
  trialEndsAt: EpochMs.nullable(),
  gracePeriod: z.strictObject({ endsAt: EpochMs, reason: z.enum(['payment_failed', 'canceled']) }).nullable(),
  crisis: z.strictObject({
    active: z.boolean(),
    level: z.enum(CRISIS_LEVELS).nullable(),
    since: EpochMs.nullable(),
    signalsUntil: EpochMs.nullable(),
    presentation: z.strictObject({
      hotlineQuickDial: z.boolean(),
      contactsVisible: z.boolean(),
      safetyPlanAccessible: z.boolean(),
      crisisButtonHighlighted: z.boolean(),
    }),
  }),
  features: z.strictObject({ enabled: z.array(Feature), disabled: z.array(Feature) }),
  sync: z.strictObject({
    frequency: z.enum(['realtime', 'frequent', 'standard', 'background']),
    dataLimitMb: z.number().int().positive().nullable(),
    priority: z.enum(SYNC_PRIORITIES),
  }),
});

/** The user's safety content: the only personal content a device receives (DESIGN §1.5). */
export const SafetyContent = z.strictObject({
  plan: SafetyPlan.nullable(),
  contacts: z.array(EmergencyContact).max(10),
});

/**
 * What every device of a user applies: entitlements, a per-user version that only grows, and the
 * user's registered devices. Stored once per user (the last value), fanned out to connected devices.
 * A device not in `devices` was removed (or is not registered yet): it applies nothing from the view.
 */
export const DeviceView = z.strictObject({
  userId: SubjectToken,
  version: z.number().int().positive(),
  devices: z.array(SubjectToken).max(MAX_DEVICES),
  issuedAt: EpochMs,
  ...ViewEntitlements.shape,
  crisisLines: z.array(CrisisLine).max(10),
  safety: SafetyContent,
});

/** One transition of a user's statechart, for clinicians. Event type and states only: no PII. */
export const AuditRecord = z.strictObject({
  userId: SubjectToken,
  eventId: EventId,
  eventType: z.enum(UserEvent.options.map((o) => o.shape.type.value) as [string, ...string[]]),
  /** Event time at the source. */
  at: EpochMs,
  recordedAt: EpochMs,
  from: z.strictObject({ subscription: SubscriptionState, crisis: CrisisState }),
  to: z.strictObject({ subscription: SubscriptionState, crisis: CrisisState }),
  crisisLevel: z.enum(CRISIS_LEVELS).nullable(),
  /** View version published for this transition, if the view changed. */
  viewVersion: z.number().int().positive().nullable(),
  /**
   * The lane the event came down and its sequence there: a user's records of one lane follow the
   * lane's order (what the nemesis run checks). Absent from records written before they were kept.
   */
  lane: z.enum(['normal', 'crisis'] satisfies Lane[]).optional(),
  seq: z.number().int().positive().optional(),
});

/**
 * Why a message was dead-lettered (also the last token of its `fm.dlq.<reason>` subject).
 * `rate_limited`: a valid crisis-lane event over its user's rate limit (`actors/crisisRateLimit.ts`).
 */
export const DEAD_LETTER_REASONS = ['too_large', 'malformed', 'invalid', 'user_mismatch', 'unknown_user', 'rejected', 'rate_limited'] as const;

/** Most bytes of a rejected body a dead letter keeps: enough to diagnose, and the letter always fits. */
export const DEAD_LETTER_RAW_BYTES = 16 * 1024;

/**
 * A rejected message, with its reason. `raw` is the body whole, its first {@link DEAD_LETTER_RAW_BYTES}
 * (`truncated`), or none: dropped when the message may hold personal content (`redacted`), or when
 * the sender gave none (the ingress never keeps a Stripe body).
 */
export const DeadLetter = z.strictObject({
  reason: z.enum(DEAD_LETTER_REASONS),
  /** What was wrong, naming the field, never quoting its value. */
  detail: z.string().max(500),
  subject: z.string().max(256),
  receivedAt: EpochMs,
  raw: z.custom<Uint8Array>((v) => v instanceof Uint8Array && v.byteLength <= DEAD_LETTER_RAW_BYTES, 'expected bytes').nullable(),
  /** Byte length of the rejected body; null when none was given. */
  size: z.number().int().nonnegative().nullable().describe('byte length of the rejected body; null when none was given'),
  /** `raw` holds only the first {@link DEAD_LETTER_RAW_BYTES} bytes of the body. */
  truncated: z.boolean().describe(`raw holds only the first ${DEAD_LETTER_RAW_BYTES} bytes of the body`),
  redacted: z.boolean(),
});

/** A seed budget overrun: a crisis slower than 200 ms, a therapeutic-access change slower than 500 ms. */
export const Alert = z.strictObject({
  kind: z.enum(['crisis_latency', 'therapeutic_latency']),
  userId: SubjectToken,
  eventId: EventId,
  latencyMs: z.number().nonnegative(),
  budgetMs: z.number().positive(),
  at: EpochMs,
});

/**
 * The runtime tells the auth callout that a user's view no longer lists these devices (core NATS,
 * `fm.ctl.devices.<userId>`, after the view is stored): it closes their connections and revokes their tokens.
 */
export const DeviceRevocation = z.strictObject({
  userId: SubjectToken,
  devices: z.array(SubjectToken).min(1).max(MAX_DEVICES),
});

/** A device view. */
export type DeviceView = z.infer<typeof DeviceView>;
/** An audit record. */
export type AuditRecord = z.infer<typeof AuditRecord>;
/** A dead letter. */
export type DeadLetter = z.infer<typeof DeadLetter>;
/** A dead letter's reason. */
export type DeadLetterReason = (typeof DEAD_LETTER_REASONS)[number];
/** An alert. */
export type Alert = z.infer<typeof Alert>;
/** A device revocation. */
export type DeviceRevocation = z.infer<typeof DeviceRevocation>;

/** Every wire message by the name of its JSON Schema file. */
export const WIRE_SCHEMAS = {
  'normal-lane-event': NormalLaneEvent,
  'crisis-lane-event': CrisisLaneEvent,
  'device-view': DeviceView,
  'audit-record': AuditRecord,
  'dead-letter': DeadLetter,
  alert: Alert,
  'device-revocation': DeviceRevocation,
} as const;

// Compile-time proof that the wire entitlements and the domain's derived view are the same shape.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const viewMatchesDomain: Same<z.infer<typeof ViewEntitlements>, UserView> = true;
const safetyMatchesDomain: Same<z.infer<typeof SafetyContent>, DomainSafetyContent> = true;
void viewMatchesDomain;
void safetyMatchesDomain;
