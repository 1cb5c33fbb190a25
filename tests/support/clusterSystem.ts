/**
 * A scale-out system per test file (DESIGN §8): a three-server cluster (cluster.ts), runtime node
 * processes on it that share one environment (`FM_REPLICAS=3`, every server in `NATS_URL`, the
 * file's `FM_PARTITIONS`), a test client connected to every server, and device processes on
 * demand. A node can be killed -9, paused (SIGSTOP), resumed and started again under its id.
 * Everything is stopped after the file's tests; with `FM_TEST_LOGS=<dir>` every node's log is kept there.
 */
import { Kvm, type KV } from '@nats-io/kv';
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { deploymentFromEnv } from '../../actors/config.ts';
import type { PartitionClaim } from '../../actors/membership.ts';
import type { MetricsSnapshot } from '../../actors/metrics.ts';
import { assignPartitions } from '../../actors/partitions.ts';
import type { UserEvent } from '../../machines/events.ts';
import { isTransient } from '../../transport/errors.ts';
import { publishEvent } from '../../transport/eventPublisher.ts';
import { createTopology, type Topology } from '../../transport/topology.ts';
import { TestClient } from './client.ts';
import { startTestCluster, type TestCluster } from './cluster.ts';
import { DeviceProcess, RuntimeProcess, waitFor } from './processes.ts';

/**
 * Runs `request` until it does not fail transiently. On a cluster a request written to a server
 * that was just killed is lost (nats.js reconnects to another at once, yet the request times out),
 * and a Raft group without a leader answers 503 until it elects one (5–7 s). Publishing an event
 * again is safe: its id is its `Nats-Msg-Id`. `giveUpAfterMs`: throw the last failure after that long.
 */
export async function surely<T>(request: () => Promise<T>, giveUpAfterMs = Number.POSITIVE_INFINITY): Promise<T> {
  const giveUpAt = Date.now() + giveUpAfterMs;
  for (;;) {
    try {
      return await request();
    } catch (err) {
      if (!isTransient(err) || Date.now() > giveUpAt) throw err;
    }
  }
}

/** The running scale-out system of a test file. */
export interface ClusterSystem {
  readonly cluster: TestCluster;
  readonly client: TestClient;
  readonly topology: Topology;
  /** The running (or paused) node process of an id. */
  node(id: string): RuntimeProcess;
  /** Ids of the node processes running or paused now, in start order. */
  readonly nodeIds: string[];
  /** Starts a node under `id` (a new one, or one that was killed) and waits until it is consuming. */
  startNode(id: string): Promise<RuntimeProcess>;
  /** kill -9 of a node; resolves once it has exited. */
  killNode(id: string): Promise<void>;
  /** SIGSTOP: the node keeps its connections and holds everything it had, frozen. */
  pauseNode(id: string): void;
  /** SIGCONT after {@link pauseNode}. */
  resumeNode(id: string): void;
  /** Starts a device process for `user:device` pairs (stopped after the file). */
  devices(...pairs: string[]): Promise<DeviceProcess>;
  /** Publishes events in order, each retried through transient failures until JetStream stored it. */
  publish(...events: UserEvent[]): Promise<void>;
  /** One node's metrics (its own subject); throws when the node does not answer for 10 s. */
  metrics(id: string): Promise<MetricsSnapshot>;
  /** The partition claims in the partitions bucket: partition → node id. */
  claims(): Promise<Map<number, string>>;
  /** The live members (keys in the members bucket). */
  members(): Promise<string[]>;
  /**
   * Waits until ownership has settled among `nodes`: the members are exactly these, every
   * partition is claimed as the nodes' own assignment (`assignPartitions`) says, so no node has a
   * move left to make, and each node holds (by its metrics) exactly the partitions claimed for it.
   * Returns the claims.
   */
  ownershipSettled(nodes: readonly string[], timeoutMs?: number): Promise<Map<number, string>>;
}

/** A node process's id, as the system names them: `node-1`, `node-2`, … */
export const nodeId = (n: number) => `node-${n}`;

/** Options of {@link useClusterSystem}. */
export interface ClusterSystemOptions {
  /** Nodes started before the tests (`node-1` … `node-<n>`). @default 3 */
  nodes?: number;
  /** Environment of every node (and of the devices, for the deployment), over `FM_REPLICAS=3`. */
  env?: Record<string, string>;
}

/** Starts a cluster system in `beforeAll` and stops it in `afterAll`; returns an accessor. */
export function useClusterSystem(options: ClusterSystemOptions = {}): () => ClusterSystem {
  const env = { FM_REPLICAS: '3', ...options.env };
  const topology = createTopology(deploymentFromEnv(env).topology);
  let system: ClusterSystem | undefined;
  const nodes = new Map<string, RuntimeProcess>();
  /** Every node process started, killed ones too, for their logs. */
  const started: Array<[string, RuntimeProcess]> = [];
  const paused = new Set<string>();
  const deviceProcesses: DeviceProcess[] = [];
  let cluster: TestCluster | undefined;
  let client: TestClient | undefined;

  beforeAll(async () => {
    cluster = await startTestCluster();
    const url = cluster.url;
    client = await TestClient.connect(url, topology);
    const buckets = new Kvm(client.nc);
    let kv: Promise<{ members: KV; partitions: KV }> | undefined;
    // Opened once a node has provisioned the buckets.
    const bucketsOpen = () =>
      (kv ??= Promise.all([buckets.open(topology.buckets.members), buckets.open(topology.buckets.partitions)]).then(([members, partitions]) => ({
        members,
        partitions,
      })));
    const startNode = async (id: string) => {
      // Kept before it is ready, so a node that never gets ready is stopped with the others.
      const p = new RuntimeProcess('actors/main.ts', [], { NATS_URL: url, LOG_LEVEL: 'info', ...env, FM_NODE_ID: id }, () => {});
      nodes.set(id, p);
      started.push([id, p]);
      try {
        await p.waitForLine((l) => l.includes('runtime node ready'), `${id} ready`, 40_000);
      } catch (err) {
        throw new Error(`${(err as Error).message}\n${id}'s last log lines:\n${p.lines.slice(-15).join('\n')}`);
      }
      return p;
    };
    const running = (id: string) => {
      const p = nodes.get(id);
      if (!p) throw new Error(`no node ${id} running`);
      return p;
    };
    const c = client;
    system = {
      cluster,
      client: c,
      topology,
      node: running,
      get nodeIds() {
        return [...nodes.keys()];
      },
      startNode,
      async killNode(id) {
        await running(id).crash();
        nodes.delete(id);
        paused.delete(id);
      },
      pauseNode(id) {
        running(id).child.kill('SIGSTOP');
        paused.add(id);
      },
      resumeNode(id) {
        running(id).child.kill('SIGCONT');
        paused.delete(id);
      },
      async devices(...pairs) {
        const p = await DeviceProcess.start(url, pairs, env);
        deviceProcesses.push(p);
        return p;
      },
      async publish(...events) {
        for (const e of events) await surely(() => publishEvent(c.js, topology.subjects, e));
      },
      async metrics(id) {
        // Bounded: a killed or paused node never answers.
        const reply = await surely(() => c.nc.request(topology.subjects.control(`metrics.${id}`), '', { timeout: 2_000 }), 10_000);
        return JSON.parse(reply.string()) as MetricsSnapshot;
      },
      // Read key by key (direct gets): `kv.keys()` makes a consumer per call, and a test that polls
      // would pile them up to the stream's consumer limit.
      async claims() {
        const { partitions } = await bucketsOpen();
        const entries = await Promise.all(
          Array.from({ length: topology.options.partitions }, (_, p) => surely(() => partitions.get(`p.${p}`)).then((e) => [p, e] as const)),
        );
        return new Map(entries.flatMap(([p, e]) => (e?.operation === 'PUT' ? [[p, (e.json() as PartitionClaim).nodeId] as const] : [])));
      },
      async members() {
        const { members } = await bucketsOpen();
        const stream = `KV_${topology.buckets.members}`;
        const info = await surely(() => c.jsm.streams.info(stream, { subjects_filter: '>' }));
        const keys = Object.keys(info.state.subjects ?? {}).map((s) => s.slice(`$KV.${topology.buckets.members}.`.length));
        const entries = await Promise.all(keys.map((k) => surely(() => members.get(k))));
        return keys.filter((_, i) => entries[i]?.operation === 'PUT').sort();
      },
      async ownershipSettled(expected, timeoutMs = 30_000) {
        const want = assignPartitions(topology.options.partitions, expected);
        let seen = '';
        try {
          return await waitFor(
            async () => {
              const members = await system!.members();
              const claims = await system!.claims();
              const held = await Promise.all(expected.map(async (id) => [id, (await system!.metrics(id)).partitions.join()] as const));
              seen = `members ${members.join()}; claims ${JSON.stringify(Object.fromEntries(claims))}; held ${JSON.stringify(Object.fromEntries(held))}`;
              if (members.join() !== [...expected].sort().join()) return undefined;
              if (claims.size !== want.size || [...want].some(([p, n]) => claims.get(p) !== n)) return undefined;
              const claimed = (id: string) => [...claims].filter(([, n]) => n === id).map(([p]) => p).sort((a, b) => a - b).join();
              return held.every(([id, partitions]) => partitions === claimed(id)) ? claims : undefined;
            },
            `ownership to settle on ${expected.join(', ')}`,
            timeoutMs,
          );
        } catch (err) {
          throw new Error(`${(err as Error).message}; last seen: ${seen}; assignment ${JSON.stringify(Object.fromEntries(want))}`);
        }
      },
    };
    for (let n = 1; n <= (options.nodes ?? 3); n++) await startNode(nodeId(n));
  });

  afterAll(async () => {
    // A paused process would keep its SIGTERM pending for ever.
    for (const id of paused) nodes.get(id)?.child.kill('SIGCONT');
    await Promise.all(deviceProcesses.map((p) => p.stop()));
    await Promise.all([...nodes.values()].map((p) => p.stop()));
    await client?.close();
    await cluster?.terminate();
    // FM_TEST_LOGS=<dir> keeps every node's log there (`<file>.<node>.<n>.log`), to read after a failure.
    const dir = process.env.FM_TEST_LOGS;
    if (dir) {
      await mkdir(dir, { recursive: true });
      const file = basename(expect.getState().testPath ?? 'cluster');
      await Promise.all(started.map(([id, p], i) => writeFile(join(dir, `${file}.${id}.${i}.log`), p.lines.join('\n'))));
    }
  });

  return () => {
    if (!system) throw new Error('useClusterSystem: the system starts in beforeAll');
    return system;
  };
}
