/**
 * Shared helpers for the pure-domain tests of machines/: an event factory, a fold that insists
 * every event is accepted, and the DESIGN §6 invariants 1 and 2 as one assertion.
 *
 * Expected values in the tests are written from DESIGN §3 and §6, never read back from the code
 * under test; the literals here (durations, feature names) are the design's.
 */
import { expect } from 'vitest';
import { deriveView, type UserView } from '../../machines/deviceView.ts';
import type { EventOf, UserEvent, UserEventType } from '../../machines/events.ts';
import type { UserMachine } from '../../machines/userMachine.ts';
import { applyEvent, createUserState, type UserState } from '../../machines/userState.ts';

export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/** The user every test event belongs to unless told otherwise. */
export const USER = 'u1';

/** DESIGN §3: the four crisis features, on in every state. */
export const CRISIS = ['crisis_button', 'hotline_access', 'safety_plan', 'emergency_contacts'] as const;

/** DESIGN §3: the therapeutic baseline, on in every state. */
export const BASELINE = ['basic_check_in', 'phq9_assessment', 'gad7_assessment', 'breathing_exercises'] as const;

type Defaulted = 'id' | 'userId' | 'at';
/** The fields of an event of type `T` that `ev` does not default. */
export type Fields<T extends UserEventType> = Omit<EventOf<T>, 'type' | Defaulted> & Partial<Pick<EventOf<T>, Defaulted>>;

let sequence = 0;

/**
 * Builds a domain event: a fresh unique `id`, `userId` = {@link USER} and `at` = 0 unless given.
 * Type-specific fields are required exactly when the event's schema requires them.
 */
export function ev<T extends UserEventType>(
  type: T,
  ...[fields]: {} extends Fields<T> ? [fields?: Fields<T>] : [fields: Fields<T>]
): EventOf<T> {
  sequence += 1;
  return { id: `e-${type}-${sequence}`, userId: USER, at: 0, ...fields, type } as unknown as EventOf<T>;
}

/** PHQ-9 answers with item 9 = `item9` and the given total (items 1–8 filled 3,3,… then the rest). */
export function phq9(total: number, item9 = 0): number[] {
  let rest = total - item9;
  if (item9 < 0 || item9 > 3 || rest < 0 || rest > 24) throw new Error(`no PHQ-9 with total ${total}, item 9 = ${item9}`);
  const answers: number[] = [];
  for (let i = 0; i < 8; i++) {
    const a = Math.min(3, rest);
    answers.push(a);
    rest -= a;
  }
  return [...answers, item9];
}

/** GAD-7 answers with the given total. */
export function gad7(total: number): number[] {
  if (total < 0 || total > 21) throw new Error(`no GAD-7 with total ${total}`);
  let rest = total;
  return Array.from({ length: 7 }, () => {
    const a = Math.min(3, rest);
    rest -= a;
    return a;
  });
}

/** A new user (trial from `createdAt`) with `events` applied, each of which must be accepted. */
export function userAfter(events: readonly UserEvent[], options: { createdAt?: number; machine?: UserMachine } = {}): UserState {
  const start = createUserState(USER, options.createdAt ?? 0, options.machine);
  return applyAll(start, events, options.machine);
}

/** Applies `events` in order; fails the test if one is not accepted (duplicate or stale). */
export function applyAll(state: UserState, events: readonly UserEvent[], machine?: UserMachine): UserState {
  let current = state;
  for (const event of events) {
    const result = applyEvent(current, event, machine);
    expect(result.outcome, `outcome of ${event.type} ${event.id}`).toBe('applied');
    current = result.state;
  }
  return current;
}

/** The device-facing view of a state. */
export function viewOf(state: UserState): UserView {
  return deriveView(state.snapshot);
}

/**
 * DESIGN §6 invariants 1 and 2 on one view: the crisis features are on whatever the state, and an
 * active crisis gets the full override (advanced crisis features, emergency presentation,
 * realtime sync at CRISIS_EMERGENCY priority) whatever the tier. Returns what is violated.
 */
export function crisisInvariantViolations(view: UserView): string[] {
  const problems: string[] = [];
  for (const feature of CRISIS) {
    if (!view.features.enabled.includes(feature) || view.features.disabled.includes(feature)) {
      problems.push(`crisis feature ${feature} off in ${view.tier}`);
    }
  }
  const presentation = Object.values(view.crisis.presentation);
  if (view.crisis.active) {
    if (!view.features.enabled.includes('advanced_crisis_features')) problems.push(`no advanced_crisis_features in crisis (${view.tier})`);
    if (view.sync.priority !== 'CRISIS_EMERGENCY') problems.push(`sync priority ${view.sync.priority} in crisis (${view.tier})`);
    if (view.sync.frequency !== 'realtime') problems.push(`sync frequency ${view.sync.frequency} in crisis (${view.tier})`);
    if (view.sync.dataLimitMb !== null) problems.push(`data limit ${view.sync.dataLimitMb} MB in crisis (${view.tier})`);
    if (presentation.length !== 4 || !presentation.every((on) => on === true)) problems.push(`emergency presentation incomplete (${view.tier})`);
    if (view.crisis.level === null || view.crisis.since === null) problems.push('active crisis without level or start');
  } else {
    if (view.sync.priority === 'CRISIS_EMERGENCY') problems.push(`CRISIS_EMERGENCY priority outside a crisis (${view.tier})`);
    if (presentation.some((on) => on)) problems.push(`emergency presentation outside a crisis (${view.tier})`);
  }
  return problems;
}

/** Fails the test when {@link crisisInvariantViolations} finds anything. */
export function expectCrisisInvariants(view: UserView, where = ''): void {
  expect(crisisInvariantViolations(view), where).toEqual([]);
}
