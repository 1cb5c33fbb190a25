/**
 * The user statechart (DESIGN §3): a `subscription` region and an orthogonal `crisis` region.
 *
 * Deadlines (trial end, grace end) are kept in context, not in `after` timers, because XState does
 * not persist pending delayed events (statelyai/xstate#5331): the runtime re-arms them from the
 * snapshot and sends `trial_ended` / `grace_ended`, whose guards check the deadline really passed.
 * Everything time-dependent reads `event.at`, never the clock, so a fold over events is deterministic.
 */
import { assign, setup, type ActorRefFrom, type SnapshotFrom } from 'xstate';
import { assessmentCrisisLevel, BUTTON_CRISIS_LEVEL, maxLevel, type CrisisLevel, type CrisisSource } from './crisis.ts';
import type { BillingChanged, BillingStanding } from './billing.ts';
import type { EventOf, PaymentEvent, UserEvent } from './events.ts';
import { DEFAULT_POLICY, type UserPolicy } from './policy.ts';
import { scoreAssessment } from './scoring.ts';

/** Why the user is in the grace period. */
export type GraceReason = 'payment_failed' | 'canceled';

/** An active crisis. */
export interface ActiveCrisis {
  level: CrisisLevel;
  source: CrisisSource;
  /** When the crisis started (event time). */
  since: number;
  /** Time of the latest crisis signal: a resolution made before it (delivered late) does not count. */
  lastSignalAt: number;
}

/** What the statechart remembers about a user. Holds no PII: ids, tiers and times only. */
export interface UserContext {
  userId: string;
  /** Trial deadline; `null` once the user left the trial. */
  trialEndsAt: number | null;
  /**
   * The billing standing the subscription region follows (`billing_changed`), from the billing
   * ledger of the user's payment events; `null` before any subscription stood anywhere.
   */
  billing: BillingStanding | null;
  graceStartedAt: number | null;
  /** Grace deadline; `null` outside the grace period. */
  graceEndsAt: number | null;
  graceReason: GraceReason | null;
  crisis: ActiveCrisis | null;
  /** Last time a crisis started or ended, for the longer grace after a recent crisis. */
  lastCrisisAt: number | null;
  /** Registered device ids, in registration order: who receives the views. */
  devices: string[];
}

/**
 * The events the statechart takes: every domain event but the payment events, which the fold turns
 * into `billing_changed` through the billing ledger (`userState.ts`), so their order does not matter.
 */
export type MachineEvent = Exclude<UserEvent, PaymentEvent> | BillingChanged;

/** Input that creates a user: the trial starts at `createdAt`. */
export interface UserInput {
  userId: string;
  createdAt: number;
}

/** Most devices a user may register: every device view lists them all. */
export const MAX_DEVICES = 64;

const crisisOf = (event: MachineEvent): ActiveCrisis | null => {
  switch (event.type) {
    case 'crisis_button':
      return { level: BUTTON_CRISIS_LEVEL, source: 'button', since: event.at, lastSignalAt: event.at };
    case 'crisis_detected':
      return { level: event.level, source: event.source, since: event.at, lastSignalAt: event.at };
    case 'assessment_completed': {
      const level = assessmentCrisisLevel(scoreAssessment(event.instrument, event.answers));
      return level && { level, source: 'assessment', since: event.at, lastSignalAt: event.at };
    }
    default:
      return null;
  }
};

const standingOf = (event: MachineEvent): BillingStanding | null => (event.type === 'billing_changed' ? event.standing : null);

/** Builds the user statechart for a policy (durations); see {@link userMachine} for the default. */
export function createUserMachine(policy: UserPolicy = DEFAULT_POLICY) {
  const recentCrisis = (context: UserContext, at: number) =>
    context.crisis !== null || (context.lastCrisisAt !== null && at - context.lastCrisisAt <= policy.recentCrisisMs);

  const graceLength = (context: UserContext, at: number) =>
    recentCrisis(context, at) ? policy.graceAfterCrisisMs : policy.graceMs;


  const machineSetup = setup({
    types: {
      context: {} as UserContext,
      events: {} as MachineEvent,
      input: {} as UserInput,
    },
    guards: {
      paysPremium: ({ event }) => standingOf(event)?.status === 'active' && standingOf(event)?.tier === 'premium',
      paysBasic: ({ event }) => standingOf(event)?.status === 'active' && standingOf(event)?.tier === 'basic',
      stoppedPaying: ({ event }) => standingOf(event)?.status === 'past_due' || standingOf(event)?.status === 'canceled',
      trialDeadlinePassed: ({ context, event }) => context.trialEndsAt !== null && event.at >= context.trialEndsAt,
      graceDeadlinePassed: ({ context, event }) => context.graceEndsAt !== null && event.at >= context.graceEndsAt,
      signalsCrisis: ({ event }) => crisisOf(event) !== null,
      resolvedByClinician: ({ context, event }) =>
        event.type === 'crisis_resolved' &&
        event.by === 'clinician' &&
        context.crisis !== null &&
        event.at >= context.crisis.lastSignalAt,
      checkInAfterHold: ({ context, event }) =>
        event.type === 'crisis_resolved' &&
        event.by === 'safety_check_in' &&
        context.crisis !== null &&
        event.at >= context.crisis.lastSignalAt &&
        event.at >= context.crisis.since + policy.crisisHoldMs,
    },
    actions: {
      subscribe: assign(({ event }) => ({
        billing: standingOf(event),
        trialEndsAt: null,
        graceStartedAt: null,
        graceEndsAt: null,
        graceReason: null,
      })),
      // Grace counts from when the user stopped paying (the standing's `since`), not from when the
      // news arrived: a late or reordered fact moves the deadline to where in-order delivery puts it.
      startGrace: assign(({ context, event }) => {
        const standing = standingOf(event) as Extract<BillingStanding, { since: number }>;
        return {
          billing: standing,
          trialEndsAt: null,
          graceStartedAt: standing.since,
          graceEndsAt: standing.since + graceLength(context, standing.since),
          graceReason: standing.status === 'past_due' ? ('payment_failed' as const) : ('canceled' as const),
        };
      }),
      followBilling: assign(({ event }) => ({ billing: standingOf(event) })),
      lapse: assign({ trialEndsAt: null, graceStartedAt: null, graceEndsAt: null, graceReason: null }),
      startCrisis: assign(({ context, event }) => {
        const crisis = crisisOf(event)!;
        // A crisis during the grace period earns the longer grace: therapeutic continuity.
        const graceEndsAt =
          context.graceStartedAt === null
            ? context.graceEndsAt
            : Math.max(context.graceEndsAt!, context.graceStartedAt + policy.graceAfterCrisisMs);
        return { crisis, lastCrisisAt: event.at, graceEndsAt };
      }),
      raiseCrisis: assign(({ context, event }) => {
        const signal = crisisOf(event)!;
        const current = context.crisis!;
        return {
          crisis: {
            ...current,
            level: maxLevel(current.level, signal.level),
            lastSignalAt: Math.max(current.lastSignalAt, signal.lastSignalAt),
          },
        };
      }),
      endCrisis: assign(({ event }) => ({ crisis: null, lastCrisisAt: event.at })),
      addDevice: assign(({ context, event }) => {
        const { deviceId } = event as EventOf<'device_registered'>;
        if (context.devices.includes(deviceId)) return {};
        // Every view lists the devices; a bound keeps it small. The runtime dead-letters the event.
        if (context.devices.length >= MAX_DEVICES) throw new Error(`device limit: a user has at most ${MAX_DEVICES} devices`);
        return { devices: [...context.devices, deviceId] };
      }),
      removeDevice: assign(({ context, event }) => {
        const { deviceId } = event as EventOf<'device_removed'>;
        return { devices: context.devices.filter((d) => d !== deviceId) };
      }),
    },
  });

  // The snapshot transition: every subscription state follows the billing standing. Trial, grace
  // period and lapsed move to whichever tier an active subscription pays for; the paying states and
  // the trial start the grace period when the user stops paying (the grace period moves with a new
  // start or reason); a standing that changes no state is only recorded.
  const subscribe = [
    { target: 'premium', guard: 'paysPremium', actions: 'subscribe' },
    { target: 'basic', guard: 'paysBasic', actions: 'subscribe' },
  ] as const;
  const startGrace = { target: 'grace_period', guard: 'stoppedPaying', actions: 'startGrace' } as const;
  const follow = { actions: 'followBilling' } as const;

  return machineSetup.createMachine({
    id: 'user',
    type: 'parallel',
    context: ({ input }) => ({
      userId: input.userId,
      trialEndsAt: input.createdAt + policy.trialMs,
      billing: null,
      graceStartedAt: null,
      graceEndsAt: null,
      graceReason: null,
      crisis: null,
      lastCrisisAt: null,
      devices: [],
    }),
    on: {
      device_registered: { actions: 'addDevice' },
      device_removed: { actions: 'removeDevice' },
    },
    states: {
      subscription: {
        initial: 'trial',
        states: {
          trial: {
            on: {
              billing_changed: [...subscribe, startGrace],
              trial_ended: { target: 'lapsed', guard: 'trialDeadlinePassed', actions: 'lapse' },
            },
          },
          basic: {
            on: { billing_changed: [subscribe[0], startGrace, follow] },
          },
          premium: {
            on: { billing_changed: [subscribe[1], startGrace, follow] },
          },
          grace_period: {
            on: {
              // Still not paying, with a new reason or start: the grace period moves with it.
              billing_changed: [...subscribe, { guard: 'stoppedPaying', actions: 'startGrace' }],
              grace_ended: { target: 'lapsed', guard: 'graceDeadlinePassed', actions: 'lapse' },
            },
          },
          lapsed: {
            on: { billing_changed: [...subscribe, follow] },
          },
        },
      },
      crisis: {
        initial: 'stable',
        states: {
          stable: {
            on: {
              crisis_button: { target: 'active', actions: 'startCrisis' },
              crisis_detected: { target: 'active', actions: 'startCrisis' },
              assessment_completed: { target: 'active', guard: 'signalsCrisis', actions: 'startCrisis' },
            },
          },
          active: {
            on: {
              crisis_button: { actions: 'raiseCrisis' },
              crisis_detected: { actions: 'raiseCrisis' },
              assessment_completed: { guard: 'signalsCrisis', actions: 'raiseCrisis' },
              crisis_resolved: [
                { target: 'stable', guard: 'resolvedByClinician', actions: 'endCrisis' },
                { target: 'stable', guard: 'checkInAfterHold', actions: 'endCrisis' },
              ],
            },
          },
        },
      },
    },
  });
}

/** The user statechart with the default policy. */
export const userMachine = createUserMachine();

/** The user statechart's type. */
export type UserMachine = ReturnType<typeof createUserMachine>;
/** A snapshot of the user statechart. */
export type UserSnapshot = SnapshotFrom<UserMachine>;
/** A running user statechart. */
export type UserActorRef = ActorRefFrom<UserMachine>;
