/**
 * Model-based, against the live system (real nats-server, runtime node process, device process):
 * the paths `xstate/graph` finds through the user statechart are replayed as real events over
 * NATS; after every step the view the user's real device actor applied must equal the view the
 * model predicts (`deriveView` of the snapshot the model reaches), the user's stored record must hold
 * the model's statechart state (what the next step restores), and the user is passivated between
 * steps, so every step after the first also exercises restore from the stored record.
 *
 * Paths: the shortest path to every reachable abstract state (tests/support/userModel.ts, the same
 * model as tests/machines/model.test.ts), walked as the pure test walks them, plus one-step
 * extensions of them (the pure test takes every one) chosen so that every transition definition of
 * the machine is taken at least once: the shortest paths alone take a third of them.
 *
 * Each path is its own user. Its first event registers the device `live` (one the model never
 * uses), so the device actor in the test's device process receives the user's views; the model's
 * own device events then only add and remove other devices, which the view does not show. Model
 * times start at 0 (the user's creation); on the wire every time is shifted by T0, the publish time
 * of that first event, which is when the runtime creates the user, so trial and grace deadlines
 * line up. Event ids are the model's kinds prefixed by the user and the step (the runtime dedups
 * by id).
 *
 * The runtime passivates a user as soon as its work is committed (FM_IDLE_MS=0). Paths run in
 * lockstep rounds: round r publishes step r of every path at once, waits until each is applied,
 * and each device applied the view version the user's record names, compares, then waits until no
 * user is resident before the next round. So between two steps of a path its user is always
 * passivated, and the node must activate (restore) it once per step. (The node reports only how
 * many users are resident, not which: a barrier over all of them is what can be waited for
 * reliably. Rounds cost about a second each, mostly trial's coalescing window, however many paths
 * they carry.)
 *
 * The model folds events with the bare statechart, payments as `billing_changed`; on the wire they
 * are the subscription snapshots that give those standings (`toWire`), and the runtime also dedups
 * by id and keeps payments in its billing ledger (DESIGN §4). Each step's expected outcome comes
 * from the runtime's pure step (`applyEvent`) over the published events: on these paths every
 * event is applied, and the runtime's counters must agree (no stale event).
 */
import { isDeepStrictEqual } from 'node:util';
import { Kvm } from '@nats-io/kv';
import { initialTransition, transition } from 'xstate';
import { getShortestPaths } from 'xstate/graph';
import { describe, expect, it } from 'vitest';
import { decodeUserRecord, type UserRecord } from '../../actors/userRecord.ts';
import { deriveView, type UserView } from '../../machines/deviceView.ts';
import type { UserEvent } from '../../machines/events.ts';
import { userMachine, type MachineEvent, type UserSnapshot } from '../../machines/userMachine.ts';
import { applyEvent, createUserState, type ApplyOutcome, type PersistedUserState, type UserState } from '../../machines/userState.ts';
import { publishEvent } from '../../transport/eventPublisher.ts';
import { laneOf, type Lane } from '../../transport/subjects.ts';
import { waitFor, type AppliedView, type DeviceProcess } from '../support/processes.ts';
import { useSystem } from '../support/system.ts';
import {
  allTransitions,
  EVERYTHING,
  MODEL_DEVICES,
  MODEL_INPUT,
  modelEvents,
  rebuild,
  serialize,
  toWire,
  transitionKeys,
  traversal,
} from '../support/userModel.ts';

const system = useSystem({ FM_IDLE_MS: '0', FM_SWEEP_MS: '10' });

/** The device every path user registers first; the model never uses it. */
const LIVE_DEVICE = 'live';
/** Longest a round may take to be applied everywhere (a round is a burst of a few hundred events). */
const ROUND_TIMEOUT_MS = 30_000;

/** One step of a path: the model's event, what the runtime does with it, the snapshot expected after. */
interface Step {
  event: MachineEvent;
  outcome: ApplyOutcome;
  /** The model's snapshot after the step (the one before it when the runtime must ignore the event). */
  expected: UserSnapshot;
}

/** A path of the model: its first snapshot (the new user) and its steps. */
interface PlannedPath {
  initial: UserSnapshot;
  steps: Step[];
}

/** A path replayed as one user. */
interface LivePath extends PlannedPath {
  user: string;
}

/**
 * What the runtime's own pure step (dedup and the billing ledger, then the statechart) does with
 * each of the model's events as published, in order.
 */
function foldOutcomes(events: readonly MachineEvent[]): ApplyOutcome[] {
  let state: UserState = createUserState(MODEL_INPUT.userId, MODEL_INPUT.createdAt);
  // Ids made unique per step, as on the wire: the model's ids are kinds, repeated along a path.
  return events.map((event, i) => {
    const result = applyEvent(state, { ...toWire(event), id: `${i + 1}.${event.id}` });
    state = result.state;
    return result.outcome;
  });
}

/**
 * The shortest paths, then one-step extensions of them until every transition definition is taken.
 *
 * A graph path's snapshots are the first concrete snapshots the traversal met with each abstract
 * state, so their times may come from another route to the same abstract state. As in the pure
 * test, each path is walked from the start instead, every event rebuilt (by kind) for the snapshot
 * the walk reached; the abstract state must be the path's at every step.
 */
function plan(): { paths: PlannedPath[]; transitions: Set<string> } {
  const [initial] = initialTransition(userMachine, MODEL_INPUT);
  const shortest = getShortestPaths(userMachine, traversal(EVERYTHING))
    .map((path) => {
      const events: MachineEvent[] = [];
      const states: UserSnapshot[] = [];
      let s = initial;
      for (const { event: planned, state: graphState } of path.steps.slice(1)) {
        const event = rebuild(s, planned.id, EVERYTHING);
        s = transition(userMachine, s, event)[0];
        if (serialize(s) !== serialize(graphState)) {
          throw new Error(`abstract state ${serialize(s)} instead of ${serialize(graphState)} after ${[...events, event].map((e) => e.id).join(' → ')}`);
        }
        events.push(event);
        states.push(s);
      }
      return { events, states, end: s };
    })
    .sort((a, b) => a.events.length - b.events.length);

  const taken = new Set<string>();
  const paths: PlannedPath[] = [];
  const stepsOf = (events: MachineEvent[], states: UserSnapshot[]): Step[] => {
    const outcomes = foldOutcomes(events);
    return events.map((event, i) => ({ event, outcome: outcomes[i]!, expected: states[i]! }));
  };
  for (const p of shortest) {
    // The model knows no billing ledger: a path it finds must not contain a payment the runtime
    // rightly ignores as stale, or the live user would leave the path there.
    const ignored = foldOutcomes(p.events).findIndex((o) => o !== 'applied');
    if (ignored >= 0) throw new Error(`the runtime ignores step ${ignored + 1} of ${p.events.map((e) => e.id).join(' → ')}`);
    p.events.forEach((event, i) => transitionKeys(i === 0 ? initial : p.states[i - 1]!, event).forEach((k) => taken.add(k)));
    paths.push({ initial, steps: stepsOf(p.events, p.states) });
  }
  // Extensions: from the end of a shortest path (shortest first), one more model event, kept when
  // it takes a transition definition no path took yet.
  for (const p of shortest) {
    for (const event of modelEvents(p.end, EVERYTHING)) {
      const keys = transitionKeys(p.end, event);
      if (keys.every((k) => taken.has(k))) continue;
      keys.forEach((k) => taken.add(k));
      const steps = stepsOf([...p.events, event], [...p.states, transition(userMachine, p.end, event)[0]]);
      // An event the runtime must ignore (a stale payment) leaves the snapshot as it was.
      if (steps.at(-1)!.outcome !== 'applied') steps.at(-1)!.expected = p.end;
      paths.push({ initial, steps });
    }
  }
  return { paths, transitions: taken };
}

/** The model's event as the path's user publishes it: its own id, T0-shifted time. */
function wireEvent(user: string, t0: number, index: number, e: MachineEvent): UserEvent {
  return { ...toWire(e), userId: user, id: `${user}.${index}.${e.id}`, at: e.at + t0 };
}

/** The model's view with its times shifted by T0, as the device should show it. */
function expectedView(s: UserSnapshot, t0: number): UserView {
  const v = deriveView(s);
  return {
    ...v,
    trialEndsAt: v.trialEndsAt === null ? null : v.trialEndsAt + t0,
    gracePeriod: v.gracePeriod && { ...v.gracePeriod, endsAt: v.gracePeriod.endsAt + t0 },
    crisis: {
      ...v.crisis,
      since: v.crisis.since === null ? null : v.crisis.since + t0,
      signalsUntil: v.crisis.signalsUntil === null ? null : v.crisis.signalsUntil + t0,
    },
  };
}

/** The model's statechart state as the live user's record holds it: its id, T0-shifted times, the live device first. */
function expectedState(s: UserSnapshot, user: string, t0: number): Pick<PersistedUserState, 'value' | 'context'> {
  const c = s.context;
  const shift = (t: number | null) => (t === null ? null : t + t0);
  return {
    value: s.value,
    context: {
      ...c,
      userId: user,
      trialEndsAt: shift(c.trialEndsAt),
      graceStartedAt: shift(c.graceStartedAt),
      graceEndsAt: shift(c.graceEndsAt),
      billing: c.billing && {
        ...c.billing,
        asOf: c.billing.asOf + t0,
        ...(c.billing.status === 'active' ? {} : { since: c.billing.since + t0 }),
      },
      crisis: c.crisis && { ...c.crisis, since: c.crisis.since + t0, lastSignalAt: c.crisis.lastSignalAt + t0 },
      lastCrisisAt: shift(c.lastCrisisAt),
      devices: [LIVE_DEVICE, ...c.devices],
    },
  };
}

/** The entitlements a device process reported for an applied view, in the shape of {@link UserView}. */
function appliedView(v: AppliedView): UserView {
  return {
    tier: v.tier,
    status: v.status,
    trialEndsAt: v.trialEndsAt,
    gracePeriod: v.gracePeriod,
    crisis: { active: v.crisis, level: v.crisisLevel as UserView['crisis']['level'], since: v.crisisSince, signalsUntil: v.crisisSignalsUntil, presentation: v.presentation },
    features: { enabled: v.features as UserView['features']['enabled'], disabled: v.disabledFeatures },
    sync: v.sync,
  };
}

/** What one user's step waits for: applied (or ignored) in the stored record, then on the device. */
interface Pending {
  path: LivePath;
  /** Step number: 0 is the registration of the live device. */
  index: number;
  event: UserEvent;
  outcome: ApplyOutcome;
  expected: UserView;
  /** The statechart state the record must hold after the step. */
  expectedState: Pick<PersistedUserState, 'value' | 'context'>;
  lane: Lane;
  seq: number;
  publishedAt: number;
}

describe('the live system follows the model', () => {
  it('every shortest path and transition: the devices apply the model view at every step, each step restoring a passivated user', async () => {
    const { client } = system();
    const { paths: planned, transitions } = plan();
    const universe = allTransitions();
    expect([...universe].filter((t) => !transitions.has(t)), 'transitions no path takes').toEqual([]);
    // No path uses the live device id, so its view is all the device sees.
    expect(MODEL_DEVICES).not.toContain(LIVE_DEVICE);

    const tag = Date.now().toString(36);
    const paths: LivePath[] = planned.map((p, i) => ({ ...p, user: `model-${tag}-${i}` }));
    const devices: DeviceProcess = await system().devices(...paths.map((p) => `${p.user}:${LIVE_DEVICE}`));

    // Every stored user record, as the runtime writes it.
    const records = new Map<string, UserRecord>();
    const kv = await new Kvm(client.nc).open(client.topology.buckets.users);
    const watcher = await kv.watch();
    void (async () => {
      for await (const entry of watcher) {
        if (entry.operation === 'PUT') records.set(entry.key, decodeUserRecord(entry.value));
      }
    })();

    const problems: string[] = [];
    const trail = (p: LivePath, upTo: number) => p.steps.slice(0, upTo).map((s) => s.event.id).join(' → ') || 'start';
    let steps = 0;
    let maxStepMs = 0;
    const start = await client.metrics();
    const t0 = Date.now();

    try {
      const rounds = Math.max(...paths.map((p) => p.steps.length));
      for (let round = 0; round <= rounds; round++) {
        const active = paths.filter((p) => p.steps.length >= round);
        const before = await client.metrics();
        // Publish this round's step of every path at once.
        const pending = await Promise.all(
          active.map(async (path): Promise<Pending> => {
            const step = round === 0 ? undefined : path.steps[round - 1]!;
            const event: UserEvent =
              step === undefined
                ? { type: 'device_registered', id: `${path.user}.0.register-${LIVE_DEVICE}`, userId: path.user, at: t0, deviceId: LIVE_DEVICE, platform: 'web' }
                : wireEvent(path.user, t0, round, step.event);
            const publishedAt = Date.now();
            const ack = await publishEvent(client.js, client.topology.subjects, event);
            expect(ack.duplicate, `${event.id} stored as a duplicate`).toBe(false);
            return {
              path,
              index: round,
              event,
              outcome: step?.outcome ?? 'applied',
              expected: expectedView(step?.expected ?? path.initial, t0),
              expectedState: expectedState(step?.expected ?? path.initial, path.user, t0),
              lane: laneOf(event.type),
              seq: ack.seq,
              publishedAt,
            };
          }),
        );
        steps += pending.length;

        // Wait until every step is processed and its user's device holds the record's view version.
        const left = new Set(pending);
        const done = (p: Pending): boolean => {
          const record = records.get(p.path.user);
          if (!record || record.lastSeq[p.lane] < p.seq) return false;
          const applied = record.state.recentEventIds.includes(p.event.id);
          if (applied !== (p.outcome === 'applied')) {
            problems.push(`${p.path.user} step ${p.index} (${p.event.id}): runtime ${applied ? 'applied' : 'ignored'} it, expected ${p.outcome}`);
            return true;
          }
          const view = devices.latest(`${p.path.user}:${LIVE_DEVICE}`);
          if (!view || view.version !== record.viewVersion) return false;
          // What the next step restores: the stored statechart state is the model's.
          const stored = { value: record.state.value, context: record.state.context };
          if (!isDeepStrictEqual(stored, p.expectedState)) {
            problems.push(
              `${p.path.user} after ${trail(p.path, p.index)}: record holds ${JSON.stringify(stored)}, model expects ${JSON.stringify(p.expectedState)}`,
            );
          }
          maxStepMs = Math.max(maxStepMs, Date.now() - p.publishedAt);
          const actual = appliedView(view);
          if (!isDeepStrictEqual(sortFeatures(actual), sortFeatures(p.expected))) {
            problems.push(
              `${p.path.user} after ${trail(p.path, p.index)}: device applied v${view.version} ${JSON.stringify(actual)}, model expects ${JSON.stringify(p.expected)}` +
                ` (model state ${serialize(p.path.steps[p.index - 1]?.expected ?? p.path.initial)})`,
            );
          }
          return true;
        };
        await waitFor(
          () => {
            for (const p of left) if (done(p)) left.delete(p);
            return left.size === 0;
          },
          `round ${round}: ${left.size} steps applied`,
          ROUND_TIMEOUT_MS,
        ).catch((err: Error) => {
          const sample = [...left].slice(0, 5).map((p) => {
            const record = records.get(p.path.user);
            return `${p.event.id} (${p.lane} seq ${p.seq}): record lastSeq ${JSON.stringify(record?.lastSeq)} v${record?.viewVersion}, device v${devices.latest(`${p.path.user}:${LIVE_DEVICE}`)?.version}`;
          });
          throw new Error(`${err.message}; still waiting for ${left.size}: ${sample.join('; ')}`);
        });
        expect(problems.slice(0, 10)).toEqual([]);

        // Every user of the round passivated before its next step.
        const after = await waitFor(async () => {
          const m = await client.metrics();
          return m.residents === 0 ? m : undefined;
        }, `round ${round}: no resident user`);
        // Each user of the round was activated for its step: restored from its record (or created).
        expect(after.activations - before.activations, `activations in round ${round}`).toBeGreaterThanOrEqual(active.length);
      }
    } finally {
      watcher.stop();
    }

    const end = await client.metrics();
    const activations = end.activations - start.activations;
    console.log(`live model: ${paths.length} paths, ${steps} steps, ${activations} activations, max step ${maxStepMs} ms`);
    expect(problems).toEqual([]);
    expect(activations).toBeGreaterThanOrEqual(steps);
    expect(end.passivations - start.passivations).toBeGreaterThanOrEqual(steps);
    expect(end.deadLetters).toBe(0);
    // The runtime ignored exactly the stale payments the model's fold predicts (none on these paths).
    const stale = paths.flatMap((p) => p.steps).filter((s) => s.outcome === 'stale').length;
    expect(end.stale - start.stale).toBe(stale);
  }, 120_000);
});

/** Feature lists compared as sets. */
function sortFeatures(v: UserView): UserView {
  return { ...v, features: { enabled: [...v.features.enabled].sort(), disabled: [...v.features.disabled].sort() } };
}
