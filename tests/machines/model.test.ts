/**
 * Model-based test of the user statechart with `xstate/graph`: shortest paths to every reachable
 * (abstract) state and bounded simple paths, every step walked, DESIGN §6 invariants 1 and 2
 * checked on the device view at every step, and coverage of every state node and every
 * transition definition of the machine.
 *
 * The model's events are a function of the snapshot, so that deadline events arrive at the
 * deadline the context holds; an event's `id` names its kind ("grace-ended", "check-in", …), which
 * lets a walk rebuild the event for the snapshot it actually reached. Time: "now" is the latest
 * time the context remembers (grace start, crisis start, last crisis), 0 at first; the one event
 * far in the future is the payment event 31 days after the last crisis, for the 7-day grace
 * after an old crisis.
 *
 * `serializeState` keeps the state space finite: state value, paid tier, grace reason and length
 * in days, crisis level, whether a crisis ever happened, devices; no timestamps. It must be a
 * congruence for these events (equal keys → equal keys after any event); every walk checks that.
 */
import { initialTransition, transition, type AnyStateNode } from 'xstate';
import { getAdjacencyMap, getShortestPaths, getSimplePaths, type StatePath } from 'xstate/graph';
import { describe, expect, it } from 'vitest';
import { deriveView } from '../../machines/deviceView.ts';
import type { UserEvent } from '../../machines/events.ts';
import { DEFAULT_POLICY } from '../../machines/policy.ts';
import { userMachine, type UserSnapshot } from '../../machines/userMachine.ts';
import { crisisInvariantViolations, DAY } from './support.ts';

const INPUT = { userId: 'u1', createdAt: 0 };

/** Groups of model events; a traversal uses some of them. */
type Alphabet = 'payments' | 'deadlines' | 'crisis' | 'devices';
const EVERYTHING: readonly Alphabet[] = ['payments', 'deadlines', 'crisis', 'devices'];

function now(s: UserSnapshot): number {
  const { graceStartedAt, crisis, lastCrisisAt } = s.context;
  return Math.max(0, ...[graceStartedAt, crisis?.since, lastCrisisAt].filter((t): t is number => t !== null && t !== undefined));
}

/** The model's events for a snapshot; `id` is the event's kind. */
function modelEvents(s: UserSnapshot, alphabet: readonly Alphabet[]): UserEvent[] {
  const c = s.context;
  const base = { userId: INPUT.userId, at: now(s) };
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
    for (const deviceId of ['d1', 'd2']) {
      events.push({ type: 'device_registered', id: `register-${deviceId}`, ...base, deviceId, platform: 'ios' });
      events.push({ type: 'device_removed', id: `remove-${deviceId}`, ...base, deviceId });
    }
  }
  return events;
}

/** The abstract state: no timestamps, so the graph is finite. */
function serialize(s: UserSnapshot): string {
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

function traversal(alphabet: readonly Alphabet[], fromState?: UserSnapshot) {
  return {
    input: INPUT,
    events: (s: UserSnapshot) => modelEvents(s, alphabet),
    serializeState: (s: UserSnapshot) => serialize(s),
    ...(fromState ? { fromState } : {}),
  };
}

/** The snapshot after model events of the given kinds, from the initial state. */
function after(...kinds: string[]): UserSnapshot {
  let [s] = initialTransition(userMachine, INPUT);
  for (const kind of kinds) s = transition(userMachine, s, rebuild(s, kind, EVERYTHING))[0];
  return s;
}

function rebuild(s: UserSnapshot, kind: string, alphabet: readonly Alphabet[]): UserEvent {
  const event = modelEvents(s, alphabet).find((e) => e.id === kind);
  if (!event) throw new Error(`no model event ${kind} in ${serialize(s)}`);
  return event;
}

/** Every transition definition of the machine, keyed `source|event|index`. */
function allTransitions(): Set<string> {
  const keys = new Set<string>();
  const visit = (node: AnyStateNode) => {
    for (const [eventType, list] of node.transitions) list.forEach((_, i) => keys.add(`${node.id}|${eventType}|${i}`));
    for (const child of Object.values(node.states)) visit(child);
  };
  visit(userMachine.root);
  return keys;
}

function atomicStateNodes(): Set<string> {
  const ids = new Set<string>();
  const visit = (node: AnyStateNode) => {
    if (node.type === 'atomic') ids.add(node.id);
    for (const child of Object.values(node.states)) visit(child);
  };
  visit(userMachine.root);
  return ids;
}

interface Coverage {
  states: Set<string>;
  nodes: Set<string>;
  transitions: Set<string>;
  paths: number;
  steps: number;
  /** Invariant violations and abstract-state mismatches, with the events that led there. */
  problems: string[];
}

const newCoverage = (): Coverage => ({
  states: new Set(),
  nodes: new Set(),
  transitions: new Set(),
  paths: 0,
  steps: 0,
  problems: [],
});

function record(coverage: Coverage, s: UserSnapshot, trail: readonly string[]) {
  coverage.states.add(serialize(s));
  for (const region of Object.values(userMachine.root.states)) {
    for (const child of Object.values(region.states)) if (s.matches({ [region.key]: child.key } as never)) coverage.nodes.add(child.id);
  }
  for (const problem of crisisInvariantViolations(deriveView(s))) coverage.problems.push(`${problem} after ${trail.join(' → ') || 'start'}`);
}

/** One step: records the transition definitions `event` takes from `s`, returns the next snapshot. */
function step(coverage: Coverage, s: UserSnapshot, event: UserEvent, trail: readonly string[]): UserSnapshot {
  for (const t of userMachine.getTransitionData(s, event)) {
    const index = t.source.transitions.get(t.eventType)!.indexOf(t);
    coverage.transitions.add(`${t.source.id}|${t.eventType}|${index}`);
  }
  const [next] = transition(userMachine, s, event);
  record(coverage, next, trail);
  coverage.steps += 1;
  return next;
}

/**
 * Walks a path from its first state: rebuilds each event for the snapshot actually reached,
 * records the transition definitions it takes, checks the abstract state is the path's and that
 * the invariants hold. With `thenEveryEvent`, also takes every model event once from the end
 * (so the edges that close a cycle, which no simple or shortest path contains, are walked too).
 */
function walk(path: StatePath<UserSnapshot, UserEvent>, alphabet: readonly Alphabet[], coverage: Coverage, thenEveryEvent = false) {
  const [first, ...rest] = path.steps;
  let s = first!.state;
  const trail: string[] = [];
  record(coverage, s, trail);
  for (const { event: planned, state: expected } of rest) {
    trail.push(planned.id);
    s = step(coverage, s, rebuild(s, planned.id, alphabet), trail);
    if (serialize(s) !== serialize(expected)) {
      coverage.problems.push(`abstract state ${serialize(s)} instead of ${serialize(expected)} after ${trail.join(' → ')}`);
      return;
    }
  }
  coverage.paths += 1;
  if (thenEveryEvent) for (const event of modelEvents(s, alphabet)) step(coverage, s, event, [...trail, event.id]);
}

let shortestCoverage: Coverage | undefined;
/** Shortest paths to every reachable abstract state, each followed by every model event once. */
function shortest(): Coverage {
  if (shortestCoverage) return shortestCoverage;
  const coverage = newCoverage();
  for (const path of getShortestPaths(userMachine, traversal(EVERYTHING))) walk(path, EVERYTHING, coverage, true);
  return (shortestCoverage = coverage);
}

/**
 * Simple paths, bounded by projection: all simple paths of one region's events with the other
 * region held in chosen states (the full product has far too many simple paths to enumerate:
 * over 30 abstract states it runs for minutes). Interleavings of the regions are covered by the
 * shortest paths above and by properties.test.ts.
 */
const SIMPLE_RUNS: Array<{ name: string; alphabet: readonly Alphabet[]; from: string[] }> = [
  { name: 'subscription, never a crisis', alphabet: ['payments', 'deadlines'], from: [] },
  { name: 'subscription, crisis active', alphabet: ['payments', 'deadlines'], from: ['button'] },
  { name: 'subscription, after a crisis', alphabet: ['payments', 'deadlines'], from: ['clinician-critical', 'resolved-by-clinician'] },
  { name: 'crisis, in trial', alphabet: ['crisis'], from: [] },
  { name: 'crisis, in basic', alphabet: ['crisis'], from: ['activated-basic'] },
  { name: 'crisis, in premium', alphabet: ['crisis'], from: ['activated-premium'] },
  { name: 'crisis, in a 7-day grace', alphabet: ['crisis'], from: ['activated-basic', 'payment-failed'] },
  { name: 'crisis, lapsed', alphabet: ['crisis'], from: ['trial-ended'] },
  { name: 'devices', alphabet: ['devices'], from: [] },
  { name: 'devices, in crisis', alphabet: ['devices'], from: ['button', 'activated-premium'] },
];

let simpleCoverage: Coverage | undefined;
function simple(): Coverage {
  if (simpleCoverage) return simpleCoverage;
  const coverage = newCoverage();
  for (const run of SIMPLE_RUNS) {
    const paths = getSimplePaths(userMachine, traversal(run.alphabet, after(...run.from)));
    if (paths.length < 2) coverage.problems.push(`${run.name}: ${paths.length} simple paths`);
    for (const path of paths) walk(path, run.alphabet, coverage);
  }
  return (simpleCoverage = coverage);
}

describe('user statechart, model-based', () => {
  it('shortest paths reach every reachable abstract state, with the invariants at every step', () => {
    const coverage = shortest();
    expect(coverage.problems.slice(0, 10)).toEqual([]);
    const reachable = Object.keys(getAdjacencyMap(userMachine, traversal(EVERYTHING)));
    expect([...coverage.states].sort()).toEqual([...reachable].sort());
    // sanity: the model is not trivially small (5 subscription states × crisis levels × devices)
    expect(reachable.length).toBeGreaterThan(100);
  });

  it('bounded simple paths keep the invariants at every step', () => {
    const coverage = simple();
    expect(coverage.problems.slice(0, 10)).toEqual([]);
    expect(coverage.paths).toBeGreaterThan(SIMPLE_RUNS.length);
  });

  it('every atomic state and every transition is covered', () => {
    const a = shortest();
    const b = simple();
    const nodes = new Set([...a.nodes, ...b.nodes]);
    const taken = new Set([...a.transitions, ...b.transitions]);
    const universe = allTransitions();

    expect([...atomicStateNodes()].sort()).toEqual(
      ['trial', 'basic', 'premium', 'grace_period', 'lapsed'].map((s) => `user.subscription.${s}`).concat(['user.crisis.stable', 'user.crisis.active']).sort(),
    );
    expect([...nodes].sort()).toEqual([...atomicStateNodes()].sort());
    expect([...universe].filter((t) => !taken.has(t)), 'transitions never taken').toEqual([]);
    expect([...taken].filter((t) => !universe.has(t)), 'transitions outside the machine').toEqual([]);

    const states = new Set([...a.states, ...b.states]);
    console.log(
      `model: ${states.size} states, ${taken.size}/${universe.size} transitions, ${a.paths + b.paths} paths, ${a.steps + b.steps} steps`,
    );
  });
});
