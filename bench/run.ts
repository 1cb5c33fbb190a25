/**
 * `npm run bench [-- --quick] [-- --cluster]`: crisis latency under saturation, throughput against
 * the transport's limit, memory per resident user, activation latency and the largest population,
 * all on a real nats-server with the runtime, the devices and the baseline worker as their own
 * processes and this process as the load generator; `--cluster` adds the same throughput on a
 * three-server cluster with one to three nodes, and a node's failover (`bench/cluster.ts`). Prints a
 * table and writes `bench/results/latest.json`.
 *
 * Every number sits beside a baseline measured in the same run (the machine is shared and noisy):
 * the raw JetStream limit for throughput, the idle crisis latency and the same run without the crisis
 * lane for crisis latency. Percentiles come from HDR histograms.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { MetricsSnapshot } from '../actors/metrics.ts';
import { UserEvent } from '../machines/events.ts';
import { encode } from '../transport/codec.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
import { startNatsProcess, natsServerBinary, type NatsProcess } from '../scripts/natsProcess.ts';
import { BASELINE, provisionBaseline } from './baseline.ts';
import { clusterBench } from './cluster.ts';
import {
  closedLoop,
  event,
  flipTier,
  forkTs,
  histogram,
  message,
  metrics,
  ms,
  now,
  progress,
  publishMany,
  quick,
  record,
  resolveCrises,
  ROOT,
  sampleCrises,
  saturated,
  SIZE,
  sleep,
  startLoad,
  startRuntime,
  stopChild,
  type Load,
} from './harness.ts';

/** `--profile`: the throughput run's runtime writes a CPU profile to bench/results/ (`node --cpu-prof`). */
const profile = process.argv.includes('--profile');
/** `--cluster`: also the three-server cluster's throughput with one to three nodes, and a failover. */
const cluster = process.argv.includes('--cluster');

/** Asks the node for its metrics every half second, with progress, until `done`; returns the last answer. */
async function waitForMetrics(nc: NatsConnection, label: string, total: number, done: (m: MetricsSnapshot) => boolean): Promise<MetricsSnapshot> {
  for (let m = await metrics(nc); ; m = await metrics(nc)) {
    if (done(m)) return m;
    progress(label, m.events, total);
    await sleep(500);
  }
}

// ─── measurements ────────────────────────────────────────────────────────────────────────────

/** Raw JetStream: a closed loop keeping `inFlight` events between publish and all three views seen. */
async function transportLimit(nc: NatsConnection, url: string): Promise<number> {
  await provisionBaseline(url, SIZE.inFlight);
  const worker = forkTs('bench/baseline.ts', { NATS_URL: url });
  await message<{ ready?: boolean }>(worker, (m) => !!m.ready);
  const js = jetstream(nc);
  const event = encode(UserEvent, { type: 'plan_changed', id: 'x', userId: 'u', at: 1, subscriptionId: 's', tier: 'basic' });
  const seen = new Map<string, number>();
  const done = new Map<string, () => void>();
  const subs = [0, 1, 2].map((d) =>
    nc.subscribe(`bench.view.*.d${d}`, {
      callback: (_e, m) => {
        const user = m.subject.split('.')[2]!;
        const count = (seen.get(user) ?? 0) + 1;
        seen.set(user, count);
        if (count === 3) {
          seen.delete(user);
          done.get(user)?.();
        }
      },
    }),
  );
  const completed = await closedLoop('transport limit', SIZE.inFlight, (user) =>
    new Promise<void>((resolve) => {
      done.set(user, resolve);
      void js.publish(BASELINE.inSubject(user), event);
    }),
  );
  for (const s of subs) s.unsubscribe();
  await stopChild(worker);
  return completed;
}

// ─── the run ─────────────────────────────────────────────────────────────────────────────────

/** The bench's nats-server and connection, and the runtime node of the current measurement. */
interface Bench {
  url: string;
  nc: NatsConnection;
  js: JetStreamClient;
  /** Stops the current runtime node (if any) and starts a new one with `env`. */
  runtime(env?: Record<string, string>, cpuProfile?: boolean): Promise<void>;
}

/** Runs `steps` against a fresh nats-server in a temp store; stops the runtime and the server after. */
async function withBench(steps: (bench: Bench) => Promise<void>): Promise<void> {
  const store = mkdtempSync(join(tmpdir(), 'fullmind-bench-'));
  const port = 14_000 + (process.pid % 1000);
  const nats: NatsProcess = await startNatsProcess({ cwd: store, port, httpPort: port + 1000 });
  const url = `nats://127.0.0.1:${port}`;
  const nc = await connectNats({ servers: url, name: 'bench' });
  let current: ChildProcess | undefined;
  try {
    await steps({
      url,
      nc,
      js: jetstream(nc),
      async runtime(env = {}, cpuProfile = false) {
        if (current) await stopChild(current);
        current = await startRuntime(nc, url, env, cpuProfile);
      },
    });
  } finally {
    if (current) await stopChild(current);
    await drainNats(nc);
    await nats.terminate();
    rmSync(store, { recursive: true, force: true });
  }
}

/** Crisis latency with nothing else going on. */
async function crisisIdle(load: Load) {
  progress('crisis, idle');
  const idle = await sampleCrises(load.buttons, load.crisisWatch, load.crisisUsers.slice(0, 30), () => true, 'crisis');
  if (idle.lost > 0) throw new Error(`${idle.lost} crisis events never reached the devices of an idle runtime`);
  await resolveCrises(load.buttons, load.crisisWatch, idle.used);
  return { crisis_idle_p99_ms: ms(idle.latency, 99) };
}

/** Throughput and crisis latency under saturation, then the same without the crisis lane. */
async function saturation(js: JetStreamClient, load: Load, transportLimitEps: number) {
  const run = await saturated(js, load, 'crisis');
  const fifo = await saturated(js, load, 'normal');
  return {
    runtime_eps: Math.round(run.eps),
    runtime_vs_limit: Math.round((run.eps / transportLimitEps) * 100) / 100,
    crisis_p50_ms: ms(run.latency, 50),
    crisis_p99_ms: ms(run.latency, 99),
    crisis_max_ms: Math.round(run.latency.maxValue / 10) / 100,
    crisis_samples: run.latency.totalCount,
    crisis_lost: run.lost + fifo.lost,
    fifo_crisis_p99_ms: ms(fifo.latency, 99),
    fifo_runtime_eps: Math.round(fifo.eps),
  };
}

/** Activation: every event goes to a user passivated as soon as its last commit was durable. */
async function activation(bench: Bench, load: Load) {
  await bench.runtime({ FM_IDLE_MS: '0', FM_SWEEP_MS: '5' });
  const h = histogram();
  for (let i = 0; i < SIZE.activations; i++) {
    const user = load.loadUsers[i % load.loadUsers.length]!;
    while ((await metrics(bench.nc)).residents > 0) await sleep(2);
    const sent = now();
    const applied = await flipTier(bench.js, load, user);
    record(h, applied - sent);
    progress('activation', i + 1, SIZE.activations);
  }
  return { activation_p99_ms: ms(h, 99), activation_p50_ms: ms(h, 50) };
}

/** Memory: users made resident, heap measured after a full collection before and after. */
async function residentHeap(bench: Bench) {
  await bench.runtime({ FM_IDLE_MS: '3600000', FM_MAX_RESIDENT: String(SIZE.residentUsers + 10_000) });
  const heapBefore = (await metrics(bench.nc, true)).heapUsed;
  await publishMany(bench.js, 'resident users', SIZE.residentUsers, (i) =>
    event(`res-${i}`, 'subscription_activated', { subscriptionId: `sub_res_${i}`, tier: i % 2 ? 'basic' : 'premium' }),
  );
  const all = (m: MetricsSnapshot) => m.residents >= SIZE.residentUsers && m.events >= SIZE.residentUsers;
  await waitForMetrics(bench.nc, 'resident users: applying', SIZE.residentUsers, all);
  const m = await metrics(bench.nc, true);
  return { resident_users: m.residents, heap_bytes_per_resident_user: Math.round((m.heapUsed - heapBefore) / m.residents) };
}

/** Population: as many registered users as the time budget allows, served through passivation. */
async function population(bench: Bench) {
  await bench.runtime({ FM_IDLE_MS: '2000', FM_MAX_RESIDENT: '100000' });
  const started = now();
  const wanted = SIZE.population - SIZE.residentUsers;
  const published = await publishMany(
    bench.js,
    'population',
    wanted,
    (i) => event(`pop-${i}`, 'subscription_activated', { subscriptionId: `sub_pop_${i}`, tier: i % 2 ? 'basic' : 'premium' }),
    Date.now() + SIZE.populationBudgetMs,
  );
  const m = await waitForMetrics(bench.nc, 'population: applying', published, (x) => x.events >= published);
  return {
    // Users with a stored record: the resident run's and this one's.
    registered_users: SIZE.residentUsers + published,
    population_stopped_by: published < wanted ? `time budget ${SIZE.populationBudgetMs / 1000} s` : 'target reached',
    population_eps: Math.round(published / ((now() - started) / 1000)),
    rss_mb: Math.round(m.rss / 1024 / 1024),
    population_resident_users: m.residents,
  };
}

/** Adds where the run happened, writes `bench/results/latest.json` and prints the table. */
async function writeResults(results: Record<string, unknown>): Promise<void> {
  const git = (args: string[]) => execFileSync('git', args, { cwd: ROOT }).toString().trim();
  Object.assign(results, {
    quick,
    node: process.version,
    nats_server: execFileSync(await natsServerBinary(), ['--version']).toString().trim(),
    cpus: cpus().length,
    commit: git(['rev-parse', '--short', 'HEAD']) + (git(['status', '--porcelain']) ? '+dirty' : ''),
    at: new Date().toISOString(),
  });
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench/results/latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  console.log('\n| field | value |\n|---|---|');
  for (const [k, v] of Object.entries(results)) console.log(`| ${k} | ${typeof v === 'object' ? JSON.stringify(v) : v} |`);
}

async function main(): Promise<void> {
  const results: Record<string, unknown> = {};
  await withBench(async (bench) => {
    const limit = Math.round(await transportLimit(bench.nc, bench.url));
    results.transport_limit_eps = limit;
    await bench.runtime({}, profile);
    const load = await startLoad(bench);
    Object.assign(results, await crisisIdle(load));
    Object.assign(results, await saturation(bench.js, load, limit));
    Object.assign(results, await activation(bench, load));
    await load.stop();
    Object.assign(results, await residentHeap(bench));
    Object.assign(results, await population(bench));
  });
  if (cluster) Object.assign(results, await clusterBench());
  progress('done\n');
  await writeResults(results);
}

await main();
process.exit(0);
