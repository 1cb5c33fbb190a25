/** The clinician token and the session cookie (pure). */
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { ClinicianAuth, SESSION_COOKIE, SESSION_MS } from '../../viewer/auth.ts';

const request = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;

describe('clinician auth', () => {
  const auth = new ClinicianAuth('s3cret-token');

  it('accepts the token and nothing else', () => {
    expect(auth.tokenMatches('s3cret-token')).toBe(true);
    for (const wrong of ['s3cret-toke', 's3cret-tokenn', 'S3cret-token', '', null, undefined]) expect(auth.tokenMatches(wrong)).toBe(false);
    expect(auth.authorized(request({ authorization: 'Bearer s3cret-token' }))).toBe(true);
    expect(auth.authorized(request({ authorization: 'Bearer nope' }))).toBe(false);
    expect(auth.authorized(request({ authorization: 'Basic s3cret-token' }))).toBe(false);
    expect(auth.authorized(request({}))).toBe(false);
  });

  it('a session cookie: valid for its lifetime, bound to the token, not forgeable', () => {
    const now = Date.now();
    const session = auth.issueSession(now);
    expect(session).not.toContain('s3cret-token');
    expect(auth.sessionValid(session, now + 1_000)).toBe(true);
    expect(auth.sessionValid(session, now + SESSION_MS + 1)).toBe(false);
    expect(auth.sessionValid(`${now + 1}.${session.split('.')[1]}`, now)).toBe(false); // the time is signed
    expect(auth.sessionValid(`${now}.${'A'.repeat(43)}`, now)).toBe(false);
    expect(auth.sessionValid(new ClinicianAuth('s3cret-token').issueSession(now + 10 * 60_000), now)).toBe(false); // from the future
    expect(new ClinicianAuth('another-token').sessionValid(session, now)).toBe(false); // a new token ends sessions
    expect(auth.authorized(request({ cookie: `other=1; ${SESSION_COOKIE}=${auth.issueSession()}` }))).toBe(true);
    expect(auth.authorized(request({ cookie: `${SESSION_COOKIE}=garbage` }))).toBe(false);
    expect(auth.sessionCookie()).toMatch(/; Path=\/viewer; HttpOnly; SameSite=Strict; Max-Age=28800$/);
  });

  it('with no token configured, nothing is accepted', () => {
    const none = new ClinicianAuth(undefined);
    expect(none.configured).toBe(false);
    expect(none.tokenMatches('')).toBe(false);
    expect(none.tokenMatches('undefined')).toBe(false);
    expect(none.authorized(request({ authorization: 'Bearer ' }))).toBe(false);
    expect(new ClinicianAuth('').configured).toBe(false);
  });
});
