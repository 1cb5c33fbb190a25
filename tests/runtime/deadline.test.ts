/**
 * Integration (real nats-server, runtime and device processes): durable deadlines. With a grace
 * period of two seconds, a user whose payment failed lapses when the grace period ends, and its
 * devices learn it, whether the node was stopped over the deadline and started after it, or ran the
 * whole time with the user passivated. The grace end is audited once.
 */
import { describe, expect, it } from 'vitest';
import { event, registerDevices } from '../support/events.ts';
import { waitFor, type DeviceProcess } from '../support/processes.ts';
import { settled } from '../support/settle.ts';
import { useSystem } from '../support/system.ts';

const GRACE_MS = 2_000;
const system = useSystem({
  FM_GRACE_MS: String(GRACE_MS),
  FM_GRACE_AFTER_CRISIS_MS: '4000',
  // Users idle for 200 ms are passivated (checked every 100 ms).
  FM_IDLE_MS: '200',
  FM_SWEEP_MS: '100',
});

/** Registers the user's phone, subscribes to premium, fails a payment; returns the grace deadline. */
async function enterGrace(user: string, devices: DeviceProcess): Promise<number> {
  const { client } = system();
  const key = `${user}:phone`;
  await client.publish(...registerDevices(user, ['phone']), event(user, 'subscription_activated', { subscriptionId: `sub_${user}`, tier: 'premium' }));
  await devices.waitForView(key, (v) => v.tier === 'premium', 'premium');
  const failed = event(user, 'payment_failed', { subscriptionId: `sub_${user}`, attemptCount: 1, nextAttemptAt: null });
  await client.publish(failed);
  const grace = await devices.waitForView(key, (v) => v.tier === 'grace_period', 'grace period');
  expect(grace.status).toBe('past_due');
  expect(grace.features).toContain('mood_tracking');
  expect(grace.features).not.toContain('advanced_analytics');
  const stored = await client.lastView(user, 'phone');
  expect(stored!.version).toBe(grace.version);
  expect(stored!.gracePeriod).toEqual({ endsAt: failed.at + GRACE_MS, reason: 'payment_failed' });
  return stored!.gracePeriod!.endsAt;
}

/**
 * The user's audit records of the grace end, once nothing can add another: every event is
 * committed, the device took every view, and no schedule of the user is left (none can fire
 * again). There must be exactly one.
 */
async function graceEndings(user: string, devices: DeviceProcess) {
  const { client } = system();
  await settled(client, devices, `${user}:phone`);
  // A fired or cancelled schedule leaves nothing on the user's schedule subject.
  const schedule = await client.jsm.streams.getMessage(client.topology.streams.normal, { last_by_subj: client.topology.subjects.schedule(user) });
  expect(schedule).toBeNull();
  const audit = await client.audit();
  return audit.filter((a) => a.userId === user && a.eventType === 'grace_ended');
}

describe('durable deadline: a two-second grace period ends on time', () => {
  it('the node is stopped before the deadline and started after it: the user is lapsed and the device knows it', async () => {
    const sys = system();
    const user = 'deadline-restart';
    const key = `${user}:phone`;
    const devices = await sys.devices(key);
    const endsAt = await enterGrace(user, devices);

    let stoppedAt = 0;
    let startedAt = 0;
    let lapsedWhileStopped = true;
    await sys.restartRuntime({
      before: async () => {
        stoppedAt = Date.now();
        await waitFor(() => Date.now() > endsAt, 'the grace deadline to pass');
        lapsedWhileStopped = devices.applied.get(key)!.some((v) => v.tier === 'lapsed');
        startedAt = Date.now();
      },
    });
    // The node was gone over the deadline, and nothing lapsed the user while it was.
    expect(stoppedAt).toBeLessThan(endsAt);
    expect(startedAt).toBeGreaterThan(endsAt);
    expect(lapsedWhileStopped).toBe(false);

    const lapsed = await devices.waitForView(key, (v) => v.tier === 'lapsed', 'lapsed after the restart', 10_000);
    expect(lapsed.status).toBe('lapsed');
    expect(lapsed.appliedAt).toBeGreaterThanOrEqual(startedAt);
    expect(lapsed.features).not.toContain('mood_tracking');
    expect(lapsed.features).toEqual(expect.arrayContaining(['crisis_button', 'hotline_access', 'safety_plan', 'emergency_contacts']));
    const stored = await sys.client.lastView(user, 'phone');
    expect(stored).toMatchObject({ version: lapsed.version, tier: 'lapsed', status: 'lapsed', gracePeriod: null });

    const endings = await graceEndings(user, devices);
    expect(endings).toHaveLength(1);
    expect(endings[0]).toMatchObject({ from: { subscription: 'grace_period' }, to: { subscription: 'lapsed' }, at: endsAt });
    const record = await sys.client.userRecord(user);
    expect(record!.state.value).toEqual({ subscription: 'lapsed', crisis: 'stable' });
    expect(record!.viewVersion).toBe(lapsed.version);
  });

  it('the node runs and the user is passivated: the deadline still fires and the device learns it is lapsed', async () => {
    const sys = system();
    const user = 'deadline-passive';
    const key = `${user}:phone`;
    const devices = await sys.devices(key);
    const endsAt = await enterGrace(user, devices);

    // The user leaves memory well before its deadline.
    const passivated = await waitFor(async () => {
      const m = await sys.client.metrics();
      return m.residents === 0 ? m : undefined;
    }, 'the user to be passivated', GRACE_MS);
    expect(Date.now()).toBeLessThan(endsAt);
    expect(devices.latest(key)!.tier).toBe('grace_period');

    const lapsed = await devices.waitForView(key, (v) => v.tier === 'lapsed', 'lapsed while passivated', GRACE_MS + 5_000);
    expect(lapsed.status).toBe('lapsed');
    expect(lapsed.appliedAt).toBeGreaterThanOrEqual(endsAt);
    // The deadline event brought the user back into memory.
    expect((await sys.client.metrics()).activations).toBeGreaterThan(passivated.activations);

    const endings = await graceEndings(user, devices);
    expect(endings).toHaveLength(1);
    expect(endings[0]).toMatchObject({ from: { subscription: 'grace_period' }, to: { subscription: 'lapsed' }, at: endsAt });
    expect(devices.applied.get(key)!.filter((v) => v.tier === 'lapsed')).toHaveLength(1);
  });
});
