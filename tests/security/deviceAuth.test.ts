/**
 * Integration (a real nats-server from nats.conf, with its accounts and auth callout, and a runtime
 * process running the callout replica): devices see only their own data.
 *
 * A device signed in with its token reads and follows its own user's view and presses its own
 * user's crisis button; subscribing to another user's view, reading it by direct get, publishing a
 * payment event or another user's crisis button are each a permission violation the device's
 * connection reports, and nothing of it reaches the lanes. A removed device's open connection is
 * kicked, its reconnects are refused, nothing further reaches it, and its token is refused at
 * sign-in. A rotated token, an expired one, one signed by another key, garbage, and the token of a
 * device that is not registered are refused at sign-in.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { createAccount } from '@nats-io/nkeys';
import { PermissionViolationError, type NatsConnection } from '@nats-io/transport-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { deviceTokenKey, issueDeviceToken, signDeviceToken } from '../../auth/deviceToken.ts';
import { DeviceActor } from '../../clients/deviceActor.ts';
import { CrisisButton, UserEvent } from '../../machines/events.ts';
import { encode } from '../../transport/codec.ts';
import { connectNats } from '../../transport/connection.ts';
import { permissionViolation } from '../../transport/errors.ts';
import { decodeDeviceView } from '../../transport/viewWire.ts';
import { event, registerDevices } from '../support/events.ts';
import { waitFor } from '../support/processes.ts';
import { lanesSettled } from '../support/settle.ts';
import { useSystem } from '../support/system.ts';

const system = useSystem();
let tokens: KV;

beforeAll(async () => {
  tokens = await new Kvm(system().client.nc).open(system().client.topology.buckets.deviceTokens);
});

/** Registers devices and waits until the user's stored view lists them (the callout admits listed devices only). */
async function register(userId: string, ...devices: string[]): Promise<void> {
  const { client } = system();
  await client.publish(...registerDevices(userId, devices));
  await waitFor(async () => (await Promise.all(devices.map((d) => client.lastView(userId, d)))).every(Boolean), `${userId}'s view to list ${devices.join(', ')}`);
}

/** A device's own connection, signed in with `token`. */
function signIn(userId: string, deviceId: string, token: string): Promise<NatsConnection> {
  return connectNats({ servers: system().nats.url, name: `test-device/${userId}/${deviceId}`, credentials: { deviceToken: token, userId, deviceId } });
}

/** The permission violations a connection reports (its status errors), as they come. */
function violations(nc: NatsConnection): PermissionViolationError[] {
  const seen: PermissionViolationError[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === 'error' && s.error instanceof PermissionViolationError) seen.push(s.error);
  })();
  return seen;
}

/** How many times the callout logged refusing a device for `reason` (of `userId`, when given). */
function refusals(reason: string, userId?: string): number {
  return system().runtime.logs.filter((l) => l.msg === 'device refused' && l.reason === reason && (userId === undefined || l.userId === userId)).length;
}

describe('device credentials: only their own data', () => {
  it('a device reaches its own user view and crisis button; another user view, a payment event and another crisis button are permission violations', async () => {
    const { client } = system();
    const { subjects, streams } = client.topology;
    const [a, b] = ['auth-user-a', 'auth-user-b'];
    await register(a, 'a1');
    await register(b, 'b1');
    const nc = await signIn(a, 'a1', await issueDeviceToken(tokens, { userId: a, deviceId: 'a1' }));
    const reported = violations(nc);
    const device = await DeviceActor.start({ nc, topology: client.topology, userId: a, deviceId: 'a1' });
    // Its own user's last view, read by direct get at start.
    expect(device.view?.devices).toEqual(['a1']);

    const subscribed = new Promise<Error>((resolve) => nc.subscribe(subjects.view(b), { callback: (err) => void (err && resolve(err)) }));
    expect(permissionViolation(await subscribed)).toMatchObject({ operation: 'subscription', subject: subjects.view(b) });

    const { direct } = await jetstreamManager(nc, { checkAPI: false });
    const read = await direct.getMessage(streams.views, { last_by_subj: subjects.view(b) }).then(() => undefined, permissionViolation);
    expect(read).toMatchObject({ operation: 'publish', subject: `$JS.API.DIRECT.GET.${streams.views}.${subjects.view(b)}` });

    const js = jetstream(nc, { checkAPI: false });
    const payment = event(a, 'subscription_activated', { subscriptionId: 'sub_forged', tier: 'premium' });
    const paid = await js.publish(subjects.event(a, payment.type), encode(UserEvent, payment)).then(() => undefined, permissionViolation);
    expect(paid).toMatchObject({ operation: 'publish', subject: subjects.event(a, 'subscription_activated') });

    const press = event(b, 'crisis_button', { deviceId: 'a1' });
    const pressed = await js.publish(subjects.event(b, press.type), encode(UserEvent, press)).then(() => undefined, permissionViolation);
    expect(pressed).toMatchObject({ operation: 'publish', subject: subjects.event(b, 'crisis_button') });

    // Each attempt was reported on the connection, which stays up.
    await waitFor(() => reported.length >= 4, 'the four violations reported');
    expect(reported.map((v) => `${v.operation} ${v.subject}`).sort()).toEqual(
      [
        `subscription ${subjects.view(b)}`,
        `publish $JS.API.DIRECT.GET.${streams.views}.${subjects.view(b)}`,
        `publish ${subjects.event(a, 'subscription_activated')}`,
        `publish ${subjects.event(b, 'crisis_button')}`,
      ].sort(),
    );

    // Its own user's crisis button goes through, and the crisis view comes back on its own subscription.
    await device.crisisButton();
    await waitFor(() => device.view?.crisis.active, "a1 to apply its user's crisis view");
    // Nothing refused reached a lane: B is not in crisis, and A got no forged payment.
    await lanesSettled(client);
    expect((await client.lastView(b))!.crisis.active).toBe(false);
    expect((await client.lastView(a))!.tier).toBe('trial');
    expect(nc.isClosed()).toBe(false);
    await device.stop();
    await nc.close();
  });

  it('a removed device: its open connection is kicked, its reconnects refused, nothing further reaches it, and its token is refused', async () => {
    const { client } = system();
    const user = 'auth-removed';
    await register(user, 'c1', 'c2');
    const token = await issueDeviceToken(tokens, { userId: user, deviceId: 'c1' });
    const nc = await signIn(user, 'c1', token);
    const statuses: string[] = [];
    void (async () => {
      for await (const s of nc.status()) statuses.push(s.type);
    })();
    // What reaches the removed device's connection: every view on its subscription, by version.
    const received: number[] = [];
    nc.subscribe(client.topology.subjects.view(user), { callback: (_err, m) => void received.push(decodeDeviceView(m.data, m.headers, { userId: user }).version) });
    await nc.flush();
    const sibling = await DeviceActor.start({ nc: await signIn(user, 'c2', await issueDeviceToken(tokens, { userId: user, deviceId: 'c2' })), userId: user, deviceId: 'c2' });

    await client.publish(event(user, 'subscription_activated', { subscriptionId: 'sub_removed', tier: 'premium' }));
    const premium = (await waitFor(() => client.lastView(user).then((v) => (v?.tier === 'premium' ? v : undefined)), 'premium')).version;
    await waitFor(() => received.includes(premium), 'c1 to receive the premium view');

    const kicked = refusals('revoked', user);
    await client.publish(event(user, 'device_removed', { deviceId: 'c1' }));
    const removal = (await waitFor(() => client.lastView(user).then((v) => (v && !v.devices.includes('c1') ? v : undefined)), 'the removal view')).version;
    // Kicked by the callout, then refused at each reconnect until nats.js gives up.
    await waitFor(() => nc.isClosed(), 'the connection to close');
    expect((await nc.closed())?.message).toMatch(/Authorization Violation/i);
    expect(statuses).toContain('disconnect');
    expect(statuses).not.toContain('reconnect');
    expect(system().runtime.logs.some((l) => l.msg === 'device connection kicked' && l.userId === user && l.deviceId === 'c1')).toBe(true);
    await waitFor(() => refusals('revoked', user) >= kicked + 2, 'both reconnects refused as revoked');
    expect((await tokens.get(deviceTokenKey({ userId: user, deviceId: 'c1' })))?.operation).not.toBe('PUT');

    // A change after the removal reaches the sibling, not the removed device.
    await client.publish(event(user, 'plan_changed', { subscriptionId: 'sub_removed', tier: 'basic' }));
    await waitFor(() => sibling.view?.tier === 'basic', 'c2 to apply the basic view');
    expect(Math.max(...received)).toBeLessThanOrEqual(removal);
    expect(sibling.view!.devices).toEqual(['c2']);

    await expect(signIn(user, 'c1', token)).rejects.toThrow(/Authorization Violation/i);
    await sibling.stop();
  });

  it("a press on the press subject: the user's other device shows the crisis before any stored view, until a stored view accounts for it; another user's press subject is a violation", async () => {
    const { client } = system();
    const { subjects } = client.topology;
    const user = 'auth-press';
    await register(user, 'p1', 'p2');
    await register('auth-press-other', 'o1');
    const nc1 = await signIn(user, 'p1', await issueDeviceToken(tokens, { userId: user, deviceId: 'p1' }));
    const nc2 = await signIn(user, 'p2', await issueDeviceToken(tokens, { userId: user, deviceId: 'p2' }));
    const reported = violations(nc1);
    const shownOnP2: Array<{ version: number; crisis: boolean; provisional: boolean }> = [];
    const p2 = await DeviceActor.start({ nc: nc2, userId: user, deviceId: 'p2', onApply: (v, provisional) => void shownOnP2.push({ version: v.version, crisis: v.crisis.active, provisional }) });
    const before = p2.view!;

    // Only on the press subject: no lane has it, so nothing but the press subject can show it.
    const press = event(user, 'crisis_button', { deviceId: 'p1' });
    nc1.publish(subjects.press(user), encode(CrisisButton, press));
    await waitFor(() => p2.shown?.crisis.active, 'p2 to show the crisis it heard');
    expect(p2.view).toBe(before);
    expect(shownOnP2.at(-1)).toEqual({ version: before.version, crisis: true, provisional: true });
    expect((await client.lastView(user))!.crisis.active).toBe(false);

    // The same press stored on the crisis lane: its view accounts for it, and the provisional crisis gives way to it.
    await client.publish(press);
    await waitFor(() => p2.view?.crisis.active, "p2 to apply the stored crisis view");
    expect(p2.view!.crisis.signalsUntil).toBe(press.at);
    expect(p2.shown).toEqual(p2.view);
    expect(shownOnP2.at(-1)).toEqual({ version: p2.view!.version, crisis: true, provisional: false });

    // Heard again (a device sends it with every attempt to store it), it changes nothing.
    nc1.publish(subjects.press(user), encode(CrisisButton, press));
    await nc1.flush();
    await client.publish(event(user, 'crisis_resolved', { by: 'clinician' }));
    await waitFor(() => p2.view?.crisis.active === false, 'p2 to leave the crisis once resolved');
    expect(p2.shown).toEqual(p2.view);

    nc1.publish(subjects.press('auth-press-other'), encode(CrisisButton, event('auth-press-other', 'crisis_button', { deviceId: 'p1' })));
    await waitFor(() => reported.some((v) => v.operation === 'publish' && v.subject === subjects.press('auth-press-other')), "the other user's press subject refused");
    expect((await client.lastView('auth-press-other'))!.crisis.active).toBe(false);
    await p2.stop();
    await Promise.all([nc1.close(), nc2.close()]);
  });

  it('a rotated token is refused at sign-in, the new one admitted (issued with npm run cli -- device-token)', async () => {
    const user = 'auth-rotated';
    await register(user, 'd1');
    const first = await issueDeviceToken(tokens, { userId: user, deviceId: 'd1' });
    await (await signIn(user, 'd1', first)).close();
    const cli = await promisify(execFile)(process.execPath, ['scripts/cli.ts', 'device-token', user, 'd1'], { env: { ...process.env, NATS_URL: system().nats.url } });
    const second = cli.stdout.trim();
    expect(second).not.toBe(first);

    await expect(signIn(user, 'd1', first)).rejects.toThrow(/Authorization Violation/i);
    await waitFor(() => refusals('rotated', user) >= 1, 'the old token refused as rotated');
    const nc = await signIn(user, 'd1', second);
    expect(nc.isClosed()).toBe(false);
    await nc.close();
  });

  it('an expired token, one signed by another key, garbage, and an unregistered device are refused at sign-in', async () => {
    const user = 'auth-refused';
    await register(user, 'e1');
    const expired = await issueDeviceToken(tokens, { userId: user, deviceId: 'e1' }, { ttlS: -1 });
    await expect(signIn(user, 'e1', expired)).rejects.toThrow(/Authorization Violation/i);
    await waitFor(() => refusals('expired') >= 1, 'refused as expired');

    const badBefore = refusals('bad_token');
    const forged = (await signDeviceToken(createAccount(), { userId: user, deviceId: 'e1' }, 3_600)).token;
    await expect(signIn(user, 'e1', forged)).rejects.toThrow(/Authorization Violation/i);
    await expect(signIn(user, 'e1', 'not-a-token')).rejects.toThrow(/Authorization Violation/i);
    // Two sign-ins, each refused twice (nats.js tries twice before it gives up).
    await waitFor(() => refusals('bad_token') >= badBefore + 4, 'both refused as bad tokens');

    const unregistered = await issueDeviceToken(tokens, { userId: user, deviceId: 'e9' });
    await expect(signIn(user, 'e9', unregistered)).rejects.toThrow(/Authorization Violation/i);
    await waitFor(() => refusals('not_registered', user) >= 1, 'refused as not registered');

    // The token of the registered device, issued again, is admitted: the refusals were about the tokens.
    const nc = await signIn(user, 'e1', await issueDeviceToken(tokens, { userId: user, deviceId: 'e1' }));
    await nc.close();
  });
});
