/**
 * The model of the user statechart that the model-based tests walk with `xstate/graph`: the pure
 * one (tests/machines/model.test.ts) and the live one against the running system
 * (tests/runtime/model.test.ts).
 *
 * The model's events are a function of the snapshot, so that deadline events arrive at the
 * deadline the context holds; an event's `id` names its kind ("grace-ended", "check-in", …), which
 * lets a walk rebuild the event for the snapshot it actually reached. Time: "now" is the latest
 * time the context remembers (billing standing, grace start, crisis start, last crisis), 0 at
 * first; the one event far in the future is the payment event 31 days after the last crisis, for
 * the 7-day grace after an old crisis. The model's user is created at time 0.
 *
 * Payments: the statechart takes `billing_changed` (the billing ledger's standing), and the model
 * sends the standings one subscription's snapshots give in order, each 1 ms after the newest
 * billing fact, so that {@link toWire} can replay them as `subscription_updated` snapshots through
 * the runtime's fold (the live test) and end where the model does.
 *
 * `serialize` keeps the state space finite: state value, grace reason and length in days, crisis
 * level, whether the last crisis is recent or old (for the grace length), devices; no timestamps, and not the billing standing,
 * which changes no state beyond what the value and the grace already show. It must be a
 * congruence for these events (equal keys → equal keys after any event); every walk checks that.
 */
import { initialTransition, transition, type AnyStateNode } from 'xstate';
import type { BillingStanding } from '../../machines/billing.ts';
import type { UserEvent } from '../../machines/events.ts';
import type { PaidTier } from '../../machines/features.ts';
import { DEFAULT_POLICY } from '../../machines/policy.ts';
import { userMachine, type MachineEvent, type UserInput, type UserSnapshot } from '../../machines/userMachine.ts';

const DAY = 24 * 60 * 60 * 1000;

/** The model's user: trial from time 0. */
export const MODEL_INPUT: UserInput = { userId: 'u1', createdAt: 0 };

/** Groups of model events; a traversal uses some of them. */
export type Alphabet = 'payments' | 'aging' | 'deadlines' | 'crisis' | 'devices';
export const EVERYTHING: readonly Alphabet[] = ['payments', 'aging', 'deadlines', 'crisis', 'devices'];

/** The devices the model registers and removes (a live test must use another id for its own). */
export const MODEL_DEVICES = ['d1', 'd2'] as const;

function now(s: UserSnapshot): number {
  const { billing, graceStartedAt, crisis, lastCrisisAt } = s.context;
  const times = [billing?.asOf, graceStartedAt, crisis?.since, lastCrisisAt];
  return Math.max(0, ...times.filter((t): t is number => t !== null && t !== undefined));
}

/** The subscription the model's payment events are about. */
const MODEL_SUBSCRIPTION = 'sub_1';

/**
 * The standing after one more snapshot of the model's subscription at `at`, as the billing ledger
 * folds in-order snapshots: a lapse keeps the start of the lapse it continues, and the tier of the
 * last snapshot that named one.
 */
function snapshotStanding(s: UserSnapshot, at: number, status: BillingStanding['status'], tier: PaidTier | null): BillingStanding {
  const { billing } = s.context;
  if (status === 'active') return { status, tier: tier!, asOf: at };
  const since = billing !== null && billing.status !== 'active' ? billing.since : at;
  return { status, tier: tier ?? billing?.tier ?? null, since, asOf: at };
}

/** The model's events for a snapshot; `id` is the event's kind. */
export function modelEvents(s: UserSnapshot, alphabet: readonly Alphabet[]): MachineEvent[] {
  const c = s.context;
  const base = { userId: MODEL_INPUT.userId, at: now(s) };
  const events: MachineEvent[] = [];
  const billing = (id: string, standing: BillingStanding) =>
    events.push({ type: 'billing_changed', id, userId: base.userId, at: standing.asOf, standing });
  if (alphabet.includes('payments')) {
    const at = base.at + 1;
    for (const tier of ['basic', 'premium'] as const) billing(`activated-${tier}`, snapshotStanding(s, at, 'active', tier));
    billing('canceled', snapshotStanding(s, at, 'canceled', null));
    billing('payment-failed', snapshotStanding(s, at, 'past_due', null));
  }
  // A lapse 31 days after the last crisis: the crisis is old from then on (7-day grace again).
  if (alphabet.includes('aging') && c.lastCrisisAt !== null && c.crisis === null) {
    const later = Math.max(base.at + 1, c.lastCrisisAt + 31 * DAY);
    billing('canceled-31d-after-crisis', snapshotStanding(s, later, 'canceled', null));
    billing('payment-failed-31d-after-crisis', snapshotStanding(s, later, 'past_due', null));
  }
  if (alphabet.includes('deadlines')) {
    if (c.trialEndsAt !== null) events.push({ type: 'trial_ended', id: 'trial-ended', ...base, at: c.trialEndsAt });
    if (c.graceEndsAt !== null) events.push({ type: 'grace_ended', id: 'grace-ended', ...base, at: c.graceEndsAt });
  }
  if (alphabet.includes('crisis')) {
    events.push({ type: 'crisis_button', id: 'button', ...base, deviceId: 'd1' });
    for (const level of ['elevated', 'high', 'critical'] as const) {
      events.push({ type: 'crisis_detected', id: `clinician-${level}`, ...base, source: 'clinician', level });
    }
    events.push({ type: 'crisis_detected', id: 'detected-by-assessment', ...base, source: 'assessment', level: 'elevated' });
    const phq9 = (id: string, answers: number[]): MachineEvent => ({ type: 'assessment_completed', id, ...base, instrument: 'phq9', answers });
    events.push(phq9('phq9-item9-1', [0, 0, 0, 0, 0, 0, 0, 0, 1]));
    events.push(phq9('phq9-item9-3', [0, 0, 0, 0, 0, 0, 0, 0, 3]));
    events.push(phq9('phq9-total-20', [3, 3, 3, 3, 3, 3, 2, 0, 0]));
    events.push(phq9('phq9-total-19', [3, 3, 3, 3, 3, 3, 1, 0, 0]));
    events.push({ type: 'assessment_completed', id: 'gad7-21', ...base, instrument: 'gad7', answers: [3, 3, 3, 3, 3, 3, 3] });
    events.push({ type: 'crisis_resolved', id: 'resolved-by-clinician', ...base, by: 'clinician' });
    if (c.crisis !== null) {
      const at = c.crisis.since + DEFAULT_POLICY.crisisHoldMs;
      events.push({ type: 'crisis_resolved', id: 'check-in-after-hold', ...base, at, by: 'safety_check_in' });
    }
  }
  if (alphabet.includes('devices')) {
    for (const deviceId of MODEL_DEVICES) {
      events.push({ type: 'device_registered', id: `register-${deviceId}`, ...base, deviceId, platform: 'ios' });
      events.push({ type: 'device_removed', id: `remove-${deviceId}`, ...base, deviceId });
    }
  }
  return events;
}

/** The abstract state: no timestamps, so the graph is finite. */
export function serialize(s: UserSnapshot): string {
  const c = s.context;
  const graceDays = c.graceEndsAt === null || c.graceStartedAt === null ? null : (c.graceEndsAt - c.graceStartedAt) / DAY;
  return JSON.stringify({
    value: s.value,
    grace: c.graceReason && [c.graceReason, graceDays],
    crisis: c.crisis?.level ?? null,
    // Model time only moves forward, so a crisis that became old (the 31-day events) stays old.
    lastCrisis: c.lastCrisisAt === null ? null : now(s) - c.lastCrisisAt > DEFAULT_POLICY.recentCrisisMs ? 'old' : 'recent',
    devices: [...c.devices].sort(),
  });
}

/**
 * The model's event as a producer publishes it: a billing standing becomes the snapshot of the
 * model's subscription that gives it (see {@link snapshotStanding}); every other event is as is.
 */
export function toWire(event: MachineEvent): UserEvent {
  if (event.type !== 'billing_changed') return event;
  const { id, userId, at, standing } = event;
  return { type: 'subscription_updated', id, userId, at, subscriptionId: MODEL_SUBSCRIPTION, status: standing.status, tier: standing.tier };
}

/** Traversal options for `xstate/graph` over the model's events of `alphabet`. */
export function traversal(alphabet: readonly Alphabet[], fromState?: UserSnapshot) {
  return {
    input: MODEL_INPUT,
    events: (s: UserSnapshot) => modelEvents(s, alphabet),
    serializeState: (s: UserSnapshot) => serialize(s),
    ...(fromState ? { fromState } : {}),
  };
}

/** The model event of `kind` for snapshot `s` (the event a walk takes from the state it reached). */
export function rebuild(s: UserSnapshot, kind: string, alphabet: readonly Alphabet[]): MachineEvent {
  const event = modelEvents(s, alphabet).find((e) => e.id === kind);
  if (!event) throw new Error(`no model event ${kind} in ${serialize(s)}`);
  return event;
}

/** The snapshot after model events of the given kinds, from the initial state. */
export function after(...kinds: string[]): UserSnapshot {
  let [s] = initialTransition(userMachine, MODEL_INPUT);
  for (const kind of kinds) s = transition(userMachine, s, rebuild(s, kind, EVERYTHING))[0];
  return s;
}

/** The transition definitions `event` takes from `s`, keyed `source|event|index`. */
export function transitionKeys(s: UserSnapshot, event: MachineEvent): string[] {
  return userMachine.getTransitionData(s, event).map((t) => {
    const index = t.source.transitions.get(t.eventType)!.indexOf(t);
    return `${t.source.id}|${t.eventType}|${index}`;
  });
}

/** Every transition definition of the machine, keyed `source|event|index`. */
export function allTransitions(): Set<string> {
  const keys = new Set<string>();
  const visit = (node: AnyStateNode) => {
    for (const [eventType, list] of node.transitions) list.forEach((_, i) => keys.add(`${node.id}|${eventType}|${i}`));
    for (const child of Object.values(node.states)) visit(child);
  };
  visit(userMachine.root);
  return keys;
}

/** Every atomic state node of the machine, by id. */
export function atomicStateNodes(): Set<string> {
  const ids = new Set<string>();
  const visit = (node: AnyStateNode) => {
    if (node.type === 'atomic') ids.add(node.id);
    for (const child of Object.values(node.states)) visit(child);
  };
  visit(userMachine.root);
  return ids;
}
