/** Domain events for integration tests: unique ids, the current time, typed fields per event type. */
import { randomUUID } from 'node:crypto';
import type { EventOf, UserEventType } from '../../machines/events.ts';

type Own<T extends UserEventType> = Omit<EventOf<T>, 'type' | 'id' | 'userId' | 'at'> & Partial<Pick<EventOf<T>, 'id' | 'at'>>;

let last = 0;

/**
 * An event of `type` for `userId`, now, with a fresh id unless `fields` give them. Times strictly
 * increase, as two facts a producer publishes one after the other have: payment facts are ordered
 * by time (`machines/billing.ts`), and two in the same millisecond would fall to the same-second rule.
 */
export function event<T extends UserEventType>(
  userId: string,
  type: T,
  ...[fields]: {} extends Own<T> ? [fields?: Own<T>] : [fields: Own<T>]
): EventOf<T> {
  last = Math.max(Date.now(), last + 1);
  return { id: `${type}-${randomUUID()}`, at: last, ...fields, userId, type } as unknown as EventOf<T>;
}

/** Registration events for `devices` of a user. */
export function registerDevices(userId: string, devices: string[]): EventOf<'device_registered'>[] {
  return devices.map((deviceId) => event(userId, 'device_registered', { deviceId, platform: 'ios' }));
}

/** The four crisis features (DESIGN §3). */
export const CRISIS_FEATURES = ['crisis_button', 'hotline_access', 'safety_plan', 'emergency_contacts'];
