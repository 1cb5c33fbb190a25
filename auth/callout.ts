/**
 * The auth callout service: the server sends it every client that is not a role (nats.conf
 * `auth_callout`), and it admits a device into the `DEVICES` account with a user JWT naming only
 * its own user's data (`auth/devicePermissions.ts`), or refuses it with a reason. A device is
 * admitted when its token is ours and unexpired (`auth/deviceToken.ts`), is its device's current
 * one in the `fm_device_tokens` bucket (not rotated, not revoked), and its user's last view lists
 * the device (registered, not removed).
 *
 * Every node runs a replica: they share the requests (a queue group), and each remembers the
 * connections it admitted. The runtime publishes a revocation when a view drops devices
 * (`subjects.deviceRevocation`); every replica hears it, deletes those devices' current token ids
 * and kicks the connections it admitted for them (the server's kick API), so nothing new reaches
 * them and their reconnects are refused. A session ends after at most `DEVICE_SESSION_S` in any
 * case, and the device comes back through the callout.
 */
import { jetstream, jetstreamManager, type DirectStreamAPI } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { encodeAuthorizationResponse, encodeUser, type AuthorizationRequest, type AuthorizationResponse } from '@nats-io/jwt';
import type { KeyPair } from '@nats-io/nkeys';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import type { RuntimeConfig } from '../actors/config.ts';
import { createLogger, type Logger } from '../actors/logger.ts';
import { decode } from '../transport/codec.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
import { readSecret, SECRET_FILES } from '../transport/credentials.ts';
import { DeviceRevocation, type DeviceView } from '../transport/schemas.ts';
import { AUTH_CALLOUT_SUBJECT, kickSubject } from '../transport/subjects.ts';
import { createTopology, type Topology } from '../transport/topology.ts';
import { lastView } from '../transport/viewStore.ts';
import { Admissions, type AdmittedConnection } from './admissions.ts';
import { DEVICES_ACCOUNT, devicePermissions, deviceUserName, sessionExpiry } from './devicePermissions.ts';
import { DeviceTokenError, deviceTokenKey, deviceTokenKeys, verifyDeviceToken, type Device, type DeviceTokenClaims } from './deviceToken.ts';
import { seedKeyPair } from '../transport/nkeySigning.ts';
import { readJwt } from './signing.ts';

/**
 * Why a device is refused: its token is not ours (`bad_token`) or past its expiry (`expired`); the
 * bucket holds no current token for the device (`revoked`: removed) or another one (`rotated`); its
 * user's last view does not list it (`not_registered`); the bucket or the view could not be read
 * (`unavailable`: the device tries again).
 */
export type RefusalReason = 'bad_token' | 'expired' | 'revoked' | 'rotated' | 'not_registered' | 'unavailable';

/** Replicas share the auth requests in this queue group. */
const QUEUE = 'fm-callout';
/** How long a kick request waits for the server's answer. */
const KICK_TIMEOUT_MS = 2_000;
/** How often the remembered admissions are pruned of ended sessions. */
const PRUNE_EVERY_MS = 60_000;

/**
 * Why a device whose token is valid is refused, or `undefined`: admitted. `currentTokenId` is the
 * bucket's entry for the device (`null`: none), `view` its user's last view (`null`: none).
 */
export function admissionRefusal(claims: DeviceTokenClaims, currentTokenId: string | null, view: DeviceView | null): RefusalReason | undefined {
  if (currentTokenId === null) return 'revoked';
  if (currentTokenId !== claims.tokenId) return 'rotated';
  if (!view?.devices.includes(claims.deviceId)) return 'not_registered';
  return undefined;
}

/** Options of {@link CalloutService.start}. */
export interface CalloutOptions {
  /** @default natsUrlFromEnv() */
  servers?: string | string[];
  /** Connection name, e.g. `node-1/callout`. */
  name: string;
  topology: Topology;
  log: Logger;
}

/** A running callout replica. */
export class CalloutService {
  private readonly nc: NatsConnection;
  private readonly topology: Topology;
  private readonly log: Logger;
  /** Signs the device user JWTs and the answers: the key nats.conf names as the callout's issuer. */
  private readonly issuer: KeyPair;
  /** The key device tokens must be signed with. */
  private readonly tokenIssuer: KeyPair;
  private readonly tokens: KV;
  private readonly direct: DirectStreamAPI;
  private readonly admissions = new Admissions();
  private readonly pruner: NodeJS.Timeout;

  private constructor(nc: NatsConnection, options: CalloutOptions, tokens: KV, direct: DirectStreamAPI) {
    this.nc = nc;
    this.topology = options.topology;
    this.log = options.log;
    this.issuer = seedKeyPair(readSecret(SECRET_FILES.calloutIssuer));
    this.tokenIssuer = deviceTokenKeys();
    this.tokens = tokens;
    this.direct = direct;
    this.pruner = setInterval(() => this.admissions.prune(Date.now()), PRUNE_EVERY_MS).unref();
    nc.subscribe(AUTH_CALLOUT_SUBJECT, { queue: QUEUE, callback: (_err, m) => void this.authorize(m) });
    nc.subscribe(this.topology.subjects.deviceRevocation('*'), { callback: (_err, m) => void this.revoke(m) });
  }

  /** Connects as the callout role and answers auth requests once the server has its subscriptions. */
  static async start(options: CalloutOptions): Promise<CalloutService> {
    const nc = await connectNats({ servers: options.servers, name: options.name, credentials: { role: 'callout' } });
    try {
      // Only direct gets and key puts: no JetStream API check, which the callout's permissions do not allow.
      const tokens = await new Kvm(jetstream(nc, { checkAPI: false })).open(options.topology.buckets.deviceTokens, { allow_direct: true });
      const { direct } = await jetstreamManager(nc, { checkAPI: false });
      const service = new CalloutService(nc, options, tokens, direct);
      await nc.flush();
      options.log.info('auth callout ready');
      return service;
    } catch (err) {
      await nc.close();
      throw err;
    }
  }

  /** Stops answering: the other replicas take the requests. */
  async stop(): Promise<void> {
    clearInterval(this.pruner);
    await drainNats(this.nc);
  }

  /** Answers one auth request: the device's user JWT, or a refusal. Never throws. */
  private async authorize(m: Msg): Promise<void> {
    let request: AuthorizationRequest;
    try {
      // Its signature (the server's) is not checked: only the server may publish on this subject
      // (auth/roles.ts), and a forged request could get no more than its token would anyway.
      request = readJwt<AuthorizationRequest>(m.string()).claims.nats as AuthorizationRequest;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'unreadable auth request');
      return;
    }
    const connection: AdmittedConnection = { server: request.server_id.id, cid: request.client_info.id ?? 0 };
    const where = { server: request.server_id.name, cid: connection.cid };
    const mark = this.admissions.mark();
    try {
      const verdict = await this.check(request.connect_opts.auth_token);
      if ('reason' in verdict) {
        this.log.info({ ...verdict.device, ...where, reason: verdict.reason }, 'device refused');
        m.respond(await this.answer(request, { error: verdict.reason }));
        return;
      }
      const { claims } = verdict;
      const device: Device = { userId: claims.userId, deviceId: claims.deviceId };
      const exp = sessionExpiry(claims.expiresAt, Math.floor(Date.now() / 1000));
      const jwt = await encodeUser(deviceUserName(device), request.user_nkey, this.issuer, devicePermissions(this.topology, device), {
        aud: DEVICES_ACCOUNT,
        exp,
      });
      const admitted = await this.answer(request, { jwt });
      const key = deviceTokenKey(device);
      // Checked after the last await: a revocation heard while this admission was being decided wins.
      if (this.admissions.revokedSince(key, mark)) {
        this.log.info({ ...device, ...where, reason: 'revoked' }, 'device refused');
        m.respond(await this.answer(request, { error: 'revoked' satisfies RefusalReason }));
        return;
      }
      this.admissions.admit(key, connection, exp * 1000);
      m.respond(admitted);
      this.log.debug({ ...device, ...where }, 'device admitted');
    } catch (err) {
      // The server refuses the client when no answer comes; the device tries again.
      this.log.error({ ...where, err: (err as Error).message }, 'auth request failed');
    }
  }

  /** Checks a token and the device's standing: its claims, or why it is refused (with the device, once the token names it). */
  private async check(token: string | undefined): Promise<{ claims: DeviceTokenClaims } | { reason: RefusalReason; device?: Device }> {
    let claims: DeviceTokenClaims;
    try {
      claims = verifyDeviceToken(token ?? '', this.tokenIssuer);
    } catch (err) {
      if (err instanceof DeviceTokenError) return { reason: err.reason };
      throw err;
    }
    const device: Device = { userId: claims.userId, deviceId: claims.deviceId };
    let current: string | null;
    let view: DeviceView | null;
    try {
      const [entry, last] = await Promise.all([this.tokens.get(deviceTokenKey(device)), lastView(this.direct, this.topology, device.userId)]);
      current = entry?.operation === 'PUT' ? entry.string() : null;
      view = last;
    } catch (err) {
      this.log.warn({ ...device, err: (err as Error).message }, 'device standing unreadable');
      return { reason: 'unavailable', device };
    }
    const reason = admissionRefusal(claims, current, view);
    return reason ? { reason, device } : { claims };
  }

  /** The server's answer to a request, signed by the issuer. */
  private async answer(request: AuthorizationRequest, data: Partial<AuthorizationResponse>): Promise<string> {
    return encodeAuthorizationResponse(request.user_nkey, request.server_id.id, this.issuer, data, {});
  }

  /** Handles a revocation: each device's current token id deleted, then the connections admitted for it kicked. Never throws. */
  private async revoke(m: Msg): Promise<void> {
    const userId = m.subject.split('.').at(-1)!;
    let devices: string[];
    try {
      devices = decode(DeviceRevocation, m.data, { userId }).devices;
    } catch (err) {
      this.log.warn({ userId, err: (err as Error).message }, 'unreadable device revocation');
      return;
    }
    await Promise.all(
      devices.map(async (deviceId) => {
        const device: Device = { userId, deviceId };
        const key = deviceTokenKey(device);
        const connections = this.admissions.revoke(key, Date.now());
        // The token first: a kicked device that reconnects at once finds it gone.
        await this.tokens.delete(key).catch((err: Error) => this.log.warn({ ...device, err: err.message }, 'device token not deleted'));
        await Promise.all(connections.map((c) => this.kick(device, c)));
        this.log.info({ ...device, kicked: connections.length }, 'device revoked');
      }),
    );
  }

  /** Closes one admitted connection through the server's kick API (it may be gone already). */
  private async kick(device: Device, c: AdmittedConnection): Promise<void> {
    try {
      const reply = await this.nc.request(kickSubject(c.server), JSON.stringify({ cid: c.cid }), { timeout: KICK_TIMEOUT_MS });
      const error = reply.json<{ error?: { description?: string } }>().error;
      if (error) this.log.info({ ...device, cid: c.cid, detail: error.description }, 'device connection already closed');
      else this.log.info({ ...device, cid: c.cid }, 'device connection kicked');
    } catch (err) {
      this.log.warn({ ...device, cid: c.cid, err: (err as Error).message }, 'device connection not kicked');
    }
  }
}

/**
 * Starts the callout replica of a process that runs a runtime node, unless its configuration says
 * the callout runs elsewhere (`FM_CALLOUT=off`). Start it after the node, which provisions the
 * bucket it reads; stop it after the node, so it hears the revocations of the node's last commits.
 */
export async function startNodeCallout(config: Pick<RuntimeConfig, 'callout' | 'natsUrl' | 'nodeId' | 'topology'>): Promise<CalloutService | undefined> {
  if (!config.callout) return undefined;
  return CalloutService.start({
    servers: config.natsUrl,
    name: `${config.nodeId}/callout`,
    topology: createTopology(config.topology),
    log: createLogger({ component: 'callout', node: config.nodeId }),
  });
}
