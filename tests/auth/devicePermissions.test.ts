/**
 * A device's permissions (`auth/devicePermissions.ts`), pure: exactly its own user's view, its own
 * inbox, its own user's last-view direct get and its own user's crisis button, following the
 * deployment's names; nothing that names another user; a session ends at the token's expiry or
 * ten minutes from now, whichever is sooner.
 */
import { describe, expect, it } from 'vitest';
import { DEVICE_SESSION_S, devicePermissions, deviceUserName, sessionExpiry } from '../../auth/devicePermissions.ts';
import { createTopology } from '../../transport/topology.ts';

const phone = { userId: 'user-a', deviceId: 'phone' };

describe('device permissions', () => {
  it('allow its own view, inbox, last-view direct get, crisis button and press subject, and nothing else', () => {
    expect(devicePermissions(createTopology(), phone)).toEqual({
      pub: { allow: ['$JS.API.DIRECT.GET.FM_VIEWS.fm.view.user-a', 'fm.crisis.user-a.crisis_button', 'fm.press.user-a'] },
      sub: { allow: ['fm.view.user-a', 'fm.press.user-a', '_INBOX.user-a.phone.>'] },
    });
    expect(deviceUserName(phone)).toBe('user-a/phone');
  });

  it("follow the deployment's prefix", () => {
    expect(devicePermissions(createTopology({ prefix: 'st' }), phone)).toEqual({
      pub: { allow: ['$JS.API.DIRECT.GET.ST_VIEWS.st.view.user-a', 'st.crisis.user-a.crisis_button', 'st.press.user-a'] },
      sub: { allow: ['st.view.user-a', 'st.press.user-a', '_INBOX.user-a.phone.>'] },
    });
  });

  it('name no other user, and no wildcard but under its own inbox', () => {
    const { pub, sub } = devicePermissions(createTopology(), { userId: 'user-b', deviceId: 'tablet' });
    const subjects = [...pub.allow!, ...sub.allow!];
    expect(subjects.every((s) => s.includes('user-b'))).toBe(true);
    expect(subjects.some((s) => s.includes('user-a'))).toBe(false);
    expect(subjects.filter((s) => /[*>]/.test(s))).toEqual(['_INBOX.user-b.tablet.>']);
  });

  it('a session ends at the token expiry or DEVICE_SESSION_S from now, whichever is sooner', () => {
    expect(DEVICE_SESSION_S).toBe(600);
    expect(sessionExpiry(1_000_000, 500_000)).toBe(500_600);
    expect(sessionExpiry(500_100, 500_000)).toBe(500_100);
  });
});
