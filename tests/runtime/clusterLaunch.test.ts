/**
 * The scale-out deployment's groundwork (DESIGN §8): a three-server cluster from nats.conf
 * (tests/support/cluster.ts), a runtime node on it with `FM_REPLICAS=3` and all three servers in
 * `NATS_URL`, and the ingress alone beside it. The node applies an event; every stream and bucket is
 * replicated three times; and a kill -9 of a follower of the normal lane loses no event: each one
 * acknowledged is stored once, and the restarted server catches up with all of them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deploymentFromEnv } from '../../actors/config.ts';
import { isTransient } from '../../transport/errors.ts';
import { createTopology, streamConfigs } from '../../transport/topology.ts';
import { TestClient } from '../support/client.ts';
import { useNatsCluster } from '../support/cluster.ts';
import { event } from '../support/events.ts';
import { RuntimeProcess, waitFor } from '../support/processes.ts';

const cluster = useNatsCluster();
const env = { FM_REPLICAS: '3', FM_NODE_ID: 'node-1' };
const topology = createTopology(deploymentFromEnv(env).topology);
let node: RuntimeProcess | undefined;
let client: TestClient;

beforeAll(async () => {
  node = await RuntimeProcess.start(cluster().url, env);
  client = await TestClient.connect(cluster().url, topology);
});
afterAll(async () => {
  await node?.stop();
  await client?.close();
});

/**
 * Runs `request` until it does not fail transiently. A request written to a connection whose server
 * was just killed is lost: nats.js reconnects to another server at once, yet the request only times
 * out (5 s); and a Raft group that lost its leader answers 503 until it elects one. An event's
 * publish is safe to repeat: its id is its `Nats-Msg-Id`.
 */
async function surely<T>(request: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await request();
    } catch (err) {
      if (!isTransient(err)) throw err;
    }
  }
}

/** Waits until the node has stored the user's record: it applied the user's events. */
function applied(userId: string): Promise<unknown> {
  return waitFor(() => surely(() => client.userRecord(userId)), `the record of ${userId}`);
}

describe('a runtime node on a three-server cluster', () => {
  it('applies an event, with every stream and bucket replicated three times', async () => {
    await client.publish(event('cluster-user', 'device_registered', { deviceId: 'phone', platform: 'ios' }));
    await applied('cluster-user');
    const streams = [...streamConfigs(topology).map((s) => s.name), ...Object.values(topology.buckets).map((b) => `KV_${b}`)];
    const replicas = await Promise.all(
      streams.map(async (name) => {
        const info = await client.jsm.streams.info(name);
        return [name, info.config.num_replicas, (info.cluster?.replicas ?? []).length + 1];
      }),
    );
    expect(replicas).toEqual(streams.map((name) => [name, 3, 3]));
  });

  it('has the ingress run alone beside it (FM_RUNTIME=off), healthy on the cluster', async () => {
    const ingress = await RuntimeProcess.start(cluster().url, { ...env, FM_NODE_ID: 'ingress', FM_RUNTIME: 'off', PORT: '0' }, 'scripts/start.ts');
    try {
      const health = await fetch(`http://127.0.0.1:${ingress.httpPort}/healthz`);
      expect([health.status, await health.json()]).toEqual([200, { nats: 'connected', streams: 'present' }]);
      expect(ingress.logs.find((l) => l.msg === 'runtime node ready')).toBeUndefined();
    } finally {
      await ingress.stop();
    }
  });

  it('loses nothing when a follower of the normal lane is killed -9 and comes back', async () => {
    const stream = topology.streams.normal;
    const leader = await cluster().leader(client.jsm, stream);
    const follower = cluster().servers.find((s) => s.name !== leader)!.name;
    const before = (await client.jsm.streams.info(stream)).state;

    await cluster().kill(follower);
    const events = Array.from({ length: 20 }, (_, i) => event(`survivor-${i}`, 'device_registered', { deviceId: 'phone', platform: 'ios' }));
    for (const e of events) await surely(() => client.publish(e));
    // Every acknowledged event is stored, and once only (a retried publish carries the same id).
    const after = (await surely(() => client.jsm.streams.info(stream))).state;
    expect([after.messages, after.last_seq]).toEqual([before.messages + events.length, before.last_seq + events.length]);

    await cluster().restart(follower);
    await waitFor(async () => (await cluster().localCopy(follower, stream))?.lastSeq === after.last_seq, `${follower} to catch up`, 30_000);
    expect(await cluster().localCopy(follower, stream)).toEqual({ messages: after.messages, lastSeq: after.last_seq });
  });
});
