/**
 * Properties of the user state fold over random event sequences (fast-check): every event type
 * with random fields, Stripe-like payment events over a few subscriptions, times in order or
 * shuffled, deadline events at (or next to) the deadline the state holds, and exact redeliveries
 * of earlier events at random positions.
 *
 * After every event: DESIGN §6 invariants 1 and 2 hold; a redelivered event changes nothing
 * (invariant 5) and is reported `duplicate` while its id is in the dedup window; a crisis is left
 * only by a human `crisis_resolved`, entered only by a crisis signal, and its level never drops.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CRISIS_LEVELS } from '../../machines/crisis.ts';
import { deriveView } from '../../machines/deviceView.ts';
import type { UserEvent } from '../../machines/events.ts';
import { DEFAULT_POLICY } from '../../machines/policy.ts';
import {
  applyEvent,
  createUserState,
  DEDUP_WINDOW,
  foldEvents,
  toPersisted,
  type ApplyOutcome,
  type UserState,
} from '../../machines/userState.ts';
import { crisisInvariantViolations, DAY, HOUR, USER } from './support.ts';

type Body = UserEvent extends infer E ? (E extends UserEvent ? Omit<E, 'id' | 'userId' | 'at'> : never) : never;

/** One position of a generated sequence. */
type Spec =
  /** A new event with these fields. */
  | { kind: 'new'; body: Body; at: number }
  /** A deadline event built from the state when it is delivered: at the deadline plus `offset`. */
  | { kind: 'deadline'; deadline: 'trial' | 'grace' | 'hold'; offset: number; at: number }
  /** The exact event delivered `back` positions ago (counted among delivered events), again. */
  | { kind: 'again'; back: number };

const tier = fc.constantFrom('basic' as const, 'premium' as const);
const subscriptionId = fc.constantFrom('sub_a', 'sub_b', 'sub_c');
const deviceId = fc.constantFrom('phone', 'tablet', 'web');
const answer = fc.integer({ min: 0, max: 3 });
const entries = fc.array(fc.string({ minLength: 1, maxLength: 10 }), { maxLength: 2 });

const body: fc.Arbitrary<Body> = fc.oneof(
  fc.record({ type: fc.constant('subscription_activated' as const), subscriptionId, tier }),
  fc.record({ type: fc.constant('plan_changed' as const), subscriptionId, tier }),
  fc.record({ type: fc.constant('subscription_canceled' as const), subscriptionId }),
  fc.record({
    type: fc.constant('payment_failed' as const),
    subscriptionId,
    attemptCount: fc.integer({ min: 1, max: 4 }),
    nextAttemptAt: fc.option(fc.integer({ min: 0, max: 100 * DAY }), { nil: null }),
  }),
  fc.record({ type: fc.constant('payment_recovered' as const), subscriptionId }),
  fc.record({ type: fc.constant('trial_ended' as const) }),
  fc.record({ type: fc.constant('grace_ended' as const) }),
  fc.record({
    type: fc.constant('assessment_completed' as const),
    instrument: fc.constant('phq9' as const),
    answers: fc.array(answer, { minLength: 9, maxLength: 9 }),
  }),
  fc.record({
    type: fc.constant('assessment_completed' as const),
    instrument: fc.constant('gad7' as const),
    answers: fc.array(answer, { minLength: 7, maxLength: 7 }),
  }),
  fc.record({ type: fc.constant('device_registered' as const), deviceId, platform: fc.constantFrom('ios' as const, 'android' as const, 'web' as const) }),
  fc.record({ type: fc.constant('device_removed' as const), deviceId }),
  fc.record({
    type: fc.constant('safety_plan_updated' as const),
    plan: fc.record({
      warningSigns: entries,
      copingStrategies: entries,
      distractions: entries,
      peopleToAsk: entries,
      professionals: entries,
      safeEnvironment: entries,
    }),
  }),
  fc.record({
    type: fc.constant('emergency_contacts_updated' as const),
    contacts: fc.array(fc.record({ name: fc.constant('A'), phone: fc.constant('+15550100') }), { maxLength: 2 }),
  }),
  fc.record({ type: fc.constant('crisis_button' as const), deviceId }, { requiredKeys: ['type'] }),
  fc.record({
    type: fc.constant('crisis_detected' as const),
    source: fc.constantFrom('assessment' as const, 'clinician' as const),
    level: fc.constantFrom(...CRISIS_LEVELS),
  }),
  fc.record({ type: fc.constant('crisis_resolved' as const), by: fc.constantFrom('clinician' as const, 'safety_check_in' as const) }),
);

/** Hour-granular times over 90 days: hits the 1 h hold, the 7/14-day grace and the 30-day window. */
const time = fc.integer({ min: 0, max: 90 * 24 }).map((h) => h * HOUR);

const spec: fc.Arbitrary<Spec> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('new' as const), body, at: time }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('deadline' as const),
      deadline: fc.constantFrom('trial' as const, 'grace' as const, 'hold' as const),
      offset: fc.constantFrom(-1, 0, 0, 1),
      at: time,
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('again' as const), back: fc.nat({ max: 40 }) }) },
);

/** A sequence: specs, and whether the new events' times are put in increasing order. */
const sequence = fc
  .record({ specs: fc.array(spec, { minLength: 1, maxLength: 60, size: 'max' }), ordered: fc.boolean() })
  .map(({ specs, ordered }) => {
    if (!ordered) return specs;
    const times = specs.flatMap((s) => (s.kind === 'again' ? [] : [s.at])).sort((a, b) => a - b);
    let i = 0;
    return specs.map((s) => (s.kind === 'again' ? s : { ...s, at: times[i++]! }));
  });

function deadlineEvent(state: UserState, s: Extract<Spec, { kind: 'deadline' }>, id: string): UserEvent {
  const c = state.snapshot.context;
  switch (s.deadline) {
    case 'trial':
      return { type: 'trial_ended', id, userId: USER, at: c.trialEndsAt === null ? s.at : c.trialEndsAt + s.offset };
    case 'grace':
      return { type: 'grace_ended', id, userId: USER, at: c.graceEndsAt === null ? s.at : c.graceEndsAt + s.offset };
    case 'hold':
      return {
        type: 'crisis_resolved',
        id,
        userId: USER,
        by: 'safety_check_in',
        at: c.crisis === null ? s.at : c.crisis.since + DEFAULT_POLICY.crisisHoldMs + s.offset,
      };
  }
}

/** What a delivery did, for the checks. */
interface Delivery {
  event: UserEvent;
  /** Redelivery of an earlier event. */
  again: boolean;
  before: UserState;
  /** `before` as JSON when it was delivered, to catch a later mutation. */
  beforeJson: string;
  after: UserState;
  outcome: ApplyOutcome;
  /** For a redelivery: the outcome of the first delivery, and how many events were applied since. */
  first?: { outcome: ApplyOutcome; appliedSince: number };
}

/** Runs a sequence from a new user created at 0; returns every delivery. */
function run(specs: readonly Spec[]): Delivery[] {
  let state = createUserState(USER, 0);
  const deliveries: Delivery[] = [];
  /** Applied-event count at the time of each first delivery, and its outcome. */
  const firsts: Array<{ event: UserEvent; outcome: ApplyOutcome; appliedBefore: number }> = [];
  let applied = 0;
  specs.forEach((s, i) => {
    let event: UserEvent;
    let first: (typeof firsts)[number] | undefined;
    if (s.kind === 'again') {
      if (firsts.length === 0) return;
      first = firsts[firsts.length - 1 - (s.back % firsts.length)]!;
      event = first.event;
    } else {
      const id = `g${i}`;
      event = s.kind === 'new' ? ({ ...s.body, id, userId: USER, at: s.at } as UserEvent) : deadlineEvent(state, s, id);
    }
    const before = state;
    const result = applyEvent(state, event);
    state = result.state;
    deliveries.push({
      event,
      again: first !== undefined,
      before,
      beforeJson: JSON.stringify(toPersisted(before)),
      after: state,
      outcome: result.outcome,
      ...(first ? { first: { outcome: first.outcome, appliedSince: applied - first.appliedBefore } } : {}),
    });
    if (!first) firsts.push({ event, outcome: result.outcome, appliedBefore: applied });
    if (result.outcome === 'applied') applied += 1;
  });
  return deliveries;
}

const RANK = (level: string | null) => (level === null ? -1 : CRISIS_LEVELS.indexOf(level as (typeof CRISIS_LEVELS)[number]));

/** Whether an event is a crisis signal by DESIGN §3: button, detection, or a PHQ-9 with item 9 ≥ 1 or total ≥ 20. */
function signalsCrisis(event: UserEvent): boolean {
  if (event.type === 'crisis_button' || event.type === 'crisis_detected') return true;
  if (event.type !== 'assessment_completed' || event.instrument !== 'phq9') return false;
  const total = event.answers.reduce((a, b) => a + b, 0);
  return event.answers[8]! >= 1 || total >= 20;
}

const RUNS = { numRuns: 300 };

describe('random event sequences for one user', () => {
  it('invariants 1 and 2 hold after every event', () => {
    fc.assert(
      fc.property(sequence, (specs) => {
        for (const d of run(specs)) {
          expect(crisisInvariantViolations(deriveView(d.after.snapshot)), `after ${d.event.type} ${d.event.id}`).toEqual([]);
        }
      }),
      RUNS,
    );
  });

  it('a redelivered event changes nothing, and is a duplicate while its id is in the dedup window', () => {
    let checked = 0;
    fc.assert(
      fc.property(sequence, (specs) => {
        for (const d of run(specs)) {
          if (!d.again || !d.first) continue;
          // the window holds the ids of the last DEDUP_WINDOW applied events, this one's included
          const inWindow = d.first.outcome === 'applied' && d.first.appliedSince <= DEDUP_WINDOW;
          if (inWindow) {
            expect(d.outcome, `${d.event.type} ${d.event.id} again`).toBe('duplicate');
            checked += 1;
          }
          if (inWindow || d.first.outcome === 'stale') {
            expect(toPersisted(d.after), `${d.event.type} ${d.event.id} again`).toEqual(toPersisted(d.before));
          }
        }
      }),
      RUNS,
    );
    expect(checked).toBeGreaterThan(RUNS.numRuns);
  });

  it('a crisis is left only by a crisis_resolved from a human (clinician, or a check-in after the hold)', () => {
    fc.assert(
      fc.property(sequence, (specs) => {
        for (const d of run(specs)) {
          const was = deriveView(d.before.snapshot).crisis;
          const now = deriveView(d.after.snapshot).crisis;
          if (!was.active) continue;
          if (d.event.type !== 'crisis_resolved') {
            expect(now.active, `${d.event.type} ${d.event.id} ended a crisis`).toBe(true);
            expect(now.since).toBe(was.since);
            expect(RANK(now.level), `${d.event.type} lowered the level`).toBeGreaterThanOrEqual(RANK(was.level));
          } else if (!now.active && d.event.by === 'safety_check_in') {
            expect(d.event.at - was.since!).toBeGreaterThanOrEqual(DEFAULT_POLICY.crisisHoldMs);
          }
        }
      }),
      RUNS,
    );
  });

  it('a crisis is entered only by a crisis signal, and every crisis signal enters or keeps one', () => {
    fc.assert(
      fc.property(sequence, (specs) => {
        for (const d of run(specs)) {
          if (d.outcome !== 'applied') continue;
          const was = deriveView(d.before.snapshot).crisis.active;
          const now = deriveView(d.after.snapshot).crisis.active;
          if (!was && now) expect(signalsCrisis(d.event), `${d.event.type} started a crisis`).toBe(true);
          if (signalsCrisis(d.event)) expect(now, `${d.event.type} ${JSON.stringify(d.event)}`).toBe(true);
        }
      }),
      RUNS,
    );
  });

  it('applying never mutates the state it was given, and the fold of the deliveries is the final state', () => {
    fc.assert(
      fc.property(sequence, (specs) => {
        const deliveries = run(specs);
        const final = foldEvents(
          createUserState(USER, 0),
          deliveries.map((d) => d.event),
        );
        for (const d of deliveries) expect(JSON.stringify(toPersisted(d.before))).toBe(d.beforeJson);
        expect(toPersisted(final)).toEqual(toPersisted(deliveries.at(-1)?.after ?? createUserState(USER, 0)));
      }),
      RUNS,
    );
  });
});
