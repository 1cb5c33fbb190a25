/**
 * Signing with Node's Ed25519 (`transport/nkeySigning.ts`, `auth/signing.ts`) is the nkey's own signing: its signatures verify
 * with nkeys.js's key pair of the same seed and the other way round, it names the same public key,
 * and a JWT it signs reads back only with the key that signed it, unaltered.
 */
import { encodeGeneric } from '@nats-io/jwt';
import { createAccount, createUser, fromSeed } from '@nats-io/nkeys';
import { describe, expect, it } from 'vitest';
import { readJwt, verifyJwt } from '../../auth/signing.ts';
import { seedKeyPair } from '../../transport/nkeySigning.ts';

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

describe("signing with Node's Ed25519", () => {
  it('signs as nkeys.js does, for account and user seeds', () => {
    for (const nkey of [createAccount(), createUser(), createAccount()]) {
      const native = seedKeyPair(text(nkey.getSeed()));
      const data = new TextEncoder().encode(`some claims ${nkey.getPublicKey()}`);
      expect(native.getPublicKey()).toBe(nkey.getPublicKey());
      expect(Buffer.from(native.sign(data))).toEqual(Buffer.from(nkey.sign(data)));
      expect(nkey.verify(data, native.sign(data))).toBe(true);
      expect(native.verify(data, nkey.sign(data))).toBe(true);
      expect(native.verify(new TextEncoder().encode('other claims'), nkey.sign(data))).toBe(false);
      expect(text(native.getPrivateKey())).toBe(text(fromSeed(nkey.getSeed()).getPrivateKey()));
    }
  });

  it('a JWT it signs reads back with its key only, and not once altered', async () => {
    const key = seedKeyPair(text(createAccount().getSeed()));
    const token = await encodeGeneric('n', key, 'test', { value: 1 }, {});
    expect(verifyJwt<{ value: number }>(token, key).nats.value).toBe(1);
    expect(readJwt<{ value: number }>(token).claims.nats.value).toBe(1);
    expect(() => verifyJwt(token, seedKeyPair(text(createAccount().getSeed())))).toThrow(/another key/);
    const [h, , s] = token.split('.');
    const forged = Buffer.from(JSON.stringify({ ...readJwt(token).claims, name: 'm' })).toString('base64url');
    expect(() => verifyJwt(`${h}.${forged}.${s}`, key)).toThrow(/does not verify/);
    expect(() => readJwt('a.b')).toThrow(/not a JWT/);
  });
});
