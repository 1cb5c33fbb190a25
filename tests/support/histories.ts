/**
 * Users' event histories for the scale-out tests, and what a correct runtime must have made of
 * them: the statechart's fold. A node applies each lane of a user in stream order, the crisis lane
 * first whenever both have something, so a user with crisis events may be folded in any merge of
 * its two lanes' orders; which merge it was is in the record (its recent event ids, oldest first).
 */
import { expect } from 'vitest';
import type { UserRecord } from '../../actors/userRecord.ts';
import { deriveView, inCrisis, subscriptionStateOf } from '../../machines/deviceView.ts';
import type { UserEvent } from '../../machines/events.ts';
import { userMachine, type UserMachine } from '../../machines/userMachine.ts';
import { applyEvent, createUserState, DEDUP_WINDOW, toPersisted, type UserState } from '../../machines/userState.ts';
import { laneOf } from '../../transport/subjects.ts';
import type { AuditRecord } from '../../transport/schemas.ts';
import type { AppliedView } from './processes.ts';
import { event } from './events.ts';

/** The device every test user registers. */
export const DEVICE = 'phone';

/**
 * A user's events, in the order published, with increasing `at`: a device, a subscription, plan
 * changes, a failed and a recovered payment, a cancellation and a resubscription; `length` of
 * them (at most 10). With `crisis`, the sixth is a crisis button press (crisis lane) instead of a
 * plan change. `n` varies the tiers, so users end in premium, basic or the grace period.
 */
export function historyOf(user: string, n: number, start: number, options: { crisis?: boolean; length?: number } = {}): UserEvent[] {
  const subscriptionId = `sub_${user}`;
  const first = n % 2 === 0 ? 'premium' : 'basic';
  const other = first === 'premium' ? 'basic' : 'premium';
  const at = (i: number) => ({ id: `${user}-e${i}`, at: start + i * 1_000 });
  const events: UserEvent[] = [
    event(user, 'device_registered', { ...at(0), deviceId: DEVICE, platform: 'ios' }),
    event(user, 'subscription_activated', { ...at(1), subscriptionId, tier: first }),
    event(user, 'plan_changed', { ...at(2), subscriptionId, tier: other }),
    event(user, 'payment_failed', { ...at(3), subscriptionId, attemptCount: 1, nextAttemptAt: start + 86_400_000 }),
    event(user, 'payment_recovered', { ...at(4), subscriptionId }),
    options.crisis ? event(user, 'crisis_button', { ...at(5), deviceId: DEVICE }) : event(user, 'plan_changed', { ...at(5), subscriptionId, tier: 'premium' }),
    event(user, 'plan_changed', { ...at(6), subscriptionId, tier: 'basic' }),
    event(user, 'subscription_canceled', { ...at(7), subscriptionId }),
    event(user, 'plan_changed', { ...at(8), subscriptionId, tier: 'premium' }),
    n % 3 === 0
      ? event(user, 'payment_failed', { ...at(9), subscriptionId, attemptCount: 1, nextAttemptAt: null })
      : event(user, 'plan_changed', { ...at(9), subscriptionId, tier: n % 3 === 1 ? 'basic' : 'premium' }),
  ];
  return events.slice(0, options.length ?? events.length);
}

/** A transition of the fold: what the node must audit, once. */
export interface Transition {
  eventId: string;
  from: AuditRecord['from'];
  to: AuditRecord['to'];
}

/** The fold of a user's events in the order a node applied them. */
export interface Fold {
  /** The events in the order applied. */
  order: UserEvent[];
  /** The state after each prefix of `order` (`states[k]`: after the first k). */
  states: UserState[];
  transitions: Transition[];
}

/** An audit record's regions of a state, as the node writes them. */
const regions = ({ snapshot }: UserState): AuditRecord['from'] => ({
  subscription: subscriptionStateOf(snapshot),
  crisis: inCrisis(snapshot) ? 'active' : 'stable',
});

/**
 * Checks that a stored record is the fold of all of `events`, each applied once, every lane in the
 * order published (any merge of the two lanes), and returns that fold (by `machine`: the nodes'
 * policy). Time starts at the first event applied (a new user's trial; every history here leaves
 * the trial at its second event).
 */
export function expectFoldOf(user: string, record: UserRecord | null | undefined, events: readonly UserEvent[], machine: UserMachine = userMachine): Fold {
  expect(events.length, user).toBeLessThanOrEqual(DEDUP_WINDOW);
  const ids = record?.state.recentEventIds ?? [];
  const byId = new Map(events.map((e) => [e.id, e]));
  const order = ids.map((id) => byId.get(id)!);
  expect(ids, `${user}: every event applied once`).toHaveLength(events.length);
  expect(new Set(ids), `${user}: every event applied once`).toEqual(new Set(byId.keys()));
  for (const lane of ['normal', 'crisis'] as const) {
    const applied = order.filter((e) => laneOf(e.type) === lane).map((e) => e.id);
    expect(applied, `${user}: ${lane} lane applied in order`).toEqual(events.filter((e) => laneOf(e.type) === lane).map((e) => e.id));
  }
  let state = createUserState(user, order[0]!.at, machine);
  const states = [state];
  const transitions: Transition[] = [];
  for (const e of order) {
    const step = applyEvent(state, e, machine);
    expect(step.outcome, `${user}: ${e.id}`).toBe('applied');
    const [from, to] = [regions(state), regions(step.state)];
    if (from.subscription !== to.subscription || from.crisis !== to.crisis) transitions.push({ eventId: e.id, from, to });
    state = step.state;
    states.push(state);
  }
  expect(record!.state, user).toEqual(toPersisted(state));
  return { order, states, transitions };
}

/** Checks a user's audit records: exactly one per transition of the fold, as the fold made it. */
export function expectAuditOf(user: string, audit: readonly AuditRecord[], fold: Fold): void {
  const got = audit.map((a) => ({ eventId: a.eventId, from: a.from, to: a.to }));
  const byId = (a: Transition, b: Transition) => (a.eventId < b.eventId ? -1 : 1);
  expect(got.sort(byId), `${user}: audit records`).toEqual([...fold.transitions].sort(byId));
}

/**
 * Checks what one device applied: versions strictly increasing, and each view one the user really
 * went through, in the order it did (a view matches a state of the fold no earlier than the
 * previous view's), so a device never shows an older state after a newer one.
 */
export function expectDeviceFollowed(device: string, applied: readonly AppliedView[], fold: Fold): void {
  const versions = applied.map((v) => v.version);
  expect(versions, `${device}: versions`).toEqual([...new Set(versions)].sort((a, b) => a - b));
  const shown = fold.states.map((s) => deriveView(s.snapshot));
  let k = 0;
  for (const v of applied) {
    const at = shown.findIndex((s, i) => i >= k && s.tier === v.tier && s.status === v.status && s.crisis.active === v.crisis);
    expect(at, `${device}: v${v.version} ${v.tier}/${v.status}${v.crisis ? '/crisis' : ''} is a state of the fold at or after #${k}`).toBeGreaterThanOrEqual(0);
    k = at;
  }
}
