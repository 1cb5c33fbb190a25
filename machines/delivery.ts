/**
 * When a user's new view goes out: the seed's sync optimizer made concrete, as pure decisions.
 * Premium and crisis views go at once; basic and trial views are coalesced over a window (trial's
 * also compressed); a change that takes features away or touches a crisis never waits.
 */
import type { UserView } from './deviceView.ts';
import type { SubscriptionState, SyncFrequency } from './features.ts';

/** How views of each sync frequency are delivered. */
export type DeliveryPolicy = Readonly<Record<SyncFrequency, { coalesceMs: number; compress: boolean }>>;

/** Default delivery: realtime at once, frequent (grace) nearly so, standard and background coalesced. */
export const DEFAULT_DELIVERY: DeliveryPolicy = {
  realtime: { coalesceMs: 0, compress: false },
  frequent: { coalesceMs: 50, compress: false },
  standard: { coalesceMs: 250, compress: false },
  background: { coalesceMs: 1000, compress: true },
};

/** Subscription states from most to least access; trial sits between paying and not paying. */
const ACCESS_RANK: Readonly<Record<SubscriptionState, number>> = { premium: 4, basic: 3, trial: 2, grace_period: 1, lapsed: 0 };

/**
 * Whether a view change moves the user to a tier with less access (downgrade, grace period, lapse):
 * the seed's "preserve therapeutic access" moments, timed against their 500 ms budget.
 */
export function isDowngrade(prev: UserView, next: UserView): boolean {
  return ACCESS_RANK[next.tier] < ACCESS_RANK[prev.tier];
}

/** Whether a view change must go out at once whatever the tier's window: a crisis or a new tier. */
export function isUrgent(prev: UserView, next: UserView): boolean {
  return prev.crisis.active || next.crisis.active || prev.tier !== next.tier;
}

/** How long the runtime may hold a view change to coalesce it with the next ones. */
export function coalesceDelay(prev: UserView, next: UserView, policy: DeliveryPolicy = DEFAULT_DELIVERY): number {
  return isUrgent(prev, next) ? 0 : policy[next.sync.frequency].coalesceMs;
}

/** Whether views of this user are compressed on the wire (never a crisis view). */
export function compressView(view: UserView, policy: DeliveryPolicy = DEFAULT_DELIVERY): boolean {
  return !view.crisis.active && policy[view.sync.frequency].compress;
}
