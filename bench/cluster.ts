/**
 * `npm run bench -- --cluster`: the scale-out deployment on this machine. Three nats-servers
 * clustered on loopback (free ports, temp stores, every stream and bucket R3) and runtime nodes as
 * their own processes (`actors/main.ts`, `FM_NODE_ID`, all three servers in `NATS_URL`):
 *
 * - the single-server run's saturated closed loop with one, two and then three nodes, with the CPU
 *   time every process spent over it (`/proc/<pid>/stat`) divided by the events the nodes applied;
 * - a failover: kill -9 of a node, a crisis event at once for users whose partition it held (their
 *   time to a crisis view on all their devices), and crisis events every 50 ms until every
 *   partition is held again, none of which may be lost.
 *
 * Called by `bench/run.ts`; returns the fields it adds to the results.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { deploymentFromEnv } from '../actors/config.ts';
import type { PartitionClaim } from '../actors/membership.ts';
import { assignPartitions, partitionOf } from '../actors/partitions.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
import { freePort, startNatsCluster, type ClusterServerOptions, type NatsCluster } from '../scripts/natsProcess.ts';
import { cpuMs, machineMs } from './cpu.ts';
import {
  histogram,
  metrics,
  ms,
  now,
  pressCrisis,
  progress,
  quick,
  record,
  sampleCrises,
  saturated,
  SIZE,
  sleep,
  startLoad,
  startRuntime,
  stopChild,
  topology,
  type Load,
} from './harness.ts';

const SERVERS = 3;
const NODES = 3;
/** Every node's deployment: streams and buckets on all three servers. */
const DEPLOYMENT = { FM_REPLICAS: String(SERVERS) };
const PARTITIONS = deploymentFromEnv(DEPLOYMENT).topology.partitions;
const EVERY_PARTITION = Array.from({ length: PARTITIONS }, (_, p) => p);
/**
 * Plan changes in flight in the closed loop: the cluster on two cores is CPU-bound well before the
 * single-server run's 1,000 (every write is replicated to three servers). Crisis users pressing their button at the kill (on the killed node's partitions), and after
 * it every 50 ms.
 */
const CLUSTER = quick ? { inFlight: SIZE.inFlight, movedUsers: 10, windowUsers: 80 } : { inFlight: 300, movedUsers: 40, windowUsers: 150 };
const WINDOW_EVERY_MS = 50;
/** How long the CPU of idle processes is sampled before each saturated run. */
const IDLE_MS = quick ? 1_000 : 5_000;
/** Longest wait for the partitions to be balanced after a join or held again after the kill. */
const SETTLE_MS = 60_000;

const round2 = (x: number) => Math.round(x * 100) / 100;
/** Microseconds (as the histograms hold them) in ms, two decimals. */
const inMs = (us: number) => round2(us / 1000);

// ─── the cluster ─────────────────────────────────────────────────────────────────────────────

/** Who holds which partition, followed in the partitions bucket (`p.<n>` → the holder's claim). */
class Claims {
  private readonly holders = new Map<number, string>();
  private readonly waits = new Set<() => void>();
  private readonly stopWatch: () => void;

  private constructor(stopWatch: () => void) {
    this.stopWatch = stopWatch;
  }

  static async follow(nc: NatsConnection): Promise<Claims> {
    const kv = await new Kvm(nc).open(topology.buckets.partitions);
    const watcher = await kv.watch();
    const claims = new Claims(() => watcher.stop());
    void (async () => {
      for await (const entry of watcher) {
        const partition = Number(entry.key.slice('p.'.length));
        if (entry.operation === 'PUT') claims.holders.set(partition, (entry.json() as PartitionClaim).nodeId);
        else claims.holders.delete(partition);
        for (const check of claims.waits) check();
      }
    })();
    return claims;
  }

  /** The node holding a partition now (as claimed). */
  holder = (partition: number): string | undefined => this.holders.get(partition);

  /** Resolves with the time `test` first held of the claims (checked at every change), or undefined after `timeoutMs`. */
  until(test: (holder: (partition: number) => string | undefined) => boolean, timeoutMs = SETTLE_MS): Promise<number | undefined> {
    return new Promise((resolve) => {
      const done = (at: number | undefined) => {
        clearTimeout(timer);
        this.waits.delete(check);
        resolve(at);
      };
      const check = () => test(this.holder) && done(now());
      const timer = setTimeout(() => done(undefined), timeoutMs);
      this.waits.add(check);
      check();
    });
  }

  stop(): void {
    this.stopWatch();
  }
}

/** The cluster of a run: its servers, the bench's connection, the runtime nodes and their claims. */
interface Cluster {
  url: string;
  nats: NatsCluster;
  nc: NatsConnection;
  js: JetStreamClient;
  /** Running nodes by id, in the order they started. */
  nodes: Map<string, ChildProcess>;
  claims?: Claims;
}

/** Starts the next node (`node-<n>`) and waits until the partitions are where the assignment puts them. */
async function addNode(cluster: Cluster): Promise<void> {
  const nodeId = `node-${cluster.nodes.size + 1}`;
  progress(`cluster: starting ${nodeId}`);
  cluster.nodes.set(nodeId, await startRuntime(cluster.nc, cluster.url, { ...DEPLOYMENT, FM_NODE_ID: nodeId }));
  cluster.claims ??= await Claims.follow(cluster.nc);
  const assignment = assignPartitions(PARTITIONS, [...cluster.nodes.keys()]);
  progress(`cluster: ${cluster.nodes.size} node(s) balancing`);
  if ((await cluster.claims.until((holder) => EVERY_PARTITION.every((p) => holder(p) === assignment.get(p)))) === undefined) {
    throw new Error(`partitions not balanced over ${cluster.nodes.size} nodes within ${SETTLE_MS} ms`);
  }
}

/** Runs `steps` on a fresh three-server cluster; stops the nodes, the connection and the servers after. */
async function withCluster<T>(steps: (cluster: Cluster) => Promise<T>): Promise<T> {
  const servers: ClusterServerOptions[] = [];
  for (let i = 1; i <= SERVERS; i++) {
    const [port, httpPort, routePort, cwd] = await Promise.all([freePort(), freePort(), freePort(), mkdtemp(join(tmpdir(), `fullmind-bench-n${i}-`))]);
    servers.push({ name: `n${i}`, cwd, port, httpPort, routePort });
  }
  progress('cluster: starting servers');
  const nats = await startNatsCluster({ servers });
  const url = nats.urls.join(',');
  const nc = await connectNats({ servers: url, name: 'bench', credentials: { role: 'runtime' } });
  const cluster: Cluster = { url, nats, nc, js: jetstream(nc), nodes: new Map() };
  try {
    return await steps(cluster);
  } finally {
    cluster.claims?.stop();
    await Promise.all([...cluster.nodes.values()].map(stopChild));
    await drainNats(nc);
    await nats.terminate();
    await Promise.all(servers.map((s) => rm(s.cwd, { recursive: true, force: true })));
  }
}

// ─── measurements ────────────────────────────────────────────────────────────────────────────

/** CPU time so far of every process of the run (ms), and the events its nodes applied. */
async function usage(cluster: Cluster, load: Load) {
  const nodes = [...cluster.nodes];
  const applied = await Promise.all(nodes.map(([id]) => metrics(cluster.nc, false, id)));
  return {
    at: now(),
    events: applied.reduce((sum, m) => sum + m.events, 0),
    runtime: nodes.reduce((sum, [, child]) => sum + cpuMs(child.pid), 0),
    servers: cluster.nats.servers.map((s) => cpuMs(cluster.nats.pid(s.name))),
    bench: cpuMs(process.pid) + cpuMs(load.watch.pid) + cpuMs(load.crisisWatch.pid),
    machine: machineMs(),
  };
}
type Usage = Awaited<ReturnType<typeof usage>>;

/** What was spent between two usages: CPU in cores (busy CPU time / wall time) and events applied. */
function spent(before: Usage, after: Usage) {
  const wall = after.at - before.at;
  const cores = (cpu: number) => cpu / wall;
  const servers = after.servers.map((cpu, i) => cores(cpu - before.servers[i]!));
  return {
    wallMs: wall,
    events: after.events - before.events,
    runtime: cores(after.runtime - before.runtime),
    nats: servers.reduce((a, b) => a + b, 0),
    busiestServer: Math.max(...servers),
    bench: cores(after.bench - before.bench),
    busy: cores(after.machine.busy - before.machine.busy),
    capacity: cores(after.machine.total - before.machine.total),
  };
}

/**
 * The nodes running now: their CPU with nothing to do, then the saturated closed loop (the
 * single-server run's) and what each event cost: gross (all CPU over the run / events) and above
 * idle (what one more event adds).
 */
async function throughput(cluster: Cluster, load: Load) {
  const n = cluster.nodes.size;
  progress(`cluster, ${n} node(s): idle`);
  const idleFrom = await usage(cluster, load);
  await sleep(IDLE_MS);
  const runFrom = await usage(cluster, load);
  const run = await saturated(cluster.js, load, 'crisis', `cluster, ${n} node(s)`);
  const idle = spent(idleFrom, runFrom);
  const used = spent(runFrom, await usage(cluster, load));
  const eventsPerS = (used.events * 1000) / used.wallMs;
  const us = (cores: number) => Math.round((cores * 1e6) / eventsPerS);
  const share = (cores: number) => Math.round((cores / used.capacity) * 100) / 100;
  return {
    eps: Math.round(run.eps),
    crisisP99: ms(run.latency, 99),
    crisisLost: run.lost,
    /** CPU µs per applied event over the run. */
    gross: { runtime: us(used.runtime), nats: us(used.nats) },
    /** CPU µs per applied event above what the same processes burn idle. */
    marginal: { runtime: us(used.runtime - idle.runtime), nats: us(used.nats - idle.nats), busiestServer: us(used.busiestServer - idle.busiestServer) },
    /** Cores used with nothing to do. */
    idle: { runtime: round2(idle.runtime), nats: round2(idle.nats), busiestServer: round2(idle.busiestServer) },
    /** Shares of the machine's CPU (all cores) over the run; `other` is everyone else on the machine. */
    share: {
      runtime: share(used.runtime),
      nats: share(used.nats),
      bench: share(used.bench),
      other: share(used.busy - used.runtime - used.nats - used.bench),
      idle: share(used.capacity - used.busy),
    },
  };
}

/**
 * kill -9 of the last node started. Crisis users on the partitions it held press their button right
 * after the kill (kill → crisis view on all three devices); other crisis users press theirs every
 * 50 ms from the kill until every partition is held again (each one's own latency). Beside them:
 * when a survivor took the first of the partitions (the dead node noticed) and the last. Any crisis
 * that no device shows within the give-up time is lost.
 */
async function failover(cluster: Cluster, load: Load) {
  const pool = load.crisisUsers;
  const claims = cluster.claims!;
  const [victim, child] = [...cluster.nodes].at(-1)!;
  const held = EVERY_PARTITION.filter((p) => claims.holder(p) === victim);
  const onVictim = (u: string) => held.includes(partitionOf(u, PARTITIONS));
  // The first crises come from the end of the pool, so the window's users are on moved partitions
  // as often as the killed node's share of partitions from its start.
  const moved = pool.filter(onVictim).slice(-CLUSTER.movedUsers);
  const window = pool.filter((u) => !moved.includes(u)).slice(0, CLUSTER.windowUsers);
  const survivor = (holder: string | undefined) => holder !== undefined && holder !== victim;
  progress(`failover: kill -9 ${victim}`);
  const killedAt = now();
  child.kill('SIGKILL');
  cluster.nodes.delete(victim);
  const first = Promise.all(moved.map((u) => pressCrisis(load.buttons, load.crisisWatch, u, 'crisis')));
  const firstTaken = claims.until((holder) => held.some((p) => survivor(holder(p))));
  let retaken = false;
  const allTaken = claims.until((holder) => EVERY_PARTITION.every((p) => survivor(holder(p)))).finally(() => (retaken = true));
  const during = sampleCrises(load.buttons, load.crisisWatch, window, () => !retaken, 'crisis', WINDOW_EVERY_MS);
  const [pressed, detectedAt, retakenAt, sampled] = await Promise.all([first, firstTaken, allTaken, during]);
  const takeover = histogram();
  for (const p of pressed) if (p.applied !== undefined) record(takeover, p.applied - killedAt);
  const since = (at: number | undefined) => (at === undefined ? `not within ${SETTLE_MS} ms` : Math.round(at - killedAt));
  return {
    failover_ms: ms(takeover, 50),
    failover_max_ms: inMs(takeover.maxValue),
    failover_distribution_ms: { n: takeover.totalCount, min: inMs(takeover.minNonZeroValue), p50: ms(takeover, 50), p90: ms(takeover, 90), max: inMs(takeover.maxValue) },
    failover_nodes: `${cluster.nodes.size + 1} → ${cluster.nodes.size}, ${held.length} partitions moved`,
    failover_first_take_ms: since(detectedAt),
    failover_retake_ms: since(retakenAt),
    failover_crisis_p99_ms: ms(sampled.latency, 99),
    failover_crisis_samples: sampled.latency.totalCount,
    failover_crisis_samples_moved: sampled.used.filter(onVictim).length,
    failover_crisis_lost: pressed.filter((p) => p.applied === undefined).length + sampled.lost,
  };
}

/** What limits throughput on this machine: where its CPU went with one, two and three nodes. */
function limit(runs: Runs): string {
  const pct = (pick: (r: Run) => number) => Object.values(runs).map((r) => `${Math.round(pick(r) * 100)}%`).join('/');
  return (
    `${cpus().length} cores, shared by 3 nats-servers, the nodes, 2 device processes and the load generator; with 1/2/3 nodes ` +
    `the machine was idle ${pct((r) => r.share.idle)}, nats-servers took ${pct((r) => r.share.nats)}, runtime nodes ` +
    `${pct((r) => r.share.runtime)}, devices + load generator ${pct((r) => r.share.bench)}, other processes ${pct((r) => r.share.other)}: ` +
    `CPU-bound, and a node added here only shares the same cores.`
  );
}

/**
 * What more cores or machines would give, from what an event cost with three nodes above idle and
 * what the processes burn idle: a line for the table, its assumptions stated.
 */
function estimate(three: Run): string {
  const { runtime, nats, busiestServer } = three.marginal;
  const idle = three.idle.runtime + three.idle.nats;
  const perCore = 1e6 / Math.max(1, runtime + nats);
  const eps = (cores: number) => Math.round(Math.max(0, cores - idle) * perCore).toLocaleString('en');
  const leader = (cores: number) => Math.round((Math.max(0, cores - three.idle.busiestServer) * 1e6) / Math.max(1, busiestServer)).toLocaleString('en');
  return (
    `With 3 nodes an event costs ${runtime} µs of runtime CPU and ${nats} µs of nats-server CPU (3 servers, R3; the busiest ` +
    `${busiestServer} µs) above idle, and idle the nodes burn ${three.idle.runtime} cores and the servers ${three.idle.nats} ` +
    `(Raft groups of the R3 streams and consumers, pulls). Assuming CPU is the only limit (not disk or network), nodes scaling ` +
    `linearly up to one per partition (64), and devices and load generators on other machines: one machine with N cores ≈ ` +
    `(N − ${round2(idle)}) × ${Math.round(perCore)} ev/s (8 cores ≈ ${eps(8)}, 32 ≈ ${eps(32)}); M machines of C cores ≈ ` +
    `(M × C − ${round2(idle)}) × ${Math.round(perCore)} ev/s until the busiest nats-server (each stream's leader handles all of ` +
    `its writes) fills its machine at ≈ ${leader(8)} ev/s with C = 8 (${leader(32)} with 32), beyond which the lanes and views ` +
    `need more streams. Costs measured on oversubscribed cores include contention, so this is low rather than high.`
  );
}

type Run = Awaited<ReturnType<typeof throughput>>;
type Runs = Record<number, Run>;

/** The cluster run: throughput with 1, 2 and 3 nodes, then a failover from 3 to 2. */
export async function clusterBench(): Promise<Record<string, unknown>> {
  return withCluster(async (cluster) => {
    await addNode(cluster);
    // Enough crisis users for the failover too: a third of them are on the killed node's partitions.
    const load = await startLoad(cluster, { loadUsers: CLUSTER.inFlight, crisisUsers: Math.max(SIZE.crisisUsers, CLUSTER.windowUsers + CLUSTER.movedUsers * NODES) });
    try {
      const runs: Runs = {};
      for (let n = 1; n <= NODES; n++) {
        if (n > 1) await addNode(cluster);
        runs[n] = await throughput(cluster, load);
      }
      const byNodes = <T>(pick: (r: Run) => T) => Object.fromEntries(Object.entries(runs).map(([n, r]) => [n, pick(r)]));
      return {
        runtime_eps_cluster: byNodes((r) => r.eps),
        cluster_crisis_p99_ms: byNodes((r) => r.crisisP99),
        cluster_crisis_lost: byNodes((r) => r.crisisLost),
        cpu_us_per_event: byNodes((r) => r.gross.runtime),
        nats_cpu_us_per_event: byNodes((r) => r.gross.nats),
        cluster_idle_cores: byNodes((r) => ({ runtime: r.idle.runtime, nats: r.idle.nats })),
        cluster_cpu_share: byNodes((r) => r.share),
        ...(await failover(cluster, load)),
        cluster_limit: limit(runs),
        cluster_estimate: estimate(runs[NODES]!),
      };
    } finally {
      await load.stop();
    }
  });
}
