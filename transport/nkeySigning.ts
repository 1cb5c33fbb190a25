/**
 * An nkey seed's key pair that signs and checks with Node's own Ed25519 (OpenSSL). nkeys.js signs
 * with tweetnacl in JavaScript and derives the key again for every signature: some 50 ms a
 * signature on a loaded two-core machine, paid by every role's sign-in (the server's nonce) and by
 * the auth callout for every device. Here a signature takes tens of microseconds.
 */
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import { encode, fromSeed, type KeyPair } from '@nats-io/nkeys';
import type { Authenticator } from '@nats-io/transport-node';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
/** DER of an Ed25519 private key (PKCS#8) up to its 32 raw bytes. */
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');

/** The bytes of an nkey's base32 text (no padding). */
function base32(text: string): Buffer {
  const bytes: number[] = [];
  let value = 0;
  let bits = 0;
  for (const c of text) {
    value = ((value << 5) | BASE32.indexOf(c)) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((value >> bits) & 0xff);
    }
  }
  return Buffer.from(bytes);
}

/**
 * The key pair of an nkey seed (`SA…`, `SU…`, as the secrets directory holds them): nkeys.js's own
 * for everything but signing and checking, which Node does. Its public key is derived once.
 */
export function seedKeyPair(seed: string): KeyPair {
  // nkeys.js checks the seed (prefix, checksum); its two prefix bytes precede the 32 raw bytes.
  const nkey = fromSeed(new TextEncoder().encode(seed));
  const publicKey = nkey.getPublicKey();
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, base32(seed).subarray(2, 34)]), format: 'der', type: 'pkcs8' });
  const checker = createPublicKey(privateKey);
  let privateText: Uint8Array | undefined;
  return {
    getPublicKey: () => publicKey,
    // The JWT library asks for it before every signature, only to see that there is one.
    getPrivateKey: () => (privateText ??= nkey.getPrivateKey()),
    getSeed: () => nkey.getSeed(),
    sign: (input) => sign(null, input, privateKey),
    verify: (input, signature) => verify(null, input, checker, signature),
    clear: () => nkey.clear(),
    seal: (input, recipient, nonce) => nkey.seal(input, recipient, nonce),
    open: (message, sender) => nkey.open(message, sender),
  };
}

/** Key pairs by seed: nkeys.js derives the public key with tweetnacl, some 10 ms, so once per process. */
const keyPairs = new Map<string, KeyPair>();

/** nats.js's `nkeyAuthenticator`, signing the server's nonce with {@link seedKeyPair}. */
export function nkeySeedAuthenticator(seed: string): Authenticator {
  let kp = keyPairs.get(seed);
  if (!kp) keyPairs.set(seed, (kp = seedKeyPair(seed)));
  return (nonce?: string) => ({ nkey: kp.getPublicKey(), sig: nonce ? encode(kp.sign(new TextEncoder().encode(nonce))) : '' });
}
