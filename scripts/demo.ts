/**
 * `npm run demo`: a narrated scenario. A premium user with three devices (each signed in with its
 * own token) is downgraded, misses a payment (grace period), presses the crisis button on the
 * phone, and recovers; after each step it prints what every device applied. Runs against
 * `npm start` when a server answers at NATS_URL (default nats://127.0.0.1:4222), otherwise starts
 * the same embedded system itself and stops it after.
 * Ends with the user's id and where to look at it: the CLI commands and the viewer's address.
 */
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { deploymentFromEnv } from '../actors/config.ts';
import { issueDeviceToken } from '../auth/deviceToken.ts';
import { DeviceActor } from '../clients/deviceActor.ts';
import type { EventOf, UserEvent, UserEventType } from '../machines/events.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
import { publishEvent } from '../transport/eventPublisher.ts';
import type { DeviceView } from '../transport/schemas.ts';
import { createTopology } from '../transport/topology.ts';
import { lastView } from '../transport/viewStore.ts';
import { acceptsTcp } from './natsProcess.ts';
import { startSystem, type System } from './start.ts';

const STEP_TIMEOUT_MS = 10_000;
const deployment = deploymentFromEnv();
const url = new URL(deployment.natsUrl);
let embedded: System | undefined;
if (!(await acceptsTcp(Number(url.port || 4222)))) {
  console.log('No NATS at %s: starting nats-server and a runtime node for the demo.\n', url.host);
  process.env.LOG_LEVEL ??= 'warn';
  embedded = await startSystem();
}

const topology = createTopology(deployment.topology);
// The demo plays the services (and the accounts service that issues device tokens) with the runtime's key.
const nc = await connectNats({ servers: deployment.natsUrl, name: 'demo', credentials: { role: 'runtime' } });
const js = jetstream(nc);
const { direct } = await jetstreamManager(nc);
const user = `demo-${Date.now().toString(36)}`;
const devices = ['phone', 'tablet', 'web'];
const held = new Map<string, DeviceView>();
const actors = new Map<string, DeviceActor>();
const deviceConnections: NatsConnection[] = [];

let n = 0;
function event<T extends UserEventType>(type: T, fields: Omit<EventOf<T>, 'type' | 'id' | 'userId' | 'at'>): UserEvent {
  return { type, id: `${user}-${++n}`, userId: user, at: Date.now(), ...fields } as UserEvent;
}

/** Waits until `check` holds, for at most a step's time. */
async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function publish(...events: UserEvent[]): Promise<void> {
  for (const e of events) {
    await publishEvent(js, topology.subjects, e);
    console.log(`    published ${e.type}`);
  }
}

/**
 * Signs each device in on a connection of its own, with a token issued for it: once its
 * registration is in the user's view, since the auth callout admits registered devices only.
 */
async function signInDevices(): Promise<void> {
  await until(async () => (await lastView(direct, topology, user))?.devices.length === devices.length, 'the registrations');
  const tokens = await new Kvm(nc).open(topology.buckets.deviceTokens);
  for (const deviceId of devices) {
    const deviceToken = await issueDeviceToken(tokens, { userId: user, deviceId });
    const device = await connectNats({ servers: deployment.natsUrl, name: `demo/${deviceId}`, credentials: { deviceToken, userId: user, deviceId } });
    deviceConnections.push(device);
    actors.set(deviceId, await DeviceActor.start({ nc: device, topology, userId: user, deviceId, onApply: (v) => void held.set(deviceId, v) }));
  }
  console.log(`    ${devices.join(', ')} signed in, each with its own token`);
}

async function step(title: string, act: () => Promise<void>, done: (v: DeviceView) => boolean): Promise<void> {
  console.log(`▶ ${title}`);
  await act();
  await until(() => devices.every((d) => held.has(d) && done(held.get(d)!)), `the devices to converge after "${title}"`);
  for (const d of devices) {
    const v = held.get(d)!;
    const crisis = v.crisis.active ? `CRISIS (${v.crisis.level})` : 'no crisis';
    const grace = v.gracePeriod ? ` grace until ${new Date(v.gracePeriod.endsAt).toISOString()}` : '';
    console.log(`    ${d.padEnd(6)} v${v.version}  ${v.tier}/${v.status}${grace}  ${crisis}  sync ${v.sync.frequency}/${v.sync.priority}`);
    console.log(`           features: ${v.features.enabled.join(', ')}`);
  }
  console.log();
}

try {
  const sub = 'sub_demo';
  await step('A premium user registers three devices', async () => {
    await publish(
      ...devices.map((deviceId) => event('device_registered', { deviceId, platform: 'ios' as const })),
      event('subscription_activated', { subscriptionId: sub, tier: 'premium' }),
    );
    await signInDevices();
  }, (v) => v.tier === 'premium');
  await step('Downgrade to basic', () => publish(event('plan_changed', { subscriptionId: sub, tier: 'basic' })), (v) => v.tier === 'basic');
  await step('A payment fails: grace period', () => publish(event('payment_failed', { subscriptionId: sub, attemptCount: 1, nextAttemptAt: null })), (v) => v.tier === 'grace_period');
  await step('The user presses the crisis button', async () => {
    await actors.get('phone')!.crisisButton();
    console.log('    the phone published crisis_button (the one event its connection may publish)');
  }, (v) => v.crisis.active);
  await step('Payment recovers, a clinician resolves the crisis', () => publish(
    event('payment_recovered', { subscriptionId: sub }),
    event('crisis_resolved', { by: 'clinician' }),
  ), (v) => v.tier === 'basic' && !v.crisis.active);
  console.log('Every device converged at every step.\n');
  printWhereToLook();
} finally {
  await Promise.all([...actors.values()].map((a) => a.stop()));
  await Promise.all([...deviceConnections, nc].map((c) => drainNats(c)));
  await embedded?.stop();
}

/** How to go on from here: the user the demo played, as the CLI and the clinician viewer show it. */
function printWhereToLook(): void {
  const port = embedded?.ingress.port ?? (Number(process.env.PORT) || 8080);
  console.log(`The demo played user ${user}. To look at it:`);
  if (embedded) console.log('  (the demo stops the system it started; its store stays in .data/, so start `npm start` first)');
  console.log(`  its state and its last view:        npm run cli -- state ${user}`);
  console.log(`  its transitions:                    npm run cli -- audit ${user}`);
  console.log(`  the clinician viewer:               http://localhost:${port}/viewer#user=${user}`);
  console.log('                                      (needs `npm start` with CLINICIAN_TOKEN set; sign in with that token)');
}
