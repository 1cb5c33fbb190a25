/**
 * Integration (real nats-server, runtime and device processes): a crisis event overtakes the normal
 * events queued before it (DESIGN §6.7). 20,000 normal events for 2,000 users and then one crisis
 * event are stored while the runtime node is down, so the node starts with the whole backlog already
 * in the streams; the crisis view must reach all three devices of the crisis user long before the
 * normal backlog has drained, and nothing of the backlog may be lost.
 */
import { describe, expect, it } from 'vitest';
import type { EventOf, UserEvent } from '../../machines/events.ts';
import { createUserState, foldEvents, toPersisted } from '../../machines/userState.ts';
import { decode } from '../../transport/codec.ts';
import { AuditRecord } from '../../transport/schemas.ts';
import { CRISIS_FEATURES, event, registerDevices } from '../support/events.ts';
import { waitFor, type AppliedView } from '../support/processes.ts';
import { useSystem } from '../support/system.ts';
import { laneTotals } from '../support/settle.ts';

const system = useSystem();

const USERS = 2_000;
const EVENTS_PER_USER = 10;
const NORMAL_TOTAL = USERS * EVENTS_PER_USER;
/** Event indexes (per user) that are low-scoring GAD-7 assessments: applied, but no transition. */
const ASSESSMENT_AT = new Set([3, 7]);
const PLAN_CHANGES_PER_USER = EVENTS_PER_USER - ASSESSMENT_AT.size;
const CRISIS_USER = 'crisis-user';
const DEVICES = ['phone', 'tablet', 'web'];

const backlogUser = (i: number) => `bl-${String(i).padStart(4, '0')}`;

/** User i's k-th event: plan changes alternating tier (each one a transition), two assessments. */
function backlogEvent(i: number, k: number, at: number): UserEvent {
  const userId = backlogUser(i);
  if (ASSESSMENT_AT.has(k)) {
    return event(userId, 'assessment_completed', { instrument: 'gad7', answers: [0, 1, 0, 1, 0, 0, 1], at });
  }
  const j = k - [...ASSESSMENT_AT].filter((a) => a < k).length;
  return event(userId, 'plan_changed', { subscriptionId: `sub_${userId}`, tier: (i + j) % 2 === 0 ? 'basic' : 'premium', at });
}

describe('priority: a crisis event overtakes a queued normal backlog', () => {
  it('20,000 normal events queued across 2,000 users, then one crisis: the crisis view reaches the devices before the backlog drains', async () => {
    const { client } = system();
    const devices = await system().devices(...DEVICES.map((d) => `${CRISIS_USER}:${d}`));
    const keys = DEVICES.map((d) => `${CRISIS_USER}:${d}`);

    // The crisis user: three devices, a basic subscription, settled on every device.
    await client.publish(
      ...registerDevices(CRISIS_USER, DEVICES),
      event(CRISIS_USER, 'subscription_activated', { subscriptionId: 'sub_crisis', tier: 'basic' }),
    );
    for (const key of keys) await devices.waitForView(key, (v) => v.tier === 'basic' && !v.crisis, 'basic, no crisis');

    // With the node stopped: the backlog, one round (event k of every user) at a time so each user's
    // events are stored in order, then the crisis event, stored after all of it.
    const history = new Map<string, UserEvent[]>();
    const base = Date.now();
    let crisis!: EventOf<'crisis_button'>;
    let nodeStartedAt = 0;
    let publishMs = 0;
    const runtime = await system().restartRuntime({
      before: async () => {
        const started = performance.now();
        for (let k = 0; k < EVENTS_PER_USER; k++) {
          const round = Array.from({ length: USERS }, (_, i) => backlogEvent(i, k, base + k));
          for (const e of round) {
            const list = history.get(e.userId) ?? [];
            list.push(e);
            history.set(e.userId, list);
          }
          await Promise.all(round.map((e) => client.publish(e)));
        }
        crisis = event(CRISIS_USER, 'crisis_button', { deviceId: 'phone' });
        await client.publish(crisis);
        publishMs = performance.now() - started;
        expect((await laneTotals(client, 'normal')).pending).toBe(NORMAL_TOTAL);
        nodeStartedAt = Date.now();
      },
    });
    const readyAt = runtime.logs.find((l) => l.msg === 'runtime node ready')?.time as number;

    // The crisis view on every device, and the node's progress on the backlog right then.
    const crisisViews: AppliedView[] = [];
    for (const key of keys) crisisViews.push(await devices.waitForView(key, (v) => v.crisis, 'crisis view', 20_000));
    const atCrisis = await client.metrics();
    const crisisAppliedAt = Math.max(...crisisViews.map((v) => v.appliedAt));
    // `events` counts the crisis event too; it only grows, so this bounds the backlog left from below.
    const unprocessedAtCrisis = NORMAL_TOTAL - (atCrisis.events - 1);

    for (const v of crisisViews) {
      expect(v.features).toEqual(expect.arrayContaining([...CRISIS_FEATURES, 'advanced_crisis_features']));
      expect(v.priority).toBe('CRISIS_EMERGENCY');
      expect(v.tier).toBe('basic');
    }
    expect(new Set(crisisViews.map((v) => v.version)).size).toBe(1);
    expect(unprocessedAtCrisis).toBeGreaterThan(NORMAL_TOTAL / 2);

    // Mid-backlog, with the node saturated, a clinician raises the crisis level: that view overtakes too.
    await waitFor(async () => (await client.metrics()).events > 1 + NORMAL_TOTAL / 5, 'the backlog under way', 20_000);
    const escalation = event(CRISIS_USER, 'crisis_detected', { source: 'clinician', level: 'critical' });
    await client.publish(escalation);
    const escalated: AppliedView[] = [];
    for (const key of keys) escalated.push(await devices.waitForView(key, (v) => v.crisisLevel === 'critical', 'critical crisis view', 20_000));
    const atEscalation = await client.metrics();
    const escalationAppliedAt = Math.max(...escalated.map((v) => v.appliedAt));
    const unprocessedAtEscalation = NORMAL_TOTAL - (atEscalation.events - 2);
    expect(unprocessedAtEscalation).toBeGreaterThan(0);
    expect(new Set(escalated.map((v) => v.version)).size).toBe(1);
    expect(escalated[0]!.version).toBe(crisisViews[0]!.version + 1);

    // Nothing lost: every normal event is applied and acknowledged.
    await waitFor(async () => (await client.metrics()).events >= NORMAL_TOTAL + 2, 'the backlog applied', 45_000);
    await waitFor(
      async () => {
        const normal = await laneTotals(client, 'normal');
        return normal.pending === 0 && normal.ackPending === 0;
      },
      'the backlog acknowledged',
      10_000,
    );
    const drained = await client.metrics();
    expect(drained.events).toBe(NORMAL_TOTAL + 2);
    expect(drained.duplicates + drained.stale).toBe(0);

    // Audit: the crisis was recorded while normal events queued before it were still being applied.
    const audits = await client.readStream(client.topology.streams.audit, (d) => decode(AuditRecord, d));
    const crisisAudit = audits.filter((a) => a.eventId === crisis.id);
    expect(crisisAudit).toHaveLength(1);
    const normal = audits.filter((a) => a.userId.startsWith('bl-'));
    expect(normal).toHaveLength(USERS * PLAN_CHANGES_PER_USER);
    expect(new Set(normal.map((a) => a.eventId)).size).toBe(normal.length);
    const crisisRecordedAt = crisisAudit[0]!.recordedAt;
    const lastNormalAt = Math.max(...normal.map((a) => a.recordedAt));
    const overtaken = normal.filter((a) => a.recordedAt > crisisRecordedAt).length;
    expect(crisisAppliedAt).toBeLessThan(lastNormalAt);
    expect(overtaken).toBeGreaterThan(normal.length / 2);
    const escalationAudit = audits.filter((a) => a.eventId === escalation.id);
    expect(escalationAudit).toHaveLength(1);
    expect(escalationAudit[0]!.crisisLevel).toBe('critical');
    const escalationRecordedAt = escalationAudit[0]!.recordedAt;
    const overtakenByEscalation = normal.filter((a) => a.recordedAt > escalationRecordedAt).length;
    expect(overtakenByEscalation).toBeGreaterThan(0);
    expect(escalationAppliedAt).toBeLessThan(lastNormalAt);
    // Printed, not asserted (timing): how many normal transitions the node applied while the escalation was on its way.
    const appliedWhileInTransit = normal.filter((a) => a.recordedAt >= escalation.at && a.recordedAt <= escalationRecordedAt).length;

    // Every backlog user ends where the statechart's fold of its events says.
    for (let i = 0; i < USERS; i += 200) {
      const ids = Array.from({ length: 200 }, (_, n) => backlogUser(i + n));
      const records = await Promise.all(ids.map((id) => client.userRecord(id)));
      records.forEach((record, n) => {
        const events = history.get(ids[n]!)!;
        const expected = foldEvents(createUserState(ids[n]!, events[0]!.at), events);
        expect(record?.state).toEqual(toPersisted(expected));
      });
    }

    console.log(
      [
        `priority: published ${NORMAL_TOTAL} normal + 1 crisis event with the node down in ${publishMs.toFixed(0)} ms`,
        `crisis view on all ${DEVICES.length} devices ${crisisAppliedAt - nodeStartedAt} ms after the node process was started` +
          (readyAt ? ` (${crisisAppliedAt - readyAt} ms after it logged ready)` : ''),
        `normal events still unprocessed when the crisis view was applied: >= ${unprocessedAtCrisis} of ${NORMAL_TOTAL}`,
        `normal audit records recorded after the crisis audit record: ${overtaken} of ${normal.length}`,
        `escalation published mid-backlog: on all devices ${escalationAppliedAt - escalation.at} ms after it was published,` +
          ` with >= ${unprocessedAtEscalation} normal events unprocessed; ${overtakenByEscalation} normal audit records after it`,
        `escalation: applied by the node ${escalationRecordedAt - escalation.at} ms after publish; ${appliedWhileInTransit} normal transitions recorded in between`,
        `last normal event applied ${lastNormalAt - nodeStartedAt} ms after the node process was started,` +
          ` ${lastNormalAt - crisisAppliedAt} ms after the crisis view was applied`,
      ].join('\n  '),
    );
  });
});
