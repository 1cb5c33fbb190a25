/**
 * Integration (real nats-server and runtime process): 1,000 users served by a node that keeps at
 * most 100 of them in memory (FM_MAX_RESIDENT) and passivates idle ones quickly. Rounds of events
 * reach every user while it is passivated, so each round restores every user from its stored
 * record; at the end every user's record and stored device view equal the statechart's fold of
 * its events, the view versions count every change, and residents never exceeded 100.
 */
import { describe, expect, it } from 'vitest';
import { deriveView } from '../../machines/deviceView.ts';
import type { UserEvent } from '../../machines/events.ts';
import { createUserState, foldEvents, toPersisted, type UserState } from '../../machines/userState.ts';
import type { MetricsSnapshot } from '../../actors/metrics.ts';
import { event } from '../support/events.ts';
import { waitFor } from '../support/processes.ts';
import { useSystem } from '../support/system.ts';
import { laneTotals } from '../support/settle.ts';

const MAX_RESIDENT = 100;
const system = useSystem({ FM_MAX_RESIDENT: String(MAX_RESIDENT), FM_IDLE_MS: '100', FM_SWEEP_MS: '20' });

const USERS = 1_000;
const DEVICE = 'd1';
const user = (i: number) => `pv-${String(i).padStart(4, '0')}`;
const subscription = (i: number) => `sub_${user(i)}`;

/** The rounds: which users get an event, and which. Every event here changes the user's view. */
const ROUNDS: Array<{ name: string; event: (i: number) => UserEvent | null }> = [
  { name: 'register a device', event: (i) => event(user(i), 'device_registered', { deviceId: DEVICE, platform: 'android' }) },
  {
    name: 'subscribe (premium for even users, basic for odd)',
    event: (i) => event(user(i), 'subscription_activated', { subscriptionId: subscription(i), tier: i % 2 === 0 ? 'premium' : 'basic' }),
  },
  {
    name: 'change plan (flip)',
    event: (i) => event(user(i), 'plan_changed', { subscriptionId: subscription(i), tier: i % 2 === 0 ? 'basic' : 'premium' }),
  },
  { name: 'crisis button (every 10th user)', event: (i) => (i % 10 === 0 ? event(user(i), 'crisis_button', { deviceId: DEVICE }) : null) },
  {
    name: 'payment failed (every 3rd user)',
    event: (i) =>
      i % 3 === 0 ? event(user(i), 'payment_failed', { subscriptionId: subscription(i), attemptCount: 1, nextAttemptAt: null }) : null,
  },
];

describe('passivation: 1,000 users, at most 100 resident', () => {
  it('states stay right through passivation and activation, and residents never exceed the cap', async () => {
    const { client } = system();
    const history = new Map<string, UserEvent[]>();

    // Residents, sampled every 20 ms for the whole run.
    let sampling = true;
    let samples = 0;
    let maxResidents = 0;
    const sampler = (async () => {
      while (sampling) {
        const m = await client.metrics();
        samples++;
        maxResidents = Math.max(maxResidents, m.residents);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();

    const started = Date.now();
    const roundMs: number[] = [];
    let published = 0;
    let last!: MetricsSnapshot;
    try {
      for (const round of ROUNDS) {
        const roundStarted = Date.now();
        const events = Array.from({ length: USERS }, (_, i) => round.event(i)).filter((e): e is UserEvent => e !== null);
        for (const e of events) history.set(e.userId, [...(history.get(e.userId) ?? []), e]);
        await Promise.all(events.map((e) => client.publish(e)));
        published += events.length;
        // Applied, committed and acknowledged on both lanes...
        await waitFor(async () => (await client.metrics()).events >= published, `${round.name}: applied`, 30_000);
        await waitFor(
          async () => {
            const totals = await Promise.all((['normal', 'crisis'] as const).map((lane) => laneTotals(client, lane)));
            return totals.every((t) => t.pending === 0 && t.ackPending === 0);
          },
          `${round.name}: acknowledged`,
          15_000,
        );
        // ...then every user passivated, so the next round activates each user it reaches.
        last = await waitFor(async () => {
          const m = await client.metrics();
          return m.residents === 0 ? m : undefined;
        }, `${round.name}: all passivated`);
        roundMs.push(Date.now() - roundStarted);
      }
    } finally {
      sampling = false;
      await sampler;
    }

    // Every user: stored record and stored device view equal the fold of its events.
    let checkedViews = 0;
    for (let i = 0; i < USERS; i += 100) {
      const ids = Array.from({ length: 100 }, (_, n) => user(i + n));
      const [records, views] = await Promise.all([
        Promise.all(ids.map((id) => client.userRecord(id))),
        Promise.all(ids.map((id) => client.lastView(id, DEVICE))),
      ]);
      ids.forEach((id, n) => {
        const events = history.get(id)!;
        const expected: UserState = foldEvents(createUserState(id, events[0]!.at), events);
        // One commit per round that reached the user, each of which changed the view.
        const versions = events.length;
        const record = records[n];
        expect(record, id).not.toBeNull();
        expect(record!.state, id).toEqual(toPersisted(expected));
        expect(record!.viewVersion, id).toBe(versions);
        const view = views[n];
        expect(view, id).not.toBeNull();
        const { tier, status, trialEndsAt, gracePeriod, crisis, features, sync } = view!;
        expect({ tier, status, trialEndsAt, gracePeriod, crisis, features, sync }, id).toEqual(deriveView(expected.snapshot));
        expect(view!.version, id).toBe(versions);
        checkedViews++;
      });
    }
    expect(checkedViews).toBe(USERS);
    // Spot-check that the fold is not trivially the same for everyone.
    expect((await client.lastView(user(0), DEVICE))!.crisis.active).toBe(true);
    expect((await client.lastView(user(0), DEVICE))!.tier).toBe('grace_period');
    expect((await client.lastView(user(1), DEVICE))!.tier).toBe('premium');
    expect((await client.lastView(user(2), DEVICE))!.tier).toBe('basic');

    // Each event reached a passivated user: one activation per event, and as many passivations.
    const metrics = await client.metrics();
    expect(metrics.events).toBe(published);
    expect(metrics.fenced).toBe(0);
    expect(metrics.activations).toBeGreaterThan(USERS);
    expect(metrics.activations).toBeGreaterThanOrEqual(published);
    expect(metrics.passivations).toBeGreaterThanOrEqual(published);
    expect(last.residents).toBe(0);
    expect(samples).toBeGreaterThan(20);
    expect(maxResidents).toBeLessThanOrEqual(MAX_RESIDENT);
    // The node's own high-water mark catches what the 20 ms samples could miss.
    expect(metrics.residentsPeak).toBeLessThanOrEqual(MAX_RESIDENT);
    expect(metrics.residentsPeak).toBeGreaterThan(MAX_RESIDENT / 2);

    console.log(
      [
        `passivation: ${published} events to ${USERS} users in ${ROUNDS.length} rounds, ${Date.now() - started} ms (per round: ${roundMs.join(', ')} ms)`,
        `residents: max ${maxResidents} over ${samples} samples, node's peak ${metrics.residentsPeak} (cap ${MAX_RESIDENT})`,
        `activations ${metrics.activations}, passivations ${metrics.passivations}, commits ${metrics.commits},` +
          ` activation p50 ${metrics.activationLatencyMs.p50} ms / p99 ${metrics.activationLatencyMs.p99} ms`,
      ].join('\n  '),
    );
  });
});
