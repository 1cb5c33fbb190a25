/**
 * Device tokens (`auth/deviceToken.ts`), without a server: a token signed with the device-token key
 * verifies to its user, device, id and expiry; anything else is refused with a typed reason: a
 * token signed by another key, altered, of another kind, not a JWT at all (`bad_token`), or past
 * its expiry (`expired`). Ids that are not subject tokens are never signed.
 */
import { encodeUser } from '@nats-io/jwt';
import { createAccount, createUser } from '@nats-io/nkeys';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_DEVICE_TOKEN_TTL_S,
  DeviceTokenError,
  deviceTokenKey,
  deviceTokenTtlFromEnv,
  signDeviceToken,
  verifyDeviceToken,
  type DeviceTokenProblem,
} from '../../auth/deviceToken.ts';
import { seedKeyPair } from '../../transport/nkeySigning.ts';
import { waitFor } from '../support/processes.ts';

const keys = seedKeyPair(new TextDecoder().decode(createAccount().getSeed()));
const device = { userId: 'user-1', deviceId: 'phone' };
const nowS = () => Math.floor(Date.now() / 1000);

/** The reason `verifyDeviceToken` refuses a token with. */
function refusal(token: string, at?: number): DeviceTokenProblem | undefined {
  try {
    verifyDeviceToken(token, keys, at);
    return undefined;
  } catch (err) {
    expect(err).toBeInstanceOf(DeviceTokenError);
    return (err as DeviceTokenError).reason;
  }
}

/** A JWT with its claims (the middle part) replaced by `edit` of them, signature kept. */
function altered(token: string, edit: (claims: Record<string, unknown>) => void): string {
  const [header, body, signature] = token.split('.') as [string, string, string];
  const claims = JSON.parse(Buffer.from(body, 'base64url').toString()) as Record<string, unknown>;
  edit(claims);
  return [header, Buffer.from(JSON.stringify(claims)).toString('base64url'), signature].join('.');
}

describe('device tokens', () => {
  it('a signed token verifies to its device, id and expiry', async () => {
    const before = nowS();
    const { token, claims } = await signDeviceToken(keys, device, 3_600);
    const verified = verifyDeviceToken(token, keys);
    expect(verified).toEqual(claims);
    expect(verified).toMatchObject({ userId: 'user-1', deviceId: 'phone' });
    expect(verified.issuedAt).toBeGreaterThanOrEqual(before);
    expect(verified.expiresAt).toBeGreaterThanOrEqual(before + 3_600);
    expect(verified.expiresAt).toBeLessThanOrEqual(nowS() + 3_600);
    expect(verified.tokenId).toMatch(/.{16,}/);
    expect(deviceTokenKey(device)).toBe('user-1.phone');
  });

  it('two tokens of one device issued in the same second have different ids', async () => {
    // A pair signed across a second's boundary proves nothing: sign again (rarely needed).
    const pair = await waitFor(async () => {
      const [a, b] = await Promise.all([signDeviceToken(keys, device, 60), signDeviceToken(keys, device, 60)]);
      return a.claims.issuedAt === b.claims.issuedAt ? { a, b } : undefined;
    }, 'two tokens signed in the same second');
    expect(pair.a.claims.tokenId).not.toBe(pair.b.claims.tokenId);
    expect(pair.a.token).not.toBe(pair.b.token);
  });

  it('expires at its exp, not before', async () => {
    const { token, claims } = await signDeviceToken(keys, device, 60);
    expect(refusal(token, claims.expiresAt - 1)).toBeUndefined();
    expect(refusal(token, claims.expiresAt)).toBe('expired');
    expect(refusal((await signDeviceToken(keys, device, -1)).token)).toBe('expired');
  });

  it('refuses a token signed by another key, an altered one, another kind of JWT, and garbage', async () => {
    const { token } = await signDeviceToken(keys, device, 60);
    expect(refusal((await signDeviceToken(createAccount(), device, 60)).token)).toBe('bad_token');
    // Another user's id in the claims: the signature no longer matches.
    expect(refusal(altered(token, (c) => ((c.nats as Record<string, unknown>).userId = 'user-2')))).toBe('bad_token');
    // Our key's signature on a user JWT (what the callout signs) is not a device token.
    expect(refusal(await encodeUser('x', createUser(), keys, {}, { exp: nowS() + 60 }))).toBe('bad_token');
    for (const garbage of ['', 'token', 'a.b.c', `${token}x`, token.split('.').slice(0, 2).join('.')]) expect(refusal(garbage)).toBe('bad_token');
  });

  it('signs no id that is not one subject token', async () => {
    for (const bad of [{ userId: 'a.b', deviceId: 'phone' }, { userId: 'user-1', deviceId: '*' }, { userId: '>', deviceId: 'x' }, { userId: '', deviceId: 'x' }]) {
      await expect(signDeviceToken(keys, bad, 60)).rejects.toThrow(/not a user or device id/);
    }
  });

  it('lifetime: FM_DEVICE_TOKEN_TTL_S, else 30 days; anything but a positive integer is refused', () => {
    expect(deviceTokenTtlFromEnv({})).toBe(DEFAULT_DEVICE_TOKEN_TTL_S);
    expect(DEFAULT_DEVICE_TOKEN_TTL_S).toBe(30 * 24 * 3600);
    expect(deviceTokenTtlFromEnv({ FM_DEVICE_TOKEN_TTL_S: '600' })).toBe(600);
    for (const bad of ['0', '-5', '1.5', 'soon']) expect(() => deviceTokenTtlFromEnv({ FM_DEVICE_TOKEN_TTL_S: bad })).toThrow(/positive integer/);
  });
});
