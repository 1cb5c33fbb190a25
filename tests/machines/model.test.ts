/**
 * Model-based test of the user statechart with `xstate/graph`: shortest paths to every reachable
 * (abstract) state and bounded simple paths, every step walked, DESIGN §6 invariants 1 and 2
 * checked on the device view at every step, and coverage of every state node and every
 * transition definition of the machine.
 *
 * The model (its events, the abstract state, the traversal options) lives in
 * tests/support/userModel.ts, shared with the live model-based test (tests/runtime/model.test.ts).
 */
import { transition } from 'xstate';
import { getAdjacencyMap, getShortestPaths, getSimplePaths, type StatePath } from 'xstate/graph';
import { describe, expect, it } from 'vitest';
import { deriveView } from '../../machines/deviceView.ts';
import { isDeepStrictEqual } from 'node:util';
import { userMachine, type MachineEvent, type UserSnapshot } from '../../machines/userMachine.ts';
import { applyEvent, createUserState, type UserState } from '../../machines/userState.ts';
import {
  after,
  allTransitions,
  atomicStateNodes,
  EVERYTHING,
  MODEL_INPUT,
  modelEvents,
  rebuild,
  serialize,
  toWire,
  transitionKeys,
  traversal,
  type Alphabet,
} from '../support/userModel.ts';
import { crisisInvariantViolations } from './support.ts';

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
function step(coverage: Coverage, s: UserSnapshot, event: MachineEvent, trail: readonly string[]): UserSnapshot {
  for (const key of transitionKeys(s, event)) coverage.transitions.add(key);
  const [next] = transition(userMachine, s, event);
  record(coverage, next, trail);
  coverage.steps += 1;
  return next;
}

/**
 * The same step through the runtime's fold, with the event as a producer publishes it (payments as
 * subscription snapshots, through the billing ledger): it must reach the model's snapshot.
 */
function foldStep(coverage: Coverage, fold: UserState, event: MachineEvent, expected: UserSnapshot, trail: readonly string[]): UserState {
  const next = applyEvent(fold, { ...toWire(event), id: `${trail.length}.${event.id}` }).state;
  const same = (x: UserSnapshot) => ({ value: x.value, context: x.context });
  if (!isDeepStrictEqual(same(next.snapshot), same(expected))) coverage.problems.push(`the fold differs from the model after ${trail.join(' → ')}`);
  return next;
}

/**
 * Walks a path from its first state: rebuilds each event for the snapshot actually reached,
 * records the transition definitions it takes, checks the abstract state is the path's and that
 * the invariants hold. A path `fromStart` (the new user) is also walked through the runtime's fold
 * with the events as published, which must reach the same snapshots, and is followed by every
 * model event once from its end (so the edges that close a cycle, which no simple or shortest
 * path contains, are walked too).
 */
function walk(path: StatePath<UserSnapshot, MachineEvent>, alphabet: readonly Alphabet[], coverage: Coverage, fromStart = false) {
  const [first, ...rest] = path.steps;
  let s = first!.state;
  let fold = createUserState(MODEL_INPUT.userId, MODEL_INPUT.createdAt);
  const trail: string[] = [];
  record(coverage, s, trail);
  for (const { event: planned, state: expected } of rest) {
    trail.push(planned.id);
    const event = rebuild(s, planned.id, alphabet);
    s = step(coverage, s, event, trail);
    if (fromStart) fold = foldStep(coverage, fold, event, s, trail);
    if (serialize(s) !== serialize(expected)) {
      coverage.problems.push(`abstract state ${serialize(s)} instead of ${serialize(expected)} after ${trail.join(' → ')}`);
      return;
    }
  }
  coverage.paths += 1;
  if (!fromStart) return;
  for (const event of modelEvents(s, alphabet)) {
    const next = step(coverage, s, event, [...trail, event.id]);
    foldStep(coverage, fold, event, next, [...trail, event.id]);
  }
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
  { name: 'subscription, after a recent crisis', alphabet: ['payments', 'deadlines'], from: ['clinician-critical', 'resolved-by-clinician'] },
  {
    name: 'subscription, after an old crisis',
    alphabet: ['payments', 'deadlines'],
    from: ['clinician-critical', 'resolved-by-clinician', 'canceled-31d-after-crisis'],
  },
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
