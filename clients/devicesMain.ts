/**
 * A device process hosting one or more device actors: `node clients/devicesMain.ts user:device …`,
 * each device's token in the JSON file `FM_DEVICE_TOKENS_FILE` names (`{"user:device": "<token>", …}`;
 * a token is what `npm run cli -- device-token <user> <device>` prints). Each device signs in on a
 * connection of its own with its token, so the server lets it see its own user's view only.
 *
 * Prints one JSON line per applied view (what the device now shows: version and every entitlement:
 * tier, status, trial and grace deadlines, crisis, features, sync policy; a digest of the safety
 * content; `provisional` while it shows the crisis of a press no stored view accounts for yet), so
 * operators and tests can watch what devices applied; also a line per catch-up (start, reconnect;
 * with the server it is on), per move of a connection (`connection`: disconnect, reconnect, forced
 * or stale, with the server), when a device learns it was removed, when the server refuses it
 * (`refused`: not registered yet, or revoked; it tries again until it learns it was removed) and
 * when its connection closed for good (`disconnected`: it signs in again). `{"ready":true}` once
 * every device has been admitted and caught up, or refused once. Stops cleanly on SIGINT/SIGTERM.
 * With `FM_DEVICE_STANDBY=1` each device also holds a standby connection on another server.
 *
 * A line `press <user>:<device>` on stdin presses that device's crisis button (`crisisButton()`, on
 * the device's own connection; the nemesis run presses through it) and prints `pressed` with the
 * time of the press (`at`) and when JetStream acknowledged it (`storedAt`, with its `seq`), or
 * `storedAt: null` and the last `error` when no attempt was acknowledged within {@link PRESS_RETRY_MS}
 * (one may still have been stored): it is pressed again meanwhile, as a person would, each press an
 * event of its own.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NatsConnection } from '@nats-io/transport-node';
import { deploymentFromEnv } from '../actors/config.ts';
import { stopOnSignals } from '../actors/shutdown.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
import type { DeviceView } from '../transport/schemas.ts';
import { createTopology } from '../transport/topology.ts';
import { DeviceActor } from './deviceActor.ts';

/** First and longest wait between two sign-ins the server refused. */
const SIGN_IN_RETRY_MS = { first: 100, max: 1_000 };
/** How long a press on stdin is tried again (the device signing in again, the server electing a leader), and how often. */
const PRESS_RETRY_MS = 30_000;
const PRESS_AGAIN_MS = 200;
/** `FM_DEVICE_STANDBY=1`: each device also holds a standby connection on another server (`DeviceActorOptions.standby`). */
const STANDBY = process.env.FM_DEVICE_STANDBY === '1';
/** How long a device waits for its standby connection before it goes on without one. */
const STANDBY_CONNECT_MS = 5_000;

const tokens = (process.env.FM_DEVICE_TOKENS_FILE ? JSON.parse(readFileSync(process.env.FM_DEVICE_TOKENS_FILE, 'utf8')) : {}) as Record<string, string>;
const devices = process.argv.slice(2).map((arg) => {
  const [userId, deviceId] = arg.split(':');
  if (!userId || !deviceId) throw new Error(`expected user:device, got "${arg}"`);
  const token = tokens[arg];
  if (!token) throw new Error(`no token for ${arg} in FM_DEVICE_TOKENS_FILE`);
  return { userId, deviceId, token };
});
const deployment = deploymentFromEnv();
const topology = createTopology(deployment.topology);
const stopping = new AbortController();
const connections = new Set<NatsConnection>();
/** The device actors signed in now, by `user:device`: where a press on stdin goes. */
const signedIn = new Map<string, DeviceActor>();
const print = (record: Record<string, unknown>) => console.log(JSON.stringify(record));

/** What a device process prints for a view it applied. */
function appliedLine(v: DeviceView, deviceId: string, provisional: boolean): Record<string, unknown> {
  return {
    applied: true,
    provisional,
    userId: v.userId,
    deviceId,
    version: v.version,
    tier: v.tier,
    status: v.status,
    crisis: v.crisis.active,
    crisisLevel: v.crisis.level,
    features: v.features.enabled,
    priority: v.sync.priority,
    // The rest of the entitlements, so a test can compare the whole view a device applied.
    trialEndsAt: v.trialEndsAt,
    gracePeriod: v.gracePeriod,
    crisisSince: v.crisis.since,
    crisisSignalsUntil: v.crisis.signalsUntil,
    presentation: v.crisis.presentation,
    disabledFeatures: v.features.disabled,
    sync: v.sync,
    safetyPlan: v.safety.plan !== null,
    // A digest, not the text: this output is a log of what the device applied.
    safetyDigest: createHash('sha256').update(JSON.stringify(v.safety)).digest('hex').slice(0, 16),
    contacts: v.safety.contacts.length,
    issuedAt: v.issuedAt,
    appliedAt: Date.now(),
  };
}

/**
 * Runs one device until it learns it was removed or the process stops: signs in (again after a
 * refusal, with a growing wait), applies views while its connection lasts (nats.js reconnects it;
 * it closes for good after the server refused two reconnects), then signs in again holding the
 * view it had. `started` is called after its first sign-in, admitted or refused.
 */
async function runDevice({ userId, deviceId, token }: (typeof devices)[number], started: () => void): Promise<void> {
  let held: DeviceView | null = null;
  let removed = false;
  let wait = SIGN_IN_RETRY_MS.first;
  while (!removed && !stopping.signal.aborted) {
    let nc: NatsConnection;
    let standby: NatsConnection | undefined;
    try {
      nc = await connectNats({
        servers: deployment.natsUrl,
        name: `device/${userId}/${deviceId}`,
        credentials: { deviceToken: token, userId, deviceId },
        avoidServer: () => (standby?.isClosed() === false ? standby.getServer() : undefined),
      });
    } catch (err) {
      print({ refused: true, userId, deviceId, error: (err as Error).message });
      started();
      await sleep(wait, undefined, { signal: stopping.signal }).catch(() => {});
      wait = Math.min(wait * 2, SIGN_IN_RETRY_MS.max);
      continue;
    }
    wait = SIGN_IN_RETRY_MS.first;
    connections.add(nc);
    void printConnectionChanges(nc, userId, deviceId);
    standby = STANDBY ? await connectStandby(nc, userId, deviceId, token) : undefined;
    const actor: DeviceActor | undefined = await DeviceActor.start({
      nc,
      standby,
      topology,
      userId,
      deviceId,
      held,
      onApply: (v, provisional) => print(appliedLine(v, deviceId, provisional)),
      onReject: (err) => print({ rejected: true, error: err.message }),
      onRemoved: () => {
        removed = true;
        print({ removed: true, userId, deviceId });
        void drainNats(nc);
      },
      onCatchUp: (v) => print({ caughtUp: true, userId, deviceId, version: v?.version ?? null, server: nc.info?.server_name ?? null, at: Date.now() }),
    }).catch((err: Error) => {
      // Signed in, yet it could not start (its connection closed meanwhile): sign in again.
      print({ rejected: true, error: err.message });
      void nc.close();
      return undefined;
    });
    started();
    if (actor) signedIn.set(`${userId}:${deviceId}`, actor);
    const closed = await nc.closed();
    if (signedIn.get(`${userId}:${deviceId}`) === actor) signedIn.delete(`${userId}:${deviceId}`);
    connections.delete(nc);
    held = actor?.view ?? held;
    await actor?.stop();
    if (standby) {
      connections.delete(standby);
      await standby.close();
    }
    if (!removed && !stopping.signal.aborted) print({ disconnected: true, userId, deviceId, error: closed?.message ?? null });
  }
}

/**
 * Signs a device in a second time, on a server other than the one its connection is on (each of
 * the two keeps off the other's server when it moves, while there is another); `undefined` when
 * that takes longer than {@link STANDBY_CONNECT_MS} or is refused: the device goes on with one.
 */
async function connectStandby(nc: NatsConnection, userId: string, deviceId: string, token: string): Promise<NatsConnection | undefined> {
  const connecting = connectNats({
    servers: deployment.natsUrl,
    name: `device/${userId}/${deviceId}/standby`,
    credentials: { deviceToken: token, userId, deviceId },
    avoidServer: () => (nc.isClosed() ? undefined : nc.getServer()),
  });
  const standby = await Promise.race([connecting.catch(() => undefined), sleep(STANDBY_CONNECT_MS).then(() => undefined)]);
  if (!standby) {
    // Too late, or refused: one that connects after all is closed.
    void connecting.then((late) => late.close(), () => undefined);
    return undefined;
  }
  connections.add(standby);
  void printConnectionChanges(standby, userId, `${deviceId}/standby`);
  return standby;
}

/** Prints each move of a device's connection (`connection`: disconnect, reconnect, and why), for the run's record of where a device was. */
async function printConnectionChanges(nc: NatsConnection, userId: string, deviceId: string): Promise<void> {
  for await (const s of nc.status()) {
    if (s.type === 'disconnect' || s.type === 'reconnect' || s.type === 'forceReconnect' || s.type === 'staleConnection') {
      print({ connection: s.type, userId, deviceId, server: 'server' in s ? s.server : null, at: Date.now() });
    }
  }
}

/** Presses a device's crisis button (see the module comment); `device` is `user:device`. */
async function press(device: string): Promise<void> {
  const at = Date.now();
  const [userId, deviceId] = device.split(':');
  let error = 'not signed in';
  let attempts = 0;
  while (Date.now() - at < PRESS_RETRY_MS && !stopping.signal.aborted) {
    const actor = signedIn.get(device);
    if (actor) {
      try {
        attempts++;
        const ack = await actor.crisisButton();
        print({ pressed: true, userId, deviceId, at, storedAt: Date.now(), seq: ack.seq, attempts });
        return;
      } catch (err) {
        error = (err as Error).message;
      }
    }
    await sleep(PRESS_AGAIN_MS, undefined, { signal: stopping.signal }).catch(() => {});
  }
  print({ pressed: true, userId, deviceId, at, storedAt: null, attempts, error });
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const [command, device] = line.trim().split(/\s+/);
  if (command === 'press' && device) void press(device);
});

stopOnSignals(async () => {
  stopping.abort();
  await Promise.all([...connections].map((nc) => drainNats(nc)));
});
await Promise.all(devices.map((device) => new Promise<void>((started) => void runDevice(device, started))));
print({ ready: true, devices: devices.length });
