/**
 * The domain events a user's statechart consumes, one zod schema each. These are also the bodies
 * published on the normal and crisis lanes (DESIGN §2); `transport/` adds the wire framing.
 * zod is pure validation, so the domain owns its own event shapes.
 */
import { z } from 'zod';
import { CRISIS_LEVELS } from './crisis.ts';
import { PAID_TIERS } from './features.ts';
import { assessmentProblem, INSTRUMENTS } from './scoring.ts';

/** Opaque identifier safe to use as one NATS subject token (no dots, spaces or wildcards). */
export const SubjectToken = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, "_" or "-" only (it is a subject token)');

/** Event id: the dedup key (`Nats-Msg-Id`). */
export const EventId = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9_:.-]+$/, 'letters, digits and "_:.-" only');

/** Milliseconds since the epoch. */
export const EpochMs = z.number().int().nonnegative();

const base = { id: EventId, userId: SubjectToken, at: EpochMs };

const paidTier = z.enum(PAID_TIERS);
const subscription = { subscriptionId: z.string().min(1).max(255) };

/**
 * A snapshot of a subscription as of `at` (what the Stripe ingress publishes for every subscription
 * event): newest wins, whatever order snapshots arrive in (see `billing.ts`). `tier` is what its
 * prices buy; an active subscription must name one.
 */
export const SubscriptionUpdated = z
  .object({
    type: z.literal('subscription_updated'),
    ...base,
    ...subscription,
    status: z.enum(['active', 'past_due', 'canceled']),
    tier: paidTier.nullable(),
  })
  .refine((e) => e.status !== 'active' || e.tier !== null, { message: 'an active subscription names its tier', path: ['tier'] });

/** Shorthand for a snapshot with status active: a subscription became active at a tier. */
export const SubscriptionActivated = z.object({
  type: z.literal('subscription_activated'),
  ...base,
  ...subscription,
  tier: paidTier,
});

/** Shorthand for a snapshot with status active: the subscription now pays for this tier. */
export const PlanChanged = z.object({ type: z.literal('plan_changed'), ...base, ...subscription, tier: paidTier });

/** Shorthand for a snapshot with status canceled: the grace period starts. */
export const SubscriptionCanceled = z.object({ type: z.literal('subscription_canceled'), ...base, ...subscription });

/** An invoice's payment failed at `at`: an active subscription is past due from then. */
export const PaymentFailed = z.object({
  type: z.literal('payment_failed'),
  ...base,
  ...subscription,
  attemptCount: z.number().int().nonnegative(),
  nextAttemptAt: EpochMs.nullable(),
});

/** An invoice was paid at `at`: a past-due subscription is active again. */
export const PaymentRecovered = z.object({ type: z.literal('payment_recovered'), ...base, ...subscription });

/** The trial deadline was reached (raised by the runtime from the deadline in the snapshot). */
export const TrialEnded = z.object({ type: z.literal('trial_ended'), ...base });

/** The grace deadline was reached (raised by the runtime from the deadline in the snapshot). */
export const GraceEnded = z.object({ type: z.literal('grace_ended'), ...base });

/** A completed PHQ-9 or GAD-7. Answers never leave the runtime: not in views, audit or logs. */
export const AssessmentCompleted = z
  .object({
    type: z.literal('assessment_completed'),
    ...base,
    instrument: z.enum(INSTRUMENTS),
    answers: z.array(z.number()),
  })
  .superRefine((e, ctx) => {
    const problem = assessmentProblem(e.instrument, e.answers);
    if (problem) {
      ctx.addIssue({
        code: 'custom',
        message: problem.reason,
        path: problem.item === undefined ? ['answers'] : ['answers', problem.item - 1],
      });
    }
  });

/** Device platforms. */
export const PLATFORMS = ['ios', 'android', 'web'] as const;

/** A device joined the user's account and should receive views. */
export const DeviceRegistered = z.object({
  type: z.literal('device_registered'),
  ...base,
  deviceId: SubjectToken,
  platform: z.enum(PLATFORMS),
});

/** A device left the user's account. */
export const DeviceRemoved = z.object({ type: z.literal('device_removed'), ...base, deviceId: SubjectToken });

const entries = z.array(z.string().min(1).max(300)).max(10);

/** The six sections of a Stanley-Brown safety plan. */
export const SafetyPlan = z.strictObject({
  warningSigns: entries,
  copingStrategies: entries,
  distractions: entries,
  peopleToAsk: entries,
  professionals: entries,
  safeEnvironment: entries,
});

/** One emergency contact. */
export const EmergencyContact = z.strictObject({
  name: z.string().min(1).max(200),
  phone: z.string().min(3).max(40),
  relationship: z.string().max(100).optional(),
});

/** The user edited their safety plan. */
export const SafetyPlanUpdated = z.object({ type: z.literal('safety_plan_updated'), ...base, plan: SafetyPlan });

/** The user edited their emergency contacts. */
export const EmergencyContactsUpdated = z.object({
  type: z.literal('emergency_contacts_updated'),
  ...base,
  contacts: z.array(EmergencyContact).max(10),
});

/** The app linked the user to their Stripe customer (at checkout): feeds the ingress's lookup. */
export const CustomerLinked = z.object({
  type: z.literal('customer_linked'),
  ...base,
  customerId: z.string().regex(/^cus_[A-Za-z0-9]{1,64}$/, 'a Stripe customer id (cus_…)'),
});

/** The user pressed the crisis button on a device. */
export const CrisisButton = z.object({ type: z.literal('crisis_button'), ...base, deviceId: SubjectToken.optional() });

/** A crisis was detected by an assessment or declared by a clinician. */
export const CrisisDetected = z.object({
  type: z.literal('crisis_detected'),
  ...base,
  source: z.enum(['assessment', 'clinician']),
  level: z.enum(CRISIS_LEVELS),
});

/** A human ended the crisis: a clinician, or the user's safety check-in after the minimum hold. */
export const CrisisResolved = z.object({
  type: z.literal('crisis_resolved'),
  ...base,
  by: z.enum(['clinician', 'safety_check_in']),
});

/** Events on the normal lane (`fm.evt.<userId>.<type>`). */
export const NormalLaneEvent = z.discriminatedUnion('type', [
  SubscriptionUpdated,
  SubscriptionActivated,
  PlanChanged,
  SubscriptionCanceled,
  PaymentFailed,
  PaymentRecovered,
  TrialEnded,
  GraceEnded,
  AssessmentCompleted,
  DeviceRegistered,
  DeviceRemoved,
  SafetyPlanUpdated,
  EmergencyContactsUpdated,
  CustomerLinked,
]);

/** Events on the crisis lane (`fm.crisis.<userId>.<type>`). */
export const CrisisLaneEvent = z.discriminatedUnion('type', [CrisisButton, CrisisDetected, CrisisResolved]);

/** Every domain event. */
export const UserEvent = z.discriminatedUnion('type', [...NormalLaneEvent.options, ...CrisisLaneEvent.options]);

/** A normal-lane event. */
export type NormalLaneEvent = z.infer<typeof NormalLaneEvent>;
/** A crisis-lane event. */
export type CrisisLaneEvent = z.infer<typeof CrisisLaneEvent>;
/** Any domain event. */
export type UserEvent = z.infer<typeof UserEvent>;
/** A domain event's `type`, which is also the last token of its subject. */
export type UserEventType = UserEvent['type'];
/** The event of one type. */
export type EventOf<T extends UserEventType> = Extract<UserEvent, { type: T }>;
/** Payment events: facts about a subscription, kept in the billing ledger (`billing.ts`). */
export type PaymentEvent = EventOf<
  'subscription_updated' | 'subscription_activated' | 'plan_changed' | 'subscription_canceled' | 'payment_failed' | 'payment_recovered'
>;
/** A safety plan. */
export type SafetyPlan = z.infer<typeof SafetyPlan>;
/** An emergency contact. */
export type EmergencyContact = z.infer<typeof EmergencyContact>;

/** Event types carried on the crisis lane. */
export const CRISIS_LANE_TYPES: ReadonlySet<UserEventType> = new Set(CrisisLaneEvent.options.map((o) => o.shape.type.value));

/** Whether an event is a payment event (a fact for the billing ledger, see `billing.ts`). */
export function isPaymentEvent(e: UserEvent): e is PaymentEvent {
  return 'subscriptionId' in e;
}
