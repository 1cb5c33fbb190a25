/**
 * What each subscription state and the crisis override give a user: the seed's tier table made
 * exact, with its one inconsistency fixed (crisis features are on in every state, not only in some).
 */

/** Crisis features: on in every reachable state, whatever the user pays. */
export const CRISIS_FEATURES = ['crisis_button', 'hotline_access', 'safety_plan', 'emergency_contacts'] as const;

/** Therapeutic baseline: on in every state, so no payment event cuts a user off from care. */
export const BASELINE_FEATURES = ['basic_check_in', 'phq9_assessment', 'gad7_assessment', 'breathing_exercises'] as const;

/** What premium adds (the seed's tier table). */
const PREMIUM_FEATURES = [
  'advanced_analytics',
  'custom_exercises',
  'priority_support',
  'real_time_sync',
  'cross_device_sync',
  'advanced_crisis_features',
] as const;

/** Every feature a device can be told about, in a stable order. */
export const ALL_FEATURES = [...CRISIS_FEATURES, ...BASELINE_FEATURES, 'trial_features', 'mood_tracking', 'progress_charts', ...PREMIUM_FEATURES] as const;

/** A feature flag name. */
export type Feature = (typeof ALL_FEATURES)[number];

/** The subscription region's states, which are also the tiers a device sees. */
export const SUBSCRIPTION_STATES = ['trial', 'basic', 'premium', 'grace_period', 'lapsed'] as const;

/** A subscription state (the device view's `tier`). */
export type SubscriptionState = (typeof SUBSCRIPTION_STATES)[number];

/** The tiers a price can buy. */
export const PAID_TIERS = ['basic', 'premium'] as const;

/** A tier a subscription pays for. */
export type PaidTier = (typeof PAID_TIERS)[number];

const ALWAYS: readonly Feature[] = [...CRISIS_FEATURES, ...BASELINE_FEATURES];

/** Features each subscription state adds to the crisis features and the baseline. */
export const STATE_FEATURES: Readonly<Record<SubscriptionState, readonly Feature[]>> = {
  trial: ['trial_features'],
  basic: ['mood_tracking', 'progress_charts'],
  premium: PREMIUM_FEATURES,
  grace_period: ['mood_tracking'],
  lapsed: [],
};

/** Extra features an active crisis adds, over any tier. */
export const CRISIS_OVERRIDE_FEATURES: readonly Feature[] = ['advanced_crisis_features'];

/** How often a device syncs its data. */
export type SyncFrequency = 'realtime' | 'frequent' | 'standard' | 'background';

/** The seed's sync priorities, highest first. */
export const SYNC_PRIORITIES = [
  'CRISIS_EMERGENCY',
  'PREMIUM_REALTIME',
  'THERAPEUTIC_ACTIVE',
  'STANDARD',
  'BACKGROUND',
] as const;

/** A sync priority. */
export type SyncPriority = (typeof SYNC_PRIORITIES)[number];

/** The sync policy a device follows. `dataLimitMb: null` means unlimited. */
export interface SyncPolicy {
  frequency: SyncFrequency;
  dataLimitMb: number | null;
  priority: SyncPriority;
}

/** Sync policy per subscription state (seed's table; lapsed keeps the trial's background sync). */
export const STATE_SYNC: Readonly<Record<SubscriptionState, SyncPolicy>> = {
  trial: { frequency: 'background', dataLimitMb: 10, priority: 'BACKGROUND' },
  basic: { frequency: 'standard', dataLimitMb: 50, priority: 'STANDARD' },
  premium: { frequency: 'realtime', dataLimitMb: null, priority: 'PREMIUM_REALTIME' },
  grace_period: { frequency: 'frequent', dataLimitMb: 25, priority: 'THERAPEUTIC_ACTIVE' },
  lapsed: { frequency: 'background', dataLimitMb: 10, priority: 'BACKGROUND' },
};

/** Sync policy while a crisis is active: overrides every tier. */
export const CRISIS_SYNC: SyncPolicy = { frequency: 'realtime', dataLimitMb: null, priority: 'CRISIS_EMERGENCY' };

/** Features enabled for a subscription state, with or without the crisis override, in stable order. */
export function enabledFeatures(state: SubscriptionState, inCrisis: boolean): Feature[] {
  const on = new Set<Feature>([...ALWAYS, ...STATE_FEATURES[state], ...(inCrisis ? CRISIS_OVERRIDE_FEATURES : [])]);
  return ALL_FEATURES.filter((f) => on.has(f));
}
