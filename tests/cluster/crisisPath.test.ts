/**
 * The crisis path through a frozen server (README, "The crisis path"), on a three-server cluster
 * with a runtime node: a user's tablet is connected to a server that was stopped with SIGSTOP, and
 * holds a standby connection on another. A press on the user's phone reaches the tablet through
 * the standby, shown as a provisional crisis while the tablet's own connection has not moved yet
 * (a trial device checks its server every 30 s); once the server resumes and the press is stored,
 * the tablet shows the stored crisis view, provisional no more.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { DeviceActor } from '../../clients/deviceActor.ts';
import { connectNats } from '../../transport/connection.ts';
import { useClusterSystem } from '../support/clusterSystem.ts';
import { registerDevices } from '../support/events.ts';
import { waitFor } from '../support/processes.ts';

const system = useClusterSystem({ nodes: 1 });

/** A device's connection to one server of the cluster (the runtime's role: the path, not the sign-in, is under test). */
const connectTo = (url: string, name: string) => connectNats({ servers: url, name, credentials: { role: 'runtime' } });

/** Counts a connection's moves to another server. */
function moves(nc: NatsConnection): { count: number } {
  const seen = { count: 0 };
  void (async () => {
    for await (const s of nc.status()) if (s.type === 'disconnect' || s.type === 'reconnect') seen.count++;
  })();
  return seen;
}

describe('the crisis path', () => {
  it("reaches a device whose server is frozen through its standby connection, before the device leaves that server", async () => {
    const { cluster, client, topology } = system();
    const [phoneUrl, frozenUrl, standbyUrl] = cluster.urls as [string, string, string];
    const frozen = cluster.servers[1]!.name;
    const user = 'crisis-path-u1';
    await system().publish(...registerDevices(user, ['phone', 'tablet']));
    await waitFor(() => client.lastView(user).then((v) => v?.devices.length === 2), "the user's view to list both devices");

    const phoneNc = await connectTo(phoneUrl, 'phone');
    const tabletNc = await connectTo(frozenUrl, 'tablet');
    const standby = await connectTo(standbyUrl, 'tablet/standby');
    const tabletMoves = moves(tabletNc);
    const phone = await DeviceActor.start({ nc: phoneNc, topology, userId: user, deviceId: 'phone' });
    const tablet = await DeviceActor.start({ nc: tabletNc, standby, topology, userId: user, deviceId: 'tablet' });
    expect(tablet.view?.sync.frequency).toBe('background');

    process.kill(cluster.pid(frozen)!, 'SIGSTOP');
    try {
      const stored = phone.crisisButton();
      await waitFor(() => tablet.shown?.crisis.active, 'the tablet to show the crisis');
      expect(tabletMoves.count).toBe(0);
      expect(tablet.view!.crisis.active).toBe(false);
      process.kill(cluster.pid(frozen)!, 'SIGCONT');
      await stored;
    } finally {
      process.kill(cluster.pid(frozen)!, 'SIGCONT');
    }

    await waitFor(() => tablet.view?.crisis.active, 'the tablet to apply the stored crisis view', 60_000);
    expect(tablet.shown).toEqual(tablet.view);
    await Promise.all([phone.stop(), tablet.stop()]);
    await Promise.all([phoneNc, tabletNc, standby].map((nc) => nc.close()));
  });
});
