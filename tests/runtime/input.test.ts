/**
 * Integration: bad input becomes dead letters without stopping the lane; safety content reaches
 * devices (again with the crisis) and never a log line, an audit record or a dead letter.
 */
import { createHash } from 'node:crypto';
import { encode as pack } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { UserEvent, type SafetyPlan } from '../../machines/events.ts';
import { decode, encode } from '../../transport/codec.ts';
import { Alert } from '../../transport/schemas.ts';
import { event, registerDevices } from '../support/events.ts';
import { EMERGENCY_CONTACTS, needlesIn, SAFETY_PLAN } from '../support/pii.ts';
import { waitFor } from '../support/processes.ts';
import { lanesSettled, settled } from '../support/settle.ts';
import { useSystem } from '../support/system.ts';

const system = useSystem();

describe('bad input', () => {
  it('h. invalid msgpack, a schema-invalid event, a mismatched user id: dead letters with reasons; the events around them are processed', async () => {
    const { client } = system();
    const user = 'bad-input-user';
    const devices = await system().devices(`${user}:phone`);
    const subject = (type: UserEvent['type']) => client.topology.subjects.event(user, type);
    await client.publish(...registerDevices(user, ['phone']), event(user, 'subscription_activated', { subscriptionId: 's', tier: 'basic' }));
    await client.publishRaw(subject('plan_changed'), new Uint8Array([0xc1, 0x01, 0x02]));
    await client.publishRaw(subject('plan_changed'), pack({ ...event(user, 'plan_changed', { subscriptionId: 's', tier: 'premium' }), tier: 'platinum' }));
    await client.publishRaw(subject('plan_changed'), encode(UserEvent, event('someone-else', 'plan_changed', { subscriptionId: 's', tier: 'premium' })));
    // A crisis_button body on a payment_failed subject: the subject and the body disagree.
    await client.publishRaw(subject('payment_failed'), encode(UserEvent, event(user, 'crisis_button')));
    await client.publish(event(user, 'plan_changed', { subscriptionId: 's', tier: 'premium' }));

    const view = await devices.waitForView(`${user}:phone`, (v) => v.tier === 'premium', 'premium after the bad input');
    expect(view.crisis).toBe(false);
    // A message is acknowledged only once its dead letter is stored: settled lanes hold them all.
    await lanesSettled(client);
    const letters = await client.deadLetters();
    expect(letters.map((l) => l.reason)).toEqual(['malformed', 'invalid', 'user_mismatch', 'invalid']);
    // Bytes that are not msgpack may be any text (a producer sending JSON): kept as their size only.
    expect(letters[0]).toMatchObject({ raw: null, size: 3, redacted: true });
    expect(letters[1]!.raw).not.toBeNull();
    expect(letters[1]!.detail).toContain('tier');
    expect(letters[2]!.detail).toContain('userId');
    expect(letters[3]!.detail).toContain('does not match the subject');
    expect(letters.map((l) => l.subject)).toEqual([...Array(3).fill(subject('plan_changed')), subject('payment_failed')]);
    expect(system().runtime.running).toBe(true);
  });
});

describe('safety content', () => {
  const SECRET = SAFETY_PLAN.peopleToAsk[0]!;
  const plan = (marker: string): SafetyPlan => ({
    warningSigns: [`${marker} warning`],
    copingStrategies: ['walk'],
    distractions: ['cafe'],
    peopleToAsk: [SECRET],
    professionals: ['clinic'],
    safeEnvironment: ['lock cabinet'],
  });
  const digest = (content: unknown) => createHash('sha256').update(JSON.stringify(content)).digest('hex').slice(0, 16);

  it('j. a device that missed the last safety-plan change holds the latest plan as soon as a crisis starts; no log or audit has it', async () => {
    const { client } = system();
    const user = 'safety-user';
    const contacts = [EMERGENCY_CONTACTS[0]!];
    const online = await system().devices(`${user}:phone`);
    await client.publish(...registerDevices(user, ['phone', 'tablet']), event(user, 'emergency_contacts_updated', { contacts }));
    await client.publish(event(user, 'safety_plan_updated', { plan: plan('v1') }));
    await online.waitForView(`${user}:phone`, (v) => v.safetyPlan, 'plan v1');

    // The tablet is away for the last change. The trial tier coalesces a plan edit for a second,
    // so the crisis, a moment later, is what carries plan v2 to every device.
    await client.publish(event(user, 'safety_plan_updated', { plan: plan('v2') }), event(user, 'crisis_button', { deviceId: 'phone' }));
    const latest = digest({ plan: plan('v2'), contacts });
    const crisis = await online.waitForView(`${user}:phone`, (v) => v.crisis, 'crisis');
    expect(crisis.safetyDigest).toBe(latest);

    const tablet = await system().devices(`${user}:tablet`);
    const back = await tablet.waitForView(`${user}:tablet`, (v) => v.crisis, 'tablet crisis view');
    expect(back.safetyDigest).toBe(latest);
    expect(back.contacts).toBe(1);
    await settled(client, tablet, `${user}:tablet`);
    expect(tablet.applied.get(`${user}:tablet`)).toHaveLength(1);

    // An invalid plan edit carrying the text must be dead-lettered without it.
    const invalid = { ...event(user, 'safety_plan_updated', { plan: plan('v3') }), plan: { ...plan('v3'), peopleToAsk: Array(11).fill(SECRET) } };
    await client.publishRaw(client.topology.subjects.event(user, 'safety_plan_updated'), pack(invalid));
    const letter = await waitFor(async () => (await client.deadLetters()).find((l) => l.subject.endsWith('safety_plan_updated')), 'dead letter');
    expect(letter.redacted).toBe(true);
    expect(letter.raw).toBeNull();

    const audit = await client.audit();
    expect(audit.some((a) => a.userId === user && a.eventType === 'crisis_button')).toBe(true);
    const leaks = [
      ...system().runtime.lines.filter((l) => needlesIn(l).length > 0),
      ...audit.map((a) => JSON.stringify(a)).filter((a) => needlesIn(a).length > 0),
      ...(await client.deadLetters()).map((l) => JSON.stringify({ ...l, raw: null })).filter((l) => needlesIn(l).length > 0),
    ];
    expect(leaks).toEqual([]);
  });
});

describe('seed budgets', () => {
  it('a crisis slower than 200 ms and a therapeutic-access change slower than 500 ms log a warning and raise an alert', async () => {
    const { client } = system();
    const user = 'slow-user';
    await client.publish(...registerDevices(user, ['phone']), event(user, 'subscription_activated', { subscriptionId: 's', tier: 'premium', at: Date.now() - 10_000 }));
    await waitFor(async () => (await client.lastView(user, 'phone'))?.tier === 'premium', 'premium');
    // Source times in the past: each budget runs from the event's time at its source.
    const failed = event(user, 'payment_failed', { subscriptionId: 's', attemptCount: 1, nextAttemptAt: null, at: Date.now() - 2_000 });
    const crisis = event(user, 'crisis_button', { at: Date.now() - 1_000 });
    await client.publish(failed, crisis);
    // Only this user's: an earlier test's crisis may have been slow too.
    const alerts = await waitFor(async () => {
      const all = await client.readStream(client.topology.streams.alerts, (d) => decode(Alert, d));
      const mine = all.filter((a) => a.userId === user);
      return mine.length >= 2 ? mine : undefined;
    }, 'two alerts');
    expect(alerts.map((a) => `${a.kind} ${a.eventId}`).sort()).toEqual([`crisis_latency ${crisis.id}`, `therapeutic_latency ${failed.id}`]);
    expect(alerts.find((a) => a.kind === 'crisis_latency')).toMatchObject({ budgetMs: 200 });
    expect(alerts.find((a) => a.kind === 'therapeutic_latency')).toMatchObject({ budgetMs: 500 });
    expect(alerts.every((a) => a.latencyMs > a.budgetMs)).toBe(true);
    const warnings = system().runtime.logs.filter((l) => l.msg === 'seed budget exceeded' && l.userId === user);
    expect(warnings.map((w) => w.kind).sort()).toEqual(['crisis_latency', 'therapeutic_latency']);

    // Within budget: no further alert. The node counts an alert when it commits, before it
    // acknowledges the events, so once the lanes are settled the count is final.
    await lanesSettled(client);
    const raised = (await client.metrics()).alerts;
    await client.publish(event(user, 'crisis_resolved', { by: 'clinician' }), event(user, 'crisis_button'));
    await waitFor(async () => (await client.metrics()).crises >= 2 && (await client.lastView(user, 'phone'))?.crisis.active, 'second crisis');
    await lanesSettled(client);
    expect((await client.metrics()).alerts).toBe(raised);
  });
});
