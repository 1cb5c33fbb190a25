/**
 * What a snapshot of the user statechart means for the user's devices: the pure derivation of the
 * entitlements every device applies (tier, status, grace period, crisis, features, sync policy).
 * The runtime adds addressing, the version and the safety content to make the wire device view.
 */
import { BUTTON_CRISIS_LEVEL, maxLevel, type CrisisLevel } from './crisis.ts';
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
  crisis: {
    active: boolean;
    level: CrisisLevel | null;
    since: number | null;
    /**
     * Up to when the user's crisis signals are accounted for (event time): while a crisis is
     * active, its latest signal; after one, the resolution that ended it; `null` before any
     * crisis. A device that heard a press before the runtime applied it shows a provisional
     * crisis until a view accounts for the press's time ({@link withProvisionalCrisis}).
     */
    signalsUntil: number | null;
    presentation: EmergencyPresentation;
  };
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
  const crisis = inCrisis(snapshot) ? context.crisis! : null;
  const grace = tier === 'grace_period' && context.graceEndsAt !== null && context.graceReason !== null;
  return {
    tier,
    status: grace && context.graceReason === 'canceled' ? 'canceled' : STATUS[tier],
    trialEndsAt: tier === 'trial' ? context.trialEndsAt : null,
    gracePeriod: grace ? { endsAt: context.graceEndsAt!, reason: context.graceReason! } : null,
    ...crisisEntitlements(tier, crisis, crisis ? crisis.lastSignalAt : context.lastCrisisAt),
  };
}

/** What a crisis (or none) means for a tier's entitlements: the crisis, features and sync policy of a view. */
function crisisEntitlements(
  tier: SubscriptionState,
  crisis: { level: CrisisLevel; since: number } | null,
  signalsUntil: number | null,
): Pick<UserView, 'crisis' | 'features' | 'sync'> {
  const active = crisis !== null;
  const enabled = enabledFeatures(tier, active);
  return {
    crisis: {
      active,
      level: crisis?.level ?? null,
      since: crisis?.since ?? null,
      signalsUntil,
      presentation: { hotlineQuickDial: active, contactsVisible: active, safetyPlanAccessible: active, crisisButtonHighlighted: active },
    },
    features: { enabled, disabled: ALL_FEATURES.filter((f) => !enabled.includes(f)) },
    sync: active ? CRISIS_SYNC : STATE_SYNC[tier],
  };
}

/** A crisis press a device heard (its own, or another device's of its user) before a stored view accounted for it. */
export interface HeardPress {
  /** The press's event id. */
  id: string;
  /** The press's event time. */
  at: number;
}

/** Whether a view accounts for a press: its crisis signals are accounted for up to the press's time or later. */
export function accountsFor(view: UserView, press: HeardPress): boolean {
  return view.crisis.signalsUntil !== null && view.crisis.signalsUntil >= press.at;
}

/**
 * The view a device shows while presses it heard are not yet accounted for: the stored view with
 * the crisis a button press starts (or raises) over it, as the statechart will derive it once it
 * applies them. Always safe to show early: a crisis only adds features, and only a person ends one.
 * `signalsUntil` stays the stored view's, so a later stored view is still compared with the presses.
 */
export function withProvisionalCrisis<V extends UserView>(view: V, presses: readonly HeardPress[]): V {
  if (presses.length === 0) return view;
  const { crisis } = view;
  const provisional = crisis.active
    ? { level: maxLevel(crisis.level!, BUTTON_CRISIS_LEVEL), since: crisis.since! }
    : { level: BUTTON_CRISIS_LEVEL, since: Math.min(...presses.map((p) => p.at)) };
  return { ...view, ...crisisEntitlements(view.tier, provisional, crisis.signalsUntil) };
}
