/**
 * Deadlines on the scale-out deployment (issue 11): a grace deadline is a message schedule in the
 * normal lane, and it fires once, on the node that owns the user when it comes due, across a kill
 * -9 of a node and of the nats-server leading the normal lane. Users whose deadlines come due
 * during that outage lapse once each; users whose deadlines come due after it lapse once each, each
 * on the node that holds their partition then. Three servers, three runtime node processes.
 */
import { describe, expect, it } from 'vitest';
import { partitionOf } from '../../actors/partitions.ts';
import { deadlineEvent } from '../../machines/deadlines.ts';
import type { UserEvent } from '../../machines/events.ts';
import { DEFAULT_POLICY } from '../../machines/policy.ts';
import { createUserMachine } from '../../machines/userMachine.ts';
import { nodeId, useClusterSystem } from '../support/clusterSystem.ts';
import { event } from '../support/events.ts';
import { DEVICE, expectAuditOf, expectFoldOf } from '../support/histories.ts';
import { waitFor } from '../support/processes.ts';
import { lanesSettled } from '../support/settle.ts';

const PARTITIONS = 12;
const GRACE_MS = 30_000;
const system = useClusterSystem({ nodes: 3, env: { FM_PARTITIONS: String(PARTITIONS), FM_GRACE_MS: String(GRACE_MS) } });
/** The statechart as the nodes run it. */
const machine = createUserMachine({ ...DEFAULT_POLICY, graceMs: GRACE_MS });

const VICTIM = nodeId(2);
/** Users per group: two per partition. */
const USERS = 2 * PARTITIONS;
/** The first group's deadlines come due this long after they are set: while the cluster recovers. */
const DUE_DURING_MS = 5_000;

/** `count` users (ids with `prefix`), two per partition. */
function usersOf(prefix: string): string[] {
  const users: string[] = [];
  for (let i = 0; users.length < USERS; i++) {
    const u = `${prefix}${i}`;
    if (users.filter((x) => partitionOf(x, PARTITIONS) === partitionOf(u, PARTITIONS)).length < 2) users.push(u);
  }
  return users;
}

/** A user who subscribes and cancels: in the grace period until `canceledAt` + the grace length. */
function cancellation(user: string, canceledAt: number): UserEvent[] {
  const subscriptionId = `sub_${user}`;
  return [
    event(user, 'device_registered', { id: `${user}-e0`, at: canceledAt - 2_000, deviceId: DEVICE, platform: 'ios' }),
    event(user, 'subscription_activated', { id: `${user}-e1`, at: canceledAt - 1_000, subscriptionId, tier: 'basic' }),
    event(user, 'subscription_canceled', { id: `${user}-e2`, at: canceledAt, subscriptionId }),
  ];
}

describe('deadlines on a cluster', () => {
  it('each fires once, on the node owning the user when it comes due, across a node and a server kill', async () => {
    const sys = system();
    const { client, cluster, topology } = sys;
    const all = [1, 2, 3].map(nodeId);
    /** Messages per subject of the normal lane matching `filter` (the stream's own count, one request). */
    const messagesPerSubject = async (filter: string) => (await client.jsm.streams.info(topology.streams.normal, { subjects_filter: filter })).state.subjects ?? {};
    const schedules = () => messagesPerSubject(topology.subjects.all.schedules);
    await sys.ownershipSettled(all);
    // The first group is due soon after the kill; the second once the cluster has recovered.
    const now = Date.now();
    const during = usersOf('dl-during-');
    const after = usersOf('dl-after-');
    const histories = new Map<string, UserEvent[]>([
      ...during.map((u) => [u, cancellation(u, now + DUE_DURING_MS - GRACE_MS)] as const),
      ...after.map((u) => [u, cancellation(u, now)] as const),
    ]);
    const users = [...during, ...after];
    await Promise.all(users.map((u) => sys.publish(...histories.get(u)!)));
    await lanesSettled(client);
    const dueAfter = now + GRACE_MS;
    for (const u of users) {
      const record = await client.userRecord(u);
      expect(record?.state.value.subscription, u).toBe('grace_period');
      histories.get(u)!.push(deadlineEvent(u, { type: 'grace_ended', at: record!.state.context.graceEndsAt! }));
    }
    // One schedule per user in the normal lane.
    expect(await schedules()).toEqual(Object.fromEntries(users.map((u) => [topology.subjects.schedule(u), 1])));

    // kill -9 of a node and of the normal lane's leader; the server comes back at once, the node
    // once the others took its partitions.
    const leader = await cluster.leader(client.jsm, topology.streams.normal);
    const killedAt = Date.now();
    await Promise.all([sys.killNode(VICTIM), cluster.kill(leader)]);
    await cluster.restart(leader);
    await sys.ownershipSettled(all.filter((n) => n !== VICTIM), 40_000);
    await sys.startNode(VICTIM);
    const claims = await sys.ownershipSettled(all, 40_000);
    const recovered = Date.now();

    // The first group lapses, each user once.
    const lapsed = async (group: string[]) => {
      for (const u of group) await waitFor(async () => (await client.userRecord(u))?.state.value.subscription === 'lapsed', `${u} to lapse`, 30_000);
    };
    await lapsed(during);
    const duringLapsedAt = Date.now();
    await lanesSettled(client);

    // The second group comes due with ownership settled: which node applies each deadline is counted.
    expect(Date.now(), 'the cluster recovered before the second group is due').toBeLessThan(dueAfter);
    const before = new Map(await Promise.all(all.map(async (n) => [n, await sys.metrics(n)] as const)));
    await lapsed(after);
    await lanesSettled(client);
    const afterMetrics = new Map(await Promise.all(all.map(async (n) => [n, await sys.metrics(n)] as const)));
    expect(await sys.claims(), 'ownership unchanged while the second group came due').toEqual(claims);
    const owned = (n: string) => after.filter((u) => claims.get(partitionOf(u, PARTITIONS)) === n).length;
    const applied = all.map((n) => [n, afterMetrics.get(n)!.events - before.get(n)!.events, afterMetrics.get(n)!.duplicates - before.get(n)!.duplicates]);
    console.log(
      `deadlines: killed ${VICTIM} and ${leader} (normal lane leader); ownership settled again ${recovered - killedAt} ms after the kill; ` +
        `the ${during.length} deadlines due ${DUE_DURING_MS} ms after they were set had all fired and lapsed their users ${duringLapsedAt - killedAt} ms after the kill; ` +
        `the ${after.length} due after recovery applied per node (events, duplicates): ${JSON.stringify(applied)}`,
    );
    expect(applied).toEqual(all.map((n) => [n, owned(n), 0]));

    // Fired once each: one deadline event stored per user, applied once (the fold), one lapse audited.
    expect(await messagesPerSubject(topology.subjects.stored('normal', '*', '*', 'grace_ended'))).toEqual(Object.fromEntries(users.map((u) => [topology.subjects.stored('normal', partitionOf(u, PARTITIONS), u, 'grace_ended'), 1])));
    expect(await schedules(), 'every schedule fired and removed').toEqual({});
    const audit = Map.groupBy(await client.audit(), (a) => a.userId);
    for (const u of users) expectAuditOf(u, audit.get(u) ?? [], expectFoldOf(u, await client.userRecord(u), histories.get(u)!, machine));
  }, 90_000);
});
