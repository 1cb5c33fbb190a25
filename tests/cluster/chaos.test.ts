/**
 * Chaos on the scale-out deployment (issue 11): three nats-servers, three runtime node processes
 * and device processes. 10,000 events for 1,000 users are published, a crisis button press among
 * each tenth user's; in the middle one node and the nats-server leading the normal lane's stream
 * are killed -9 together, and both are started again. Then: every accepted event is applied once
 * (each record is the fold of its user's events, the audit holds exactly one record per
 * transition), every device converges and never shows an older state after a newer one, and every
 * crisis reaches its user's device.
 */
import { describe, expect, it } from 'vitest';
import { partitionOf } from '../../actors/partitions.ts';
import type { UserRecord } from '../../actors/userRecord.ts';
import { deriveView } from '../../machines/deviceView.ts';
import type { UserEvent } from '../../machines/events.ts';
import { nodeId, useClusterSystem } from '../support/clusterSystem.ts';
import { decodeDeviceView } from '../../transport/viewWire.ts';
import { DEVICE, expectAuditOf, expectDeviceFollowed, expectFoldOf, historyOf, type Fold } from '../support/histories.ts';
import { waitFor, type DeviceProcess } from '../support/processes.ts';
import { devicesSettled, lanesSettled } from '../support/settle.ts';

const PARTITIONS = 12;
const system = useClusterSystem({ nodes: 3, env: { FM_PARTITIONS: String(PARTITIONS) } });

const USERS = 1_000;
const EVENTS_PER_USER = 10;
/** Every tenth user presses the crisis button. */
const isCrisisUser = (i: number) => i % 10 === 0;
/** Users with a device: every crisis user and half as many others (each device is an R3 consumer). */
const hasDevice = (i: number) => i % 10 === 0 || i % 20 === 5;
/** Devices per device process: each creates its consumers at once, and the cluster's API answers them in turn. */
const DEVICES_PER_PROCESS = 50;
/** Kill once the nodes applied this many events between them: well under way, far from done. */
const KILL_AFTER_EVENTS = 3_500;
const VICTIM = nodeId(2);

describe('chaos: a node and the normal lane leader killed -9 under 10,000 events', () => {
  it('loses nothing, applies nothing twice, converges every device and delivers every crisis', async () => {
    const sys = system();
    const { client, cluster } = sys;
    const users = Array.from({ length: USERS }, (_, i) => `chaos-u${String(i).padStart(4, '0')}`);
    const start = Date.now() - 60_000;
    const histories = new Map<string, UserEvent[]>(users.map((u, i) => [u, historyOf(u, i, start, { crisis: isCrisisUser(i) })]));
    const devices = users.filter((_, i) => hasDevice(i)).map((u) => `${u}:${DEVICE}`);
    const crisisUsers = users.filter((_, i) => isCrisisUser(i));
    const began = Date.now();
    const processes: DeviceProcess[] = [];
    for (let i = 0; i < devices.length; i += DEVICES_PER_PROCESS) processes.push(await sys.devices(...devices.slice(i, i + DEVICES_PER_PROCESS)));
    const appliedBy = (device: string) => processes.flatMap((p) => p.applied.get(device) ?? []);
    console.log(`chaos: ${devices.length} devices started in ${Date.now() - began} ms`);

    // Half the users have their events spread over the stream (event i of all of them, then event
    // i + 1), so all of them are part-way at the kill; the other half have their ten back to back.
    const spread = users.filter((_, i) => i % 2 === 0);
    const blocks = users.filter((_, i) => i % 2 === 1);
    const perRound = blocks.length / EVENTS_PER_USER;
    const publishStarted = Date.now();
    const publishing = (async () => {
      for (let i = 0; i < EVENTS_PER_USER; i++) {
        await Promise.all(spread.map((u) => sys.publish(histories.get(u)![i]!)));
        await Promise.all(blocks.slice(i * perRound, (i + 1) * perRound).map((u) => sys.publish(...histories.get(u)!)));
      }
    })();

    const appliedByNodes = async () => (await Promise.all(sys.nodeIds.map((id) => sys.metrics(id)))).reduce((sum, m) => sum + m.events, 0);
    const atKill = await waitFor(async () => {
      const n = await appliedByNodes();
      return n > KILL_AFTER_EVENTS ? n : undefined;
    }, `the nodes to apply ${KILL_AFTER_EVENTS} events`, 60_000);
    const leader = await cluster.leader(client.jsm, client.topology.streams.normal);
    const victimHeld = (await sys.metrics(VICTIM)).partitions;
    const killedAt = Date.now();
    await Promise.all([sys.killNode(VICTIM), cluster.kill(leader)]);
    await cluster.restart(leader);
    const serverBack = Date.now();

    // The survivors take the victim's partitions, then it comes back and takes its share again.
    const survivors = sys.nodeIds;
    await sys.ownershipSettled(survivors, 40_000);
    const movedAt = Date.now();
    /** What the survivors logged about the victim's partitions since the kill. */
    const about = (msg: string) =>
      survivors.flatMap((id) => sys.node(id).logs.filter((l) => l.msg === msg && (l.time as number) >= killedAt && victimHeld.includes(l.partition as number)));
    // Each survivor logs a take just after its claim, which the settled ownership has seen.
    const taken = await waitFor(() => {
      const lines = about('partition taken');
      return new Set(lines.map((l) => l.partition)).size === victimHeld.length ? lines.map((l) => (l.time as number) - killedAt) : undefined;
    }, "the victim's partitions taken by the survivors");
    await sys.startNode(VICTIM);
    const restarted = Date.now();
    await sys.ownershipSettled([1, 2, 3].map(nodeId), 40_000);
    const rebalanced = Date.now();
    await publishing;
    console.log(
      `chaos: killed ${VICTIM} (held ${victimHeld.join(',')}) and ${leader} (normal lane leader) after ${atKill} events applied, ` +
        `${killedAt - publishStarted} ms into publishing; ${leader} healthy again after ${serverBack - killedAt} ms; ` +
        `the victim's ${victimHeld.length} partitions taken by the survivors ${Math.min(...taken)}–${Math.max(...taken)} ms after the kill ` +
        `(${about('partition not taken').length} attempts failed before, while the cluster elected leaders); ownership settled on the survivors ` +
        `after ${movedAt - killedAt} ms; ${VICTIM} ready ${restarted - movedAt} ms after its start, its share back ${rebalanced - restarted} ms later; ` +
        `publishing took ${Date.now() - publishStarted} ms`,
    );

    // Every user's record has all its events; then nothing is left in flight anywhere.
    const records = new Map<string, UserRecord>();
    const applied = (u: string) => records.get(u)?.state.recentEventIds.length ?? 0;
    await waitFor(
      async () => {
        const loaded = await Promise.all(users.filter((u) => applied(u) < EVENTS_PER_USER).map(async (u) => [u, await client.userRecord(u)] as const));
        for (const [u, r] of loaded) if (r) records.set(u, r);
        return users.every((u) => applied(u) === EVENTS_PER_USER);
      },
      'every user to have all its events',
      40_000,
    ).catch((err: Error) => {
      const behind = users.filter((u) => applied(u) < EVENTS_PER_USER);
      const missing = (u: string) => histories.get(u)!.filter((e) => !records.get(u)?.state.recentEventIds.includes(e.id)).map((e) => e.id);
      const where = behind.slice(0, 10).map((u) => `${u} (partition ${partitionOf(u, PARTITIONS)}): ${applied(u)}, missing ${missing(u).join(' ')}`);
      throw new Error(`${err.message}: ${behind.length} users behind, e.g. ${where.join(', ')}`);
    });
    await lanesSettled(client);
    // A device whose server was killed reconnects to another and catches up by direct get.
    for (const [i, p] of processes.entries()) await devicesSettled(client, p, devices.slice(i * DEVICES_PER_PROCESS, (i + 1) * DEVICES_PER_PROCESS), 60_000);
    console.log(`chaos: every record complete, the lanes and then every device settled ${Date.now() - killedAt} ms after the kill`);

    // Each record is the fold of its user's events, each applied once; one audit record per transition.
    const audit = Map.groupBy(await client.audit(), (a) => a.userId);
    const folds = new Map<string, Fold>();
    for (const u of users) {
      const fold = expectFoldOf(u, records.get(u), histories.get(u)!);
      expectAuditOf(u, audit.get(u) ?? [], fold);
      folds.set(u, fold);
    }

    // Every device followed its user forward and holds the latest view, as stored; every crisis reached it.
    const staleReads: string[] = [];
    for (const device of devices) {
      const [u] = device.split(':') as [string];
      const fold = folds.get(u)!;
      const views = appliedBy(device);
      expectDeviceFollowed(device, views, fold);
      const last = deriveView(fold.states.at(-1)!.snapshot);
      expect(views.at(-1), device).toMatchObject({ version: records.get(u)!.viewVersion, tier: last.tier, status: last.status, crisis: last.crisis.active });
      // What the stream holds, from its leader (a direct get may be answered by a follower still catching up).
      const stored = await client.jsm.streams.getMessage(client.topology.streams.views, { last_by_subj: client.topology.subjects.view(u) });
      const direct = await client.lastView(u, DEVICE);
      if (direct?.version !== records.get(u)!.viewVersion) staleReads.push(`${device}: v${direct?.version}`);
      expect(stored && decodeDeviceView(stored.data, stored.header, { userId: u }).version, device).toBe(records.get(u)!.viewVersion);
    }
    console.log(`chaos: ${staleReads.length} direct gets of a device's last view answered older than the stream's leader holds ${staleReads.slice(0, 5).join(', ')}`);
    for (const u of crisisUsers) {
      const views = appliedBy(`${u}:${DEVICE}`);
      expect(views.some((v) => v.crisis && v.presentation.hotlineQuickDial), `${u}: a crisis view applied`).toBe(true);
      expect(views.at(-1)!.crisis, u).toBe(true);
    }

    const metrics = await Promise.all(sys.nodeIds.map((id) => sys.metrics(id)));
    console.log(`chaos: after, per node ${JSON.stringify(metrics.map((m) => ({ node: m.nodeId, events: m.events, duplicates: m.duplicates, fenced: m.fenced, orphanedViews: m.orphanedViews, retries: m.retries })))}`);
    for (const m of metrics) expect([m.nodeId, m.stale, m.deadLetters], m.nodeId).toEqual([m.nodeId, 0, 0]);
  }, 120_000);
});
