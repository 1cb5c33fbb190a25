/**
 * Integration (real nats-server, runtime and device processes): plan downgrade on every device,
 * crisis while lapsed, an offline device catching up once, a removed device getting nothing new,
 * duplicates applied once.
 */
import { describe, expect, it } from 'vitest';
import { UserEvent } from '../../machines/events.ts';
import { encode } from '../../transport/codec.ts';
import { CRISIS_FEATURES, event, registerDevices } from '../support/events.ts';
import { waitFor } from '../support/processes.ts';
import { settled } from '../support/settle.ts';
import { useSystem } from '../support/system.ts';

const system = useSystem();
const DEVICES = ['phone', 'tablet', 'web'];

describe('devices apply their user view', () => {
  it('a. plan downgrade: all three devices of a premium user apply the basic view with the same version', async () => {
    const { client } = system();
    const user = 'downgrade-user';
    const devices = await system().devices(...DEVICES.map((d) => `${user}:${d}`));
    await client.publish(...registerDevices(user, DEVICES), event(user, 'subscription_activated', { subscriptionId: 'sub_a', tier: 'premium' }));
    for (const d of DEVICES) await devices.waitForView(`${user}:${d}`, (v) => v.tier === 'premium', 'premium');
    await client.publish(event(user, 'plan_changed', { subscriptionId: 'sub_a', tier: 'basic' }));
    const views = await Promise.all(DEVICES.map((d) => devices.waitForView(`${user}:${d}`, (v) => v.tier === 'basic', 'basic')));
    expect(new Set(views.map((v) => v.version)).size).toBe(1);
    expect(views[0]!.version).toBeGreaterThan(devices.applied.get(`${user}:phone`)![0]!.version);
    for (const v of views) {
      expect(v.features).toEqual(expect.arrayContaining(['mood_tracking', 'progress_charts', ...CRISIS_FEATURES]));
      expect(v.features).not.toContain('advanced_analytics');
      expect(v.priority).toBe('STANDARD');
    }
  });

  it('b. crisis while lapsed: every device applies the crisis view; a later payment failure removes nothing', async () => {
    const { client } = system();
    const user = 'lapsed-user';
    const devices = await system().devices(...DEVICES.map((d) => `${user}:${d}`));
    await client.publish(...registerDevices(user, DEVICES));
    // Trial ends (the deadline event carries the deadline time; 14 days after the first event).
    const first = Date.now();
    await client.publish(event(user, 'trial_ended', { at: first + 15 * 24 * 3600_000 }));
    for (const d of DEVICES) await devices.waitForView(`${user}:${d}`, (v) => v.tier === 'lapsed', 'lapsed');
    await client.publish(event(user, 'crisis_button', { deviceId: 'phone' }));
    const crisis = await Promise.all(DEVICES.map((d) => devices.waitForView(`${user}:${d}`, (v) => v.crisis, 'crisis view')));
    for (const v of crisis) {
      expect(v.features).toEqual(expect.arrayContaining([...CRISIS_FEATURES, 'advanced_crisis_features']));
      expect(v.priority).toBe('CRISIS_EMERGENCY');
    }
    const before = crisis[0]!.version;
    await client.publish(
      event(user, 'payment_failed', { subscriptionId: 'sub_b', attemptCount: 1, nextAttemptAt: null }),
      event(user, 'subscription_canceled', { subscriptionId: 'sub_b' }),
      event(user, 'device_registered', { deviceId: 'marker', platform: 'web' }),
    );
    // The marker device's first view proves the payment events before it were processed.
    await waitFor(() => client.lastView(user, 'marker'), 'marker view');
    for (const d of DEVICES) {
      for (const v of devices.applied.get(`${user}:${d}`)!.filter((v) => v.version >= before)) {
        expect(v.crisis).toBe(true);
        expect(v.features).toEqual(expect.arrayContaining([...CRISIS_FEATURES, 'advanced_crisis_features']));
      }
      const stored = await client.lastView(user, d);
      expect(stored!.crisis.active).toBe(true);
      expect(stored!.features.enabled).toEqual(expect.arrayContaining([...CRISIS_FEATURES, 'advanced_crisis_features']));
    }
  });

  it('c. offline device: five changes while it is away; on return it applies only the latest view, once', async () => {
    const { client } = system();
    const user = 'offline-user';
    const key = `${user}:phone`;
    let device = await system().devices(key);
    await client.publish(...registerDevices(user, ['phone']), event(user, 'subscription_activated', { subscriptionId: 'sub_c', tier: 'premium' }));
    const first = await device.waitForView(key, (v) => v.tier === 'premium', 'premium');
    await device.stop();
    const tiers = ['basic', 'premium', 'basic', 'premium', 'basic'] as const;
    let stored = first.version;
    for (const tier of tiers) {
      await client.publish(event(user, 'plan_changed', { subscriptionId: 'sub_c', tier }));
      // Each change is published to the device's subject before the next one is sent.
      stored = (await waitFor(async () => {
        const view = await client.lastView(user, 'phone');
        return view && view.version > stored && view.tier === tier ? view : undefined;
      }, `view for ${tier}`)).version;
    }
    expect(stored).toBe(first.version + 5);
    device = await system().devices(key);
    const latest = await device.waitForView(key, (v) => v.version === stored, 'latest version');
    // Nothing more can come: every event is committed, and the device took every view stored for it.
    await settled(client, device, key);
    expect(device.applied.get(key)).toHaveLength(1);
    expect(latest.tier).toBe('basic');
  });

  it('d. removed device: it stops with nothing of the user held, applies nothing new, and a new start of it applies nothing', async () => {
    const { client } = system();
    const user = 'removed-user';
    const keys = ['phone', 'tablet'].map((d) => `${user}:${d}`);
    const devices = await system().devices(...keys);
    await client.publish(...registerDevices(user, ['phone', 'tablet']), event(user, 'subscription_activated', { subscriptionId: 'sub_d', tier: 'premium' }));
    for (const k of keys) await devices.waitForView(k, (v) => v.tier === 'premium', 'premium');
    await client.publish(event(user, 'device_removed', { deviceId: 'tablet' }));
    await devices.waitForLine((l) => l.includes('"removed":true') && l.includes('"deviceId":"tablet"'), 'the tablet told it was removed');
    const tabletApplied = devices.applied.get(`${user}:tablet`)!.length;

    await client.publish(event(user, 'plan_changed', { subscriptionId: 'sub_d', tier: 'basic' }), event(user, 'crisis_button', { deviceId: 'phone' }));
    await devices.waitForView(`${user}:phone`, (v) => v.tier === 'basic' && v.crisis, 'basic, in crisis');
    const stored = await client.lastView(user);
    expect(stored!.devices).toEqual(['phone']);
    // A tablet started again, even with a new token, is refused at sign-in: the view does not list it.
    const again = await system().devices(`${user}:tablet`);
    await settled(client, devices, `${user}:phone`);
    expect(devices.applied.get(`${user}:tablet`)).toHaveLength(tabletApplied);
    expect(again.lines.some((l) => l.includes('"refused":true'))).toBe(true);
    expect(again.applied.get(`${user}:tablet`)).toBeUndefined();
  });

  it('e. NATS restarts: the device catches up after it reconnects and converges; no version is applied twice or out of order', async () => {
    const { client, nats } = system();
    const user = 'outage-user';
    const key = `${user}:phone`;
    const devices = await system().devices(key);
    await client.publish(...registerDevices(user, ['phone']), event(user, 'subscription_activated', { subscriptionId: 'sub_e', tier: 'premium' }));
    await devices.waitForView(key, (v) => v.tier === 'premium', 'premium');
    const catchUps = () => devices.lines.filter((l) => l.includes('"caughtUp":true')).length;
    const before = catchUps();
    await nats.restart();
    // Each reconnect reads the last stored view again: that is how a device gets what it missed.
    await waitFor(() => catchUps() > before, 'a catch-up after the reconnect', 30_000);
    // The test's own connection is back too (a flush is answered only then; it fails while disconnected).
    await waitFor(() => client.nc.flush().then(() => true, () => false), 'the test client reconnected', 30_000);
    await client.publish(event(user, 'plan_changed', { subscriptionId: 'sub_e', tier: 'basic' }), event(user, 'plan_changed', { subscriptionId: 'sub_e', tier: 'premium' }));
    await settled(client, devices, key);
    const versions = devices.applied.get(key)!.map((v) => v.version);
    expect(versions).toEqual([...new Set(versions)].sort((a, b) => a - b));
    expect(devices.latest(key)!.version).toBe((await client.lastView(user))!.version);
  });

  it('f. duplicates: one event id published three times, again after the dedup window, and a redelivery after a nack: one transition', async () => {
    const { client } = system();
    const user = 'dup-user';
    const devices = await system().devices(`${user}:phone`);
    await client.publish(...registerDevices(user, ['phone']));
    await devices.waitForView(`${user}:phone`, (v) => v.tier === 'trial', 'trial');
    const upgrade = event(user, 'subscription_activated', { subscriptionId: 'sub_f', tier: 'premium' });
    await client.publish(upgrade, upgrade, upgrade);
    // Without Nats-Msg-Id: stored again under a new sequence, as a retry after JetStream's window would be.
    await client.publishRaw(client.topology.subjects.event(user, upgrade.type), encode(UserEvent, upgrade));
    await devices.waitForView(`${user}:phone`, (v) => v.tier === 'premium', 'premium');

    // Rewrite the user's record behind the node's back: its next commit is fenced, the batch is
    // nacked and redelivered, and the node reloads the user from the store.
    const fencedBefore = (await client.metrics()).fenced;
    await client.rewriteUserRecord(user);
    const plan = event(user, 'plan_changed', { subscriptionId: 'sub_f', tier: 'basic' });
    await client.publish(plan);
    await devices.waitForView(`${user}:phone`, (v) => v.tier === 'basic', 'basic');
    await waitFor(async () => (await client.metrics()).fenced > fencedBefore, 'a fenced commit');

    // The redelivered batch is committed, and the device took every view: now count.
    await settled(client, devices, `${user}:phone`);
    const audits = (await client.audit()).filter((a) => a.userId === user);
    expect(audits.filter((a) => a.eventId === upgrade.id)).toHaveLength(1);
    expect(audits.filter((a) => a.eventId === plan.id)).toHaveLength(1);
    const applied = devices.applied.get(`${user}:phone`)!;
    expect(applied.filter((v) => v.tier === 'premium')).toHaveLength(1);
    expect(applied.filter((v) => v.tier === 'basic')).toHaveLength(1);
    expect((await client.metrics()).duplicates).toBeGreaterThanOrEqual(1);
  });
});
