/**
 * A user's durable state and the pure step that applies one event to it: dedup by event id, the
 * per-subscription order of payment events, then the statechart. The runtime persists exactly this
 * (`toPersisted`), so a fold of the same events always gives the same state.
 */
import { initialTransition, transition } from 'xstate';
import { isPaymentEvent, type UserEvent } from './events.ts';
import { userMachine, type UserContext, type UserMachine, type UserSnapshot } from './userMachine.ts';

/**
 * Event ids remembered per user. JetStream's duplicate window and the runtime's per-lane sequence
 * catch retried publishes and redeliveries; this catches a re-publish after the window closed.
 */
export const DEDUP_WINDOW = 32;

/** Subscriptions whose last payment-event time is remembered (a user rarely has more than one). */
export const PAYMENT_CLOCK_SIZE = 4;

/** A user's state: the statechart snapshot plus what makes applying events idempotent and ordered. */
export interface UserState {
  snapshot: UserSnapshot;
  /** Most recent event ids, oldest first, at most {@link DEDUP_WINDOW}. */
  recentEventIds: readonly string[];
  /** Per subscription id, the time of the last payment event applied (Stripe's `created`). */
  paymentClock: Readonly<Record<string, number>>;
}

/** The JSON form of {@link UserState} that the runtime stores. */
export interface PersistedUserState {
  value: UserSnapshot['value'];
  context: UserContext;
  recentEventIds: string[];
  paymentClock: Record<string, number>;
}

/** What applying an event did. */
export type ApplyOutcome =
  /** Accepted: the statechart saw it (it may or may not have changed state). */
  | 'applied'
  /** Its id was applied before: nothing changed. */
  | 'duplicate'
  /** A payment event older than one already applied for the same subscription: nothing changed. */
  | 'stale';

/** Creates a new user whose trial starts at `createdAt`. */
export function createUserState(userId: string, createdAt: number, machine: UserMachine = userMachine): UserState {
  const [snapshot] = initialTransition(machine, { userId, createdAt });
  return { snapshot, recentEventIds: [], paymentClock: {} };
}

/** Applies one event; pure: returns the next state and what happened, never mutates `state`. */
export function applyEvent(
  state: UserState,
  event: UserEvent,
  machine: UserMachine = userMachine,
): { state: UserState; outcome: ApplyOutcome } {
  if (state.recentEventIds.includes(event.id)) return { state, outcome: 'duplicate' };
  let { paymentClock } = state;
  if (isPaymentEvent(event)) {
    const last = paymentClock[event.subscriptionId];
    if (last !== undefined && event.at < last) return { state, outcome: 'stale' };
    paymentClock = remember(paymentClock, event.subscriptionId, event.at);
  }
  const [snapshot] = transition(machine, state.snapshot, event);
  const recentEventIds = [...state.recentEventIds.slice(1 - DEDUP_WINDOW), event.id];
  return { state: { snapshot, recentEventIds, paymentClock }, outcome: 'applied' };
}

/** Applies events in order: the statechart's fold. */
export function foldEvents(state: UserState, events: Iterable<UserEvent>, machine: UserMachine = userMachine): UserState {
  let current = state;
  for (const event of events) current = applyEvent(current, event, machine).state;
  return current;
}

/** The JSON form to persist. */
export function toPersisted(state: UserState): PersistedUserState {
  return {
    value: state.snapshot.value,
    context: state.snapshot.context,
    recentEventIds: [...state.recentEventIds],
    paymentClock: { ...state.paymentClock },
  };
}

/** Restores a persisted state. */
export function fromPersisted(persisted: PersistedUserState, machine: UserMachine = userMachine): UserState {
  const snapshot = machine.resolveState({ value: persisted.value, context: persisted.context });
  return { snapshot, recentEventIds: persisted.recentEventIds, paymentClock: persisted.paymentClock };
}

function remember(clock: Readonly<Record<string, number>>, subscriptionId: string, at: number): Record<string, number> {
  const entries = Object.entries(clock).filter(([id]) => id !== subscriptionId);
  entries.push([subscriptionId, at]);
  return Object.fromEntries(entries.slice(-PAYMENT_CLOCK_SIZE));
}
