/**
 * Scale-out balance (issue 11), on a three-server cluster with runtime node processes: with n live
 * nodes no node owns more than ⌈P/n⌉+1 partitions once ownership settles, and a fourth node that
 * joins while events flow takes its share (partitions handed over a few at a time, none taken
 * from a node by force) without any user's events being applied out of order: every record is the
 * fold of its user's events in the order published, and the audit holds one record per transition.
 */
import { describe, expect, it } from 'vitest';
import type { UserRecord } from '../../actors/userRecord.ts';
import type { UserEvent } from '../../machines/events.ts';
import { nodeId, useClusterSystem, type ClusterSystem } from '../support/clusterSystem.ts';
import { expectAuditOf, expectFoldOf, historyOf } from '../support/histories.ts';
import { lanesSettled } from '../support/settle.ts';

const PARTITIONS = 12;
const system = useClusterSystem({ nodes: 3, env: { FM_PARTITIONS: String(PARTITIONS) } });

const USERS = 240;
const EVENTS_PER_USER = 10;
/** Rounds of events applied before the fourth node starts. */
const JOIN_AFTER_ROUND = 3;

/** Partitions per node, and the bound the issue sets for n nodes. */
function loads(claims: Map<number, string>, nodes: readonly string[]): { counts: Record<string, number>; bound: number } {
  const counts = Object.fromEntries(nodes.map((n) => [n, [...claims.values()].filter((c) => c === n).length]));
  return { counts, bound: Math.ceil(PARTITIONS / nodes.length) + 1 };
}

/** Log records a node wrote with this message. */
const logged = (sys: ClusterSystem, id: string, msg: string) => sys.node(id).logs.filter((l) => l.msg === msg);

describe('balance', () => {
  it('three nodes: every partition owned, none with more than ⌈P/3⌉+1', async () => {
    const sys = system();
    const nodes = [1, 2, 3].map(nodeId);
    const claims = await sys.ownershipSettled(nodes);
    const { counts, bound } = loads(claims, nodes);
    console.log(`balance: 3 nodes hold ${JSON.stringify(counts)} of ${PARTITIONS} partitions`);
    expect(claims.size).toBe(PARTITIONS);
    for (const n of nodes) expect(counts[n], n).toBeLessThanOrEqual(bound);
  });

  it('a fourth node joining while events flow takes its share; no user has events applied out of order', async () => {
    const sys = system();
    const users = Array.from({ length: USERS }, (_, i) => `bal-u${i}`);
    const start = Date.now() - 60_000;
    const histories = new Map<string, UserEvent[]>(users.map((u, i) => [u, historyOf(u, i, start)]));

    // Event i of every user, then event i + 1. The first rounds are applied by the three nodes; the
    // fourth starts with the next round, and the last rounds wait until it is ready, so its share
    // is handed over while they are published and applied: its users' histories span two owners.
    let joining: Promise<unknown> | undefined;
    let joined = 0;
    const began = Date.now();
    await (async () => {
      for (let i = 0; i < EVENTS_PER_USER; i++) {
        if (i === JOIN_AFTER_ROUND) {
          await lanesSettled(sys.client);
          joined = Date.now();
          joining = sys.startNode(nodeId(4));
        }
        if (i === JOIN_AFTER_ROUND + 2) await joining;
        await Promise.all(users.map((u) => sys.publish(histories.get(u)![i]!)));
      }
    })();
    const finished = Date.now();

    const nodes = [1, 2, 3, 4].map(nodeId);
    const claims = await sys.ownershipSettled(nodes);
    const { counts, bound } = loads(claims, nodes);
    // Hand-overs since the fourth node started (the first three also handed over as they started).
    const handedOver = nodes.flatMap((n) => logged(sys, n, 'partition handed over').map((l) => l.time as number)).filter((t) => t >= joined);
    console.log(
      `balance: 4 nodes hold ${JSON.stringify(counts)}; ${handedOver.length} hand-overs, ` +
        `${handedOver.filter((t) => t < finished).length} of them while events were being published ` +
        `(node-4 started ${joined - began} ms after publishing began, which ended ${finished - joined} ms later)`,
    );
    for (const n of nodes) expect(counts[n], n).toBeLessThanOrEqual(bound);
    expect(counts[nodeId(4)]).toBeGreaterThan(0);
    // The old owners handed its share over (taken only once free).
    expect(handedOver.length).toBeGreaterThanOrEqual(counts[nodeId(4)]!);
    // Taken from no live node by force: none lost a partition it held (its claim was seen first).
    expect(nodes.flatMap((n) => logged(sys, n, 'partition lost to another client'))).toEqual([]);

    await lanesSettled(sys.client);
    const records = new Map<string, UserRecord | null>(await Promise.all(users.map(async (u) => [u, await sys.client.userRecord(u)] as const)));
    const audit = Map.groupBy(await sys.client.audit(), (a) => a.userId);
    for (const u of users) expectAuditOf(u, audit.get(u) ?? [], expectFoldOf(u, records.get(u), histories.get(u)!));
    // The fourth node applied the rest of histories the others began.
    expect((await sys.metrics(nodeId(4))).events).toBeGreaterThan(0);
  });
});
