/**
 * A user's durable state and the pure step that applies one event to it: dedup by event id, payment
 * events into the billing ledger (the statechart follows its standing), everything else straight to
 * the statechart. The runtime persists exactly this (`toPersisted`, schema {@link PersistedUserState}),
 * so a fold of the same events always gives the same state.
 */
import { createActor, initialTransition, type AnyActorScope } from 'xstate';
import { z } from 'zod';
import {
  billingStanding,
  EMPTY_LEDGER,
  evidenceOf,
  recordEvidence,
  standingsEqual,
  type BillingLedger,
  type BillingStanding,
  type Evidence,
  type SubscriptionLedger,
  type SubscriptionStanding,
} from './billing.ts';
import { CRISIS_LEVELS } from './crisis.ts';
import { EventId, EpochMs, isPaymentEvent, SubjectToken, type UserEvent } from './events.ts';
import { PAID_TIERS, SUBSCRIPTION_STATES } from './features.ts';
import { userMachine, type MachineEvent, type UserContext, type UserMachine, type UserSnapshot } from './userMachine.ts';

/**
 * Event ids remembered per user. JetStream's duplicate window and the runtime's per-lane sequence
 * catch retried publishes and redeliveries; this catches a re-publish after the window closed.
 */
export const DEDUP_WINDOW = 32;

/** A user's state: the statechart snapshot plus what makes applying events idempotent and ordered. */
export interface UserState {
  snapshot: UserSnapshot;
  /** Most recent event ids, oldest first, at most {@link DEDUP_WINDOW}. */
  recentEventIds: readonly string[];
  /** What the user's payment events said, per subscription: the statechart follows its standing. */
  billing: BillingLedger;
}

/** What applying an event did. */
export type ApplyOutcome =
  /** Accepted: the statechart saw it (it may or may not have changed state). */
  | 'applied'
  /** Its id was applied before: nothing changed. */
  | 'duplicate'
  /**
   * A payment event older than all the billing ledger still places for its subscription (it kept
   * the newest {@link LEDGER_EVIDENCE} facts): nothing changed.
   */
  | 'stale';

/** Creates a new user whose trial starts at `createdAt`. */
export function createUserState(userId: string, createdAt: number, machine: UserMachine = userMachine): UserState {
  const [snapshot] = initialTransition(machine, { userId, createdAt });
  return { snapshot, recentEventIds: [], billing: EMPTY_LEDGER };
}

/**
 * One actor scope per machine, made once. XState's pure `transition()` builds a throw-away actor
 * and system for every call (measured: 50 µs per crisis button against 8 µs here); the machine's
 * transitions only read the scope (it runs no invoked or spawned actors, and action side effects
 * are not run here), so one inert scope serves every user.
 */
const scopes = new WeakMap<UserMachine, AnyActorScope>();

function scopeOf(machine: UserMachine): AnyActorScope {
  let scope = scopes.get(machine);
  if (!scope) {
    const self = createActor(machine, { input: { userId: 'scope', createdAt: 0 } });
    const none = () => {};
    scope = { self, system: self.system, id: '', sessionId: '', logger: none, defer: none, stopChild: none, emit: none, actionExecutor: none };
    scopes.set(machine, scope);
  }
  return scope;
}

/** The statechart's next snapshot for an event: XState's pure transition, on the machine's cached scope. */
function nextSnapshot(machine: UserMachine, snapshot: UserSnapshot, event: MachineEvent): UserSnapshot {
  return machine.transition(snapshot, event, scopeOf(machine));
}

/** Applies one event; pure: returns the next state and what happened, never mutates `state`. */
export function applyEvent(
  state: UserState,
  event: UserEvent,
  machine: UserMachine = userMachine,
): { state: UserState; outcome: ApplyOutcome } {
  if (state.recentEventIds.includes(event.id)) return { state, outcome: 'duplicate' };
  let { snapshot, billing } = state;
  if (isPaymentEvent(event)) {
    const recorded = recordEvidence(billing, event.subscriptionId, evidenceOf(event));
    if (recorded === null) return { state, outcome: 'stale' };
    const standing = billingStanding(recorded);
    if (standing && !standingsEqual(standing, billingStanding(billing))) {
      snapshot = nextSnapshot(machine, snapshot, { type: 'billing_changed', id: event.id, userId: event.userId, at: event.at, standing });
    }
    billing = recorded;
  } else {
    snapshot = nextSnapshot(machine, snapshot, event satisfies MachineEvent);
  }
  const recentEventIds = [...state.recentEventIds.slice(1 - DEDUP_WINDOW), event.id];
  return { state: { snapshot, recentEventIds, billing }, outcome: 'applied' };
}

/** Applies events in order: the statechart's fold. */
export function foldEvents(state: UserState, events: Iterable<UserEvent>, machine: UserMachine = userMachine): UserState {
  let current = state;
  for (const event of events) current = applyEvent(current, event, machine).state;
  return current;
}

const PaidTier = z.enum(PAID_TIERS);
const Status = z.enum(['active', 'past_due', 'canceled']);
const SubscriptionStandingSchema: z.ZodType<SubscriptionStanding> = z.union([
  z.strictObject({ status: z.literal('active'), tier: PaidTier }),
  z.strictObject({ status: z.enum(['past_due', 'canceled']), tier: PaidTier.nullable(), since: z.number() }),
]);
const BillingStandingSchema: z.ZodType<BillingStanding> = z.union([
  z.strictObject({ status: z.literal('active'), tier: PaidTier, asOf: z.number() }),
  z.strictObject({ status: z.enum(['past_due', 'canceled']), tier: PaidTier.nullable(), since: z.number(), asOf: z.number() }),
]);
const EvidenceSchema: z.ZodType<Evidence> = z.strictObject({
  at: z.number(),
  kind: z.enum(['snapshot', 'invoice']),
  status: Status,
  tier: PaidTier.nullable(),
});
const SubscriptionLedgerSchema: z.ZodType<SubscriptionLedger> = z.strictObject({
  base: SubscriptionStandingSchema.nullable(),
  baseEvidence: EvidenceSchema.nullable(),
  evidence: z.array(EvidenceSchema),
});
const nullableMs = EpochMs.nullable();
const UserContextSchema: z.ZodType<UserContext> = z.strictObject({
  userId: SubjectToken,
  trialEndsAt: nullableMs,
  billing: BillingStandingSchema.nullable(),
  graceStartedAt: nullableMs,
  graceEndsAt: nullableMs,
  graceReason: z.enum(['payment_failed', 'canceled']).nullable(),
  crisis: z
    .strictObject({
      level: z.enum(CRISIS_LEVELS),
      source: z.enum(['button', 'assessment', 'clinician']),
      since: EpochMs,
      lastSignalAt: EpochMs,
    })
    .nullable(),
  lastCrisisAt: nullableMs,
  devices: z.array(SubjectToken),
});

/** The JSON form of {@link UserState} that the runtime stores, validated when it is read back. */
export const PersistedUserState = z.strictObject({
  value: z.strictObject({ subscription: z.enum(SUBSCRIPTION_STATES), crisis: z.enum(['stable', 'active']) }),
  context: UserContextSchema,
  recentEventIds: z.array(EventId),
  billing: z.record(z.string(), SubscriptionLedgerSchema),
});

/** The JSON form of {@link UserState} that the runtime stores. */
export type PersistedUserState = z.infer<typeof PersistedUserState>;

/** The JSON form to persist. */
export function toPersisted(state: UserState): PersistedUserState {
  return {
    value: state.snapshot.value as PersistedUserState['value'],
    context: state.snapshot.context,
    recentEventIds: [...state.recentEventIds],
    billing: { ...state.billing },
  };
}

/** Restores a persisted state. */
export function fromPersisted(persisted: PersistedUserState, machine: UserMachine = userMachine): UserState {
  const snapshot = machine.resolveState({ value: persisted.value, context: persisted.context });
  return { snapshot, recentEventIds: persisted.recentEventIds, billing: persisted.billing };
}
