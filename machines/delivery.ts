/**
 * When a user's new view goes out: the seed's sync optimizer made concrete, as pure decisions.
 * Premium and crisis views go at once; basic and trial views are coalesced over a window (trial's
 * also compressed); a change that takes features away or touches a crisis never waits.
 */
import type { UserView } from './deviceView.ts';
import type { SyncFrequency } from './features.ts';

/** How views of each sync frequency are delivered. */
export type DeliveryPolicy = Readonly<Record<SyncFrequency, { coalesceMs: number; compress: boolean }>>;

/** Default delivery: realtime at once, frequent (grace) nearly so, standard and background coalesced. */
export const DEFAULT_DELIVERY: DeliveryPolicy = {
  realtime: { coalesceMs: 0, compress: false },
  frequent: { coalesceMs: 50, compress: false },
  standard: { coalesceMs: 250, compress: false },
  background: { coalesceMs: 1000, compress: true },
};

/** Whether a view change takes features away: the seed's "preserve therapeutic access" moments. */
export function reducesAccess(prev: UserView, next: UserView): boolean {
  return prev.features.enabled.some((f) => !next.features.enabled.includes(f));
}

/** Whether a view change must go out at once whatever the tier's window. */
export function isUrgent(prev: UserView, next: UserView): boolean {
  return prev.crisis.active || next.crisis.active || prev.tier !== next.tier || reducesAccess(prev, next);
}

/** How long the runtime may hold a view change to coalesce it with the next ones. */
export function coalesceDelay(prev: UserView, next: UserView, policy: DeliveryPolicy = DEFAULT_DELIVERY): number {
  return isUrgent(prev, next) ? 0 : policy[next.sync.frequency].coalesceMs;
}

/** Whether views of this user are compressed on the wire (never a crisis view). */
export function compressView(view: UserView, policy: DeliveryPolicy = DEFAULT_DELIVERY): boolean {
  return !view.crisis.active && policy[view.sync.frequency].compress;
}
