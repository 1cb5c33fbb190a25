/**
 * NATS JWTs signed and checked with Node's own Ed25519 (OpenSSL). nkeys.js signs with tweetnacl in
 * JavaScript and derives the key again for every signature: some 50 ms a JWT on a loaded two-core
 * machine, and the callout signs two and checks one for every device that signs in, on the event
 * loop of the runtime node beside it. Here a signature takes tens of microseconds.
 */
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import type { ClaimsData } from '@nats-io/jwt';
import { fromSeed, type KeyPair } from '@nats-io/nkeys';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
/** DER of an Ed25519 private key (PKCS#8) up to its 32 raw bytes. */
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
/** The JWT algorithm of NATS v2 JWTs: Ed25519 over `header.claims`. */
const NKEY_ALGORITHM = 'ed25519-nkey';

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

/** A JWT's parts: its claims, and the bytes its signature covers. */
interface ReadJwt<T> {
  claims: ClaimsData<T>;
  signed: Uint8Array;
  signature: Uint8Array;
}

/** Reads a NATS v2 JWT without checking its signature. Throws on anything else. */
export function readJwt<T>(token: string): ReadJwt<T> {
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error('not a JWT');
  const [header, claims, signature] = parts as [string, string, string];
  const json = (part: string) => JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as unknown;
  if ((json(header) as { alg?: unknown }).alg !== NKEY_ALGORITHM) throw new Error('not a NATS v2 JWT');
  return { claims: json(claims) as ClaimsData<T>, signed: Buffer.from(`${header}.${claims}`), signature: Buffer.from(signature, 'base64url') };
}

/** Reads a NATS v2 JWT issued and signed by `issuer`. Throws on anything else. */
export function verifyJwt<T>(token: string, issuer: Pick<KeyPair, 'getPublicKey' | 'verify'>): ClaimsData<T> {
  const { claims, signed, signature } = readJwt<T>(token);
  if (claims.iss !== issuer.getPublicKey()) throw new Error('issued by another key');
  if (!issuer.verify(signed, signature)) throw new Error('signature does not verify');
  return claims;
}
