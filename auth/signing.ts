/**
 * NATS JWTs read and checked with Node's own Ed25519 (the key pairs of `transport/nkeySigning.ts`):
 * the callout checks a device token for every device that signs in, on the event loop of the
 * runtime node beside it, where the JWT library's own check (tweetnacl) took some 30 ms.
 */
import type { ClaimsData } from '@nats-io/jwt';
import type { KeyPair } from '@nats-io/nkeys';

/** The JWT algorithm of NATS v2 JWTs: Ed25519 over `header.claims`. */
const NKEY_ALGORITHM = 'ed25519-nkey';

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
