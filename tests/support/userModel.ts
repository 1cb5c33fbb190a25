/**
 * The model of the user statechart that the model-based tests walk with `xstate/graph`: the pure
 * one (tests/machines/model.test.ts) and the live one against the running system
 * (tests/runtime/model.test.ts).
 *
 * The model's events are a function of the snapshot, so that deadline events arrive at the
 * deadline the context holds; an event's `id` names its kind ("grace-ended", "check-in", …), which
 * lets a walk rebuild the event for the snapshot it actually reached. Time: "now" is the latest
 * time the context remembers (grace start, crisis start, last crisis), 0 at first; the one event
 * far in the future is the payment event 31 days after the last crisis, for the 7-day grace
 * after an old crisis. The model's user is created at time 0.
 *
 * `serialize` keeps the state space finite: state value, paid tier, grace reason and length
 * in days, crisis level, whether a crisis ever happened, devices; no timestamps. It must be a
 * congruence for these events (equal keys → equal keys after any event); every walk checks that.
 */
import { initialTransition, transition, type AnyStateNode } from 'xstate';
import type { UserEvent } from '../../machines/events.ts';
import { DEFAULT_POLICY } from '../../machines/policy.ts';
import { userMachine, type UserInput, type UserSnapshot } from '../../machines/userMachine.ts';

const DAY = 24 * 60 * 60 * 1000;

/** The model's user: trial from time 0. */
export const MODEL_INPUT: UserInput = { userId: 'u1', createdAt: 0 };

/** Groups of model events; a traversal uses some of them. */
export type Alphabet = 'payments' | 'deadlines' | 'crisis' | 'devices';
export const EVERYTHING: readonly Alphabet[] = ['payments', 'deadlines', 'crisis', 'devices'];

/** The devices the model registers and removes (a live test must use another id for its own). */
export const MODEL_DEVICES = ['d1', 'd2'] as const;

function now(s: UserSnapshot): number {
  const { graceStartedAt, crisis, lastCrisisAt } = s.context;
  return Math.max(0, ...[graceStartedAt, crisis?.since, lastCrisisAt].filter((t): t is number => t !== null && t !== undefined));
}

/** The model's events for a snapshot; `id` is the event's kind. */
export function modelEvents(s: UserSnapshot, alphabet: readonly Alphabet[]): UserEvent[] {
  const c = s.context;
  const base = { userId: MODEL_INPUT.userId, at: now(s) };
  const sub = { ...base, subscriptionId: 'sub_1' };
  const events: UserEvent[] = [];
  if (alphabet.includes('payments')) {
    for (const tier of ['basic', 'premium'] as const) {
      events.push({ type: 'subscription_activated', id: `activated-${tier}`, ...sub, tier });
      events.push({ type: 'plan_changed', id: `plan-changed-${tier}`, ...sub, tier });
    }
    events.push({ type: 'subscription_canceled', id: 'canceled', ...sub });
    events.push({ type: 'payment_failed', id: 'payment-failed', ...sub, attemptCount: 1, nextAttemptAt: null });
    events.push({ type: 'payment_recovered', id: 'payment-recovered', ...sub });
    if (c.lastCrisisAt !== null && c.crisis === null) {
      const at = c.lastCrisisAt + 31 * DAY;
      events.push({ type: 'subscription_canceled', id: 'canceled-31d-after-crisis', ...sub, at });
      events.push({ type: 'payment_failed', id: 'payment-failed-31d-after-crisis', ...sub, at, attemptCount: 1, nextAttemptAt: null });
    }
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
    const phq9 = (id: string, answers: number[]): UserEvent => ({ type: 'assessment_completed', id, ...base, instrument: 'phq9', answers });
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
    paidTier: c.paidTier,
    grace: c.graceReason && [c.graceReason, graceDays],
    crisis: c.crisis?.level ?? null,
    hadCrisis: c.lastCrisisAt !== null,
    devices: [...c.devices].sort(),
  });
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
export function rebuild(s: UserSnapshot, kind: string, alphabet: readonly Alphabet[]): UserEvent {
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
export function transitionKeys(s: UserSnapshot, event: UserEvent): string[] {
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
