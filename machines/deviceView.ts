/**
 * What a snapshot of the user statechart means for the user's devices: the pure derivation of the
 * entitlements every device applies (tier, status, grace period, crisis, features, sync policy).
 * The runtime adds addressing, the version and the safety content to make the wire device view.
 */
import type { CrisisLevel } from './crisis.ts';
import {
  ALL_FEATURES,
  CRISIS_SYNC,
  enabledFeatures,
  STATE_SYNC,
  type Feature,
  type SubscriptionState,
  type SyncPolicy,
} from './features.ts';
import type { GraceReason, UserSnapshot } from './userMachine.ts';

/** Billing status as a device may know it: no amounts, no card, no invoice. */
export type SubscriptionStatus = 'trialing' | 'active' | 'past_due' | 'canceled' | 'lapsed';

/** The emergency presentation a device switches to while a crisis is active. */
export interface EmergencyPresentation {
  hotlineQuickDial: boolean;
  contactsVisible: boolean;
  safetyPlanAccessible: boolean;
  crisisButtonHighlighted: boolean;
}

/** The entitlements derived from one snapshot of a user's statechart. */
export interface UserView {
  tier: SubscriptionState;
  status: SubscriptionStatus;
  trialEndsAt: number | null;
  gracePeriod: { endsAt: number; reason: GraceReason } | null;
  crisis: { active: boolean; level: CrisisLevel | null; since: number | null; presentation: EmergencyPresentation };
  features: { enabled: Feature[]; disabled: Feature[] };
  sync: SyncPolicy;
}

const STATUS: Readonly<Record<SubscriptionState, SubscriptionStatus>> = {
  trial: 'trialing',
  basic: 'active',
  premium: 'active',
  grace_period: 'past_due',
  lapsed: 'lapsed',
};

/** The subscription state of a snapshot. */
export function subscriptionStateOf(snapshot: UserSnapshot): SubscriptionState {
  return (snapshot.value as { subscription: SubscriptionState }).subscription;
}

/** Whether a snapshot is in the crisis region's `active` state. */
export function inCrisis(snapshot: UserSnapshot): boolean {
  return snapshot.matches({ crisis: 'active' });
}

/** Derives the device-facing entitlements from a snapshot of the user statechart. */
export function deriveView(snapshot: UserSnapshot): UserView {
  const { context } = snapshot;
  const tier = subscriptionStateOf(snapshot);
  const crisisActive = inCrisis(snapshot);
  const enabled = enabledFeatures(tier, crisisActive);
  const grace = tier === 'grace_period' && context.graceEndsAt !== null && context.graceReason !== null;
  return {
    tier,
    status: grace && context.graceReason === 'canceled' ? 'canceled' : STATUS[tier],
    trialEndsAt: tier === 'trial' ? context.trialEndsAt : null,
    gracePeriod: grace ? { endsAt: context.graceEndsAt!, reason: context.graceReason! } : null,
    crisis: {
      active: crisisActive,
      level: crisisActive ? context.crisis!.level : null,
      since: crisisActive ? context.crisis!.since : null,
      presentation: {
        hotlineQuickDial: crisisActive,
        contactsVisible: crisisActive,
        safetyPlanAccessible: crisisActive,
        crisisButtonHighlighted: crisisActive,
      },
    },
    features: { enabled, disabled: ALL_FEATURES.filter((f) => !enabled.includes(f)) },
    sync: crisisActive ? CRISIS_SYNC : STATE_SYNC[tier],
  };
}
