/**
 * Integration (real nats-server and runtime process): idle residents are frozen to their record's
 * bytes (FM_FREEZE_AFTER_MS) and rebuilt for their next event without a read from the store. Rounds
 * of events, each after every user froze: every record and stored view equals the statechart's
 * fold of the user's events, and each user was activated from the store once.
 */
import { describe, expect, it } from 'vitest';
import { deriveView } from '../../machines/deviceView.ts';
import type { UserEvent } from '../../machines/events.ts';
import { createUserState, foldEvents, toPersisted } from '../../machines/userState.ts';
import { event } from '../support/events.ts';
import { waitFor } from '../support/processes.ts';
import { lanesSettled } from '../support/settle.ts';
import { useSystem } from '../support/system.ts';

const system = useSystem({ FM_FREEZE_AFTER_MS: '50', FM_SWEEP_MS: '20', FM_IDLE_MS: '3600000' });
const USERS = 200;
const user = (i: number) => `fz-${String(i).padStart(3, '0')}`;
const ROUNDS: Array<(i: number) => UserEvent> = [
  (i) => event(user(i), 'device_registered', { deviceId: 'd1', platform: 'ios' }),
  (i) => event(user(i), 'subscription_activated', { subscriptionId: `sub_${user(i)}`, tier: 'premium' }),
  (i) => event(user(i), 'safety_plan_updated', { plan: { warningSigns: [`sign ${i}`], copingStrategies: [], distractions: [], peopleToAsk: [], professionals: [], safeEnvironment: [] } }),
  (i) => (i % 2 ? event(user(i), 'crisis_button', { deviceId: 'd1' }) : event(user(i), 'plan_changed', { subscriptionId: `sub_${user(i)}`, tier: 'basic' })),
];

describe('frozen residents', () => {
  it('are rebuilt from their bytes for the next event: records and views equal the fold, one activation each', async () => {
    const { client } = system();
    const history = new Map<string, UserEvent[]>();
    for (const round of ROUNDS) {
      const before = await client.metrics();
      const events = Array.from({ length: USERS }, (_, i) => round(i));
      for (const e of events) history.set(e.userId, [...(history.get(e.userId) ?? []), e]);
      await Promise.all(events.map((e) => client.publish(e)));
      await lanesSettled(client);
      // Every user idle past the freeze: the next round thaws them all.
      await waitFor(async () => (await client.metrics()).freezes - before.freezes >= USERS, 'every user frozen', 20_000);
    }
    const m = await client.metrics();
    expect(m.activations).toBe(USERS);
    expect(m.thaws).toBe(USERS * (ROUNDS.length - 1));
    for (let i = 0; i < USERS; i++) {
      const u = user(i);
      const fold = foldEvents(createUserState(u, history.get(u)![0]!.at), history.get(u)!);
      const record = await client.userRecord(u);
      expect(record?.state.value, u).toEqual(toPersisted(fold).value);
      expect(record?.state.context).toEqual(fold.snapshot.context);
      expect(record?.safety.plan?.warningSigns).toEqual([`sign ${i}`]);
      const view = await client.lastView(u, 'd1');
      expect(view).toMatchObject({ version: record!.viewVersion, tier: deriveView(fold.snapshot).tier, crisis: { active: i % 2 === 1 } });
    }
  });
});
