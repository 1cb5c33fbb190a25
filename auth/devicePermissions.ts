/**
 * What a device may do once the auth callout admits it, as the user JWT it answers with states
 * it: subscribe to its own user's view and its own inbox, read its own user's last view by direct
 * get, and press its own user's crisis button (on the crisis lane, and to its user's other devices
 * on the press subject, which it also hears). Nothing else: every other publish or subscribe is a
 * permission violation at the server. Pure.
 */
import type { Permissions } from '@nats-io/jwt';
import { inboxPrefix } from '../transport/credentials.ts';
import type { Topology } from '../transport/topology.ts';
import type { Device } from './deviceToken.ts';

/**
 * Longest a device's session lasts before it must come back through the callout: a device whose
 * removal reached no callout that admitted it (one restarted meanwhile) is refused by then.
 */
export const DEVICE_SESSION_S = 10 * 60;

/** The account the callout admits devices into (nats-accounts.conf, `auth/roles.ts`). */
export const DEVICES_ACCOUNT = 'DEVICES';

/** The publish and subscribe allow-lists of a device. */
export function devicePermissions(t: Topology, device: Device): Required<Pick<Permissions, 'pub' | 'sub'>> {
  const view = t.subjects.view(device.userId);
  const press = t.subjects.press(device.userId);
  return {
    pub: { allow: [`$JS.API.DIRECT.GET.${t.streams.views}.${view}`, t.subjects.event(device.userId, 'crisis_button'), press] },
    sub: { allow: [view, press, `${inboxPrefix(device)}.>`] },
  };
}

/** When a device's session ends (seconds since the epoch): its token's expiry, or {@link DEVICE_SESSION_S} from now if sooner. */
export function sessionExpiry(tokenExpiresAt: number, nowS: number): number {
  return Math.min(tokenExpiresAt, nowS + DEVICE_SESSION_S);
}

/** The name of a device's user JWT, as the server's monitoring shows it. */
export function deviceUserName(device: Device): string {
  return `${device.userId}/${device.deviceId}`;
}
