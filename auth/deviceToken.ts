/**
 * Device tokens: what a device presents when it connects (the NATS `auth_token`), issued when it is
 * registered. A token is a JWT naming the user and the device, signed with the device-token
 * account key of the secrets directory; the auth callout (`auth/callout.ts`) checks it against
 * that key's public half and against the device's current token id in the `fm_device_tokens`
 * bucket, so issuing a new token (a rotation) refuses the old one at its next connect, and
 * removing the device (the entry deleted) refuses both.
 */
import { randomBytes } from 'node:crypto';
import type { KV } from '@nats-io/kv';
import { encodeGeneric, type ClaimsData } from '@nats-io/jwt';
import type { KeyPair } from '@nats-io/nkeys';
import { SubjectToken } from '../machines/events.ts';
import { readSecret, SECRET_FILES } from '../transport/credentials.ts';
import { seedKeyPair } from '../transport/nkeySigning.ts';
import { verifyJwt } from './signing.ts';

/** How long a device token is valid when `FM_DEVICE_TOKEN_TTL_S` does not say: 30 days. */
export const DEFAULT_DEVICE_TOKEN_TTL_S = 30 * 24 * 60 * 60;

/** The JWT's type and audience: a device token is no NATS user, account or authorization JWT. */
const TOKEN_TYPE = 'fullmind_device_token';
const TOKEN_AUDIENCE = 'fullmind-sync';

/** One device of one user. */
export interface Device {
  userId: string;
  deviceId: string;
}

/** What a verified token says. Times in seconds since the epoch, as JWTs count them. */
export interface DeviceTokenClaims extends Device {
  /** The token's `jti`: what the bucket holds as the device's current token. */
  tokenId: string;
  issuedAt: number;
  expiresAt: number;
}

/** The claims a device token carries in its `nats` section (a type alias: the JWT library wants an indexable record). */
type TokenData = {
  type: string;
  userId: string;
  deviceId: string;
  /** Random: two tokens issued for a device in the same second differ (the `jti` is a digest of the claims). */
  nonce: string;
};

/** Why a token is refused by itself: not one of ours (`bad_token`), or past its `exp` (`expired`). */
export type DeviceTokenProblem = 'bad_token' | 'expired';

/** A token that is not valid on its own; `reason` says why. */
export class DeviceTokenError extends Error {
  override readonly name = 'DeviceTokenError';
  readonly reason: DeviceTokenProblem;
  constructor(reason: DeviceTokenProblem, message: string) {
    super(`${reason}: ${message}`);
    this.reason = reason;
  }
}

/** The token lifetime from `FM_DEVICE_TOKEN_TTL_S`, else {@link DEFAULT_DEVICE_TOKEN_TTL_S}: the one place it is read. */
export function deviceTokenTtlFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const text = env.FM_DEVICE_TOKEN_TTL_S;
  if (text === undefined || text === '') return DEFAULT_DEVICE_TOKEN_TTL_S;
  const ttl = Number(text);
  if (!Number.isInteger(ttl) || ttl <= 0) throw new Error(`FM_DEVICE_TOKEN_TTL_S: expected a positive integer, got "${text}"`);
  return ttl;
}

/** The key pair device tokens are signed with (`device-tokens.nk` of the secrets directory). */
export function deviceTokenKeys(env: NodeJS.ProcessEnv = process.env): KeyPair {
  return seedKeyPair(readSecret(SECRET_FILES.deviceTokens, env));
}

/** The key of a device's current token id in the device-token bucket. */
export function deviceTokenKey(device: Device): string {
  return `${device.userId}.${device.deviceId}`;
}

/**
 * Signs a token for a device, valid for `ttlS` seconds from now (zero or less: already expired,
 * which only a test wants). Records nothing: {@link issueDeviceToken} does.
 */
export async function signDeviceToken(signer: KeyPair, device: Device, ttlS: number): Promise<{ token: string; claims: DeviceTokenClaims }> {
  for (const id of [device.userId, device.deviceId]) {
    if (!SubjectToken.safeParse(id).success) throw new Error(`not a user or device id (letters, digits, "_" or "-"): "${id}"`);
  }
  const data: TokenData = { type: TOKEN_TYPE, userId: device.userId, deviceId: device.deviceId, nonce: randomBytes(12).toString('base64url') };
  const exp = Math.floor(Date.now() / 1000) + ttlS;
  const token = await encodeGeneric(`${device.userId}/${device.deviceId}`, signer, TOKEN_TYPE, data, { aud: TOKEN_AUDIENCE, exp });
  return { token, claims: verifyDeviceToken(token, signer, Number.NEGATIVE_INFINITY) };
}

/**
 * Checks a token: a JWT signed by `issuer` (the device-token key), of our type and audience,
 * naming a user and a device, not past its `exp` at `nowS`. Throws {@link DeviceTokenError}.
 */
export function verifyDeviceToken(
  token: string,
  issuer: Pick<KeyPair, 'getPublicKey' | 'verify'>,
  nowS: number = Math.floor(Date.now() / 1000),
): DeviceTokenClaims {
  let claims: ClaimsData<TokenData>;
  try {
    claims = verifyJwt<TokenData>(token, issuer);
  } catch (err) {
    throw new DeviceTokenError('bad_token', (err as Error).message);
  }
  const { userId, deviceId, type } = claims.nats ?? {};
  if (type !== TOKEN_TYPE || claims.aud !== TOKEN_AUDIENCE) throw new DeviceTokenError('bad_token', 'not a device token');
  // The ids become subjects of the device's permissions: a wildcard or a dot would widen them.
  if (!SubjectToken.safeParse(userId).success || !SubjectToken.safeParse(deviceId).success) {
    throw new DeviceTokenError('bad_token', 'no valid user or device id');
  }
  if (typeof claims.exp !== 'number' || typeof claims.jti !== 'string') throw new DeviceTokenError('bad_token', 'no expiry or id');
  if (claims.exp <= nowS) throw new DeviceTokenError('expired', 'past its expiry');
  return { userId: userId!, deviceId: deviceId!, tokenId: claims.jti, issuedAt: claims.iat, expiresAt: claims.exp };
}

/** Options of {@link issueDeviceToken}. */
export interface IssueOptions {
  /** @default deviceTokenKeys(), from the secrets directory */
  signer?: KeyPair;
  /** @default deviceTokenTtlFromEnv() */
  ttlS?: number;
}

/**
 * Issues a device's token and records its id as the device's current one in `tokens` (the
 * `fm_device_tokens` bucket): a token issued before for the device is refused from its next connect.
 */
export async function issueDeviceToken(tokens: KV, device: Device, options: IssueOptions = {}): Promise<string> {
  const { token, claims } = await signDeviceToken(options.signer ?? deviceTokenKeys(), device, options.ttlS ?? deviceTokenTtlFromEnv());
  await tokens.put(deviceTokenKey(device), claims.tokenId);
  return token;
}
