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
import type { EventOf, UserEvent } from './events.ts';
import type { PaidTier } from './features.ts';
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
  /** The tier the user last paid for: where a recovered payment returns them. */
  paidTier: PaidTier | null;
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

/** Input that creates a user: the trial starts at `createdAt`. */
export interface UserInput {
  userId: string;
  createdAt: number;
}

const crisisOf = (event: UserEvent): ActiveCrisis | null => {
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

const tierOf = (event: UserEvent): PaidTier | null =>
  event.type === 'subscription_activated' || event.type === 'plan_changed' ? event.tier : null;

/** Builds the user statechart for a policy (durations); see {@link userMachine} for the default. */
export function createUserMachine(policy: UserPolicy = DEFAULT_POLICY) {
  const recentCrisis = (context: UserContext, at: number) =>
    context.crisis !== null || (context.lastCrisisAt !== null && at - context.lastCrisisAt <= policy.recentCrisisMs);

  const graceLength = (context: UserContext, at: number) =>
    recentCrisis(context, at) ? policy.graceAfterCrisisMs : policy.graceMs;

  const grace = (context: UserContext, at: number, reason: GraceReason) => ({
    graceStartedAt: at,
    graceEndsAt: at + graceLength(context, at),
    graceReason: reason,
  });

  const machineSetup = setup({
    types: {
      context: {} as UserContext,
      events: {} as UserEvent,
      input: {} as UserInput,
    },
    guards: {
      choosesPremium: ({ event }) => tierOf(event) === 'premium',
      choosesBasic: ({ event }) => tierOf(event) === 'basic',
      // A paid invoice restores the tier only after a failed payment, not after a cancellation.
      recoversPremium: ({ context }) => context.graceReason === 'payment_failed' && context.paidTier === 'premium',
      recoversBasic: ({ context }) => context.graceReason === 'payment_failed' && context.paidTier === 'basic',
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
        paidTier: tierOf(event),
        trialEndsAt: null,
        graceStartedAt: null,
        graceEndsAt: null,
        graceReason: null,
      })),
      restorePaidTier: assign({ graceStartedAt: null, graceEndsAt: null, graceReason: null }),
      graceForFailedPayment: assign(({ context, event }) => grace(context, event.at, 'payment_failed')),
      graceForCancellation: assign(({ context, event }) => grace(context, event.at, 'canceled')),
      markCanceled: assign({ graceReason: 'canceled' as const }),
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
        return { devices: context.devices.includes(deviceId) ? context.devices : [...context.devices, deviceId] };
      }),
      removeDevice: assign(({ context, event }) => {
        const { deviceId } = event as EventOf<'device_removed'>;
        return { devices: context.devices.filter((d) => d !== deviceId) };
      }),
    },
  });

  // Trial, grace period and lapsed all move to whichever tier a new or changed subscription pays for.
  const toChosenTier = [
    { target: 'premium', guard: 'choosesPremium', actions: 'subscribe' },
    { target: 'basic', guard: 'choosesBasic', actions: 'subscribe' },
  ] as const;

  return machineSetup.createMachine({
    id: 'user',
    type: 'parallel',
    context: ({ input }) => ({
      userId: input.userId,
      trialEndsAt: input.createdAt + policy.trialMs,
      paidTier: null,
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
              subscription_activated: toChosenTier,
              plan_changed: toChosenTier,
              trial_ended: { target: 'lapsed', guard: 'trialDeadlinePassed', actions: 'lapse' },
            },
          },
          basic: {
            on: {
              subscription_activated: { target: 'premium', guard: 'choosesPremium', actions: 'subscribe' },
              plan_changed: { target: 'premium', guard: 'choosesPremium', actions: 'subscribe' },
              subscription_canceled: { target: 'grace_period', actions: 'graceForCancellation' },
              payment_failed: { target: 'grace_period', actions: 'graceForFailedPayment' },
            },
          },
          premium: {
            on: {
              subscription_activated: { target: 'basic', guard: 'choosesBasic', actions: 'subscribe' },
              plan_changed: { target: 'basic', guard: 'choosesBasic', actions: 'subscribe' },
              subscription_canceled: { target: 'grace_period', actions: 'graceForCancellation' },
              payment_failed: { target: 'grace_period', actions: 'graceForFailedPayment' },
            },
          },
          grace_period: {
            on: {
              payment_recovered: [
                { target: 'premium', guard: 'recoversPremium', actions: 'restorePaidTier' },
                { target: 'basic', guard: 'recoversBasic', actions: 'restorePaidTier' },
              ],
              subscription_activated: toChosenTier,
              plan_changed: toChosenTier,
              subscription_canceled: { actions: 'markCanceled' },
              grace_ended: { target: 'lapsed', guard: 'graceDeadlinePassed', actions: 'lapse' },
            },
          },
          lapsed: {
            on: {
              subscription_activated: toChosenTier,
              plan_changed: toChosenTier,
            },
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
