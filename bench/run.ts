/**
 * `npm run bench [-- --quick] [-- --cluster]`: crisis latency under saturation, throughput against
 * the transport's limits (with 1, 3 and 10 devices per user), memory per resident user, activation
 * latency, the largest population and its devices (catch-up, server state, a reconnect storm), all
 * on a real nats-server with the runtime, the devices and the baseline worker as their own processes
 * and this process as the load generator; `--cluster` adds the same throughput on a three-server
 * cluster with one to three nodes, and a node's failover (`bench/cluster.ts`). Prints a table and
 * writes `bench/results/latest.json`.
 *
 * Every number sits beside a baseline measured in the same run (the machine is shared and noisy):
 * the raw JetStream limits for throughput (`transport_limit_eps`: a stored view per device;
 * `fanout_limit_eps`: one stored view per user fanned out to its devices by core NATS, the
 * runtime's delivery), the idle crisis latency and the same run without the crisis lane for crisis
 * latency. Percentiles come from HDR histograms.
 *
 * Fields beyond the names' plain reading:
 * - `runtime_eps`: events/s of the saturated closed loop (as many plan changes in flight as the
 *   baselines, each complete when all 3 devices of its user applied the new view) while crisis
 *   users press their button every 100 ms; `runtime_vs_limit` and `runtime_vs_fanout_limit` divide
 *   it by the two baselines.
 * - `runtime_eps_by_devices`: `{ "1", "3", "10" }`, the same loop with that many devices per load
 *   user, each event complete when all of them applied; "3" is `runtime_eps`, the others run
 *   without crisis sampling, each on a fresh runtime node with load users of its own (all of a
 *   run's devices in one device process on one connection).
 * - `cpu_us_per_event_by_devices`: for each of those runs, CPU time (user + system, /proc) over the
 *   measured window per completed event, in µs, of the `runtime` node, the `nats` server, the
 *   `devices` (the device processes: decoding and applying every view on every device) and the
 *   `load` generator (this process). What the server spends per event as devices are added.
 * - `device_population`, `reconnect_storm_ms`, `reconnect_runtime_ms`: see `bench/population.ts`.
 * - `plain_*`, `tls_*` and `tls_vs_plain_*` (the main saturated run again, in legs alternating
 *   plain and TLS connections),
 *   `connect_nkey`, `connect_callout` and `callout_vs_nkey_*` (role and device sign-ins): what TLS
 *   and the auth callout cost, see `bench/security.ts`.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { MetricsSnapshot } from '../actors/metrics.ts';
import { UserEvent } from '../machines/events.ts';
import { encode } from '../transport/codec.ts';
import { natsServerBinary } from '../scripts/natsProcess.ts';
import { BASELINE, BASELINE_DEVICES, provisionBaseline, type BaselineMode } from './baseline.ts';
import { clusterBench } from './cluster.ts';
import { cpuOverWindow, cpuPerEvent, type ProcessGroups, type WindowCpu } from './cpu.ts';
import {
  closedLoop,
  DEVICES,
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
  ratio,
  record,
  resolveCrises,
  ROOT,
  sampleCrises,
  saturated,
  SIZE,
  sleep,
  startLoad,
  stopChild,
  userIds,
  waitForMetrics,
  withBench,
  type Bench,
  type Load,
} from './harness.ts';
import { population } from './population.ts';
import { connectCost, tlsAndPlain } from './security.ts';

/** `--profile`: the throughput run's runtime writes a CPU profile to bench/results/ (`node --cpu-prof`). */
const profile = process.argv.includes('--profile');
/** `--cluster`: also the three-server cluster's throughput with one to three nodes, and a failover. */
const cluster = process.argv.includes('--cluster');
/** Devices per load user of the saturated runs beside the main one (`runtime_eps_by_devices`). */
const OTHER_DEVICE_COUNTS = [1, 10];

// ─── measurements ────────────────────────────────────────────────────────────────────────────

/**
 * Raw JetStream (bench/baseline.ts in `mode`): a closed loop keeping as many events in flight as
 * the runtime's saturated run, each complete once each of its user's three devices saw its view.
 * `transport`: a subscription per device index over every user (`bench.view.*.d<n>`), a view
 * stored per device; `fanout`: three core subscriptions per user on the user's one view subject,
 * one view stored per user and fanned out by the server, as the runtime's devices receive them.
 */
async function baselineLimit(nc: NatsConnection, url: string, mode: BaselineMode): Promise<number> {
  await provisionBaseline(url, SIZE.inFlight);
  const worker = forkTs('bench/baseline.ts', { NATS_URL: url, BENCH_BASELINE: mode });
  await message<{ ready?: boolean }>(worker, (m) => !!m.ready);
  const js = jetstream(nc);
  const users = userIds('bench', SIZE.inFlight);
  const event = encode(UserEvent, { type: 'plan_changed', id: 'x', userId: 'u', at: 1, subscriptionId: 's', tier: 'basic' });
  const seen = new Map<string, number>();
  const done = new Map<string, () => void>();
  const saw = (user: string) => {
    const count = (seen.get(user) ?? 0) + 1;
    seen.set(user, count);
    if (count === BASELINE_DEVICES.length) {
      seen.delete(user);
      done.get(user)?.();
    }
  };
  const subjects =
    mode === 'transport'
      ? BASELINE_DEVICES.map((d) => BASELINE.viewSubject('*', d))
      : users.flatMap((u) => BASELINE_DEVICES.map(() => BASELINE.userViewSubject(u)));
  // bench.view.<user>[.d<n>]: the user is the third token.
  const subs = subjects.map((s) => nc.subscribe(s, { callback: (_e, m) => saw(m.subject.split('.')[2]!) }));
  await nc.flush();
  const completed = await closedLoop(`${mode} limit`, users, (user) =>
    new Promise<void>((resolve) => {
      done.set(user, resolve);
      void js.publish(BASELINE.inSubject(user), event);
    }),
  );
  for (const s of subs) s.unsubscribe();
  await stopChild(worker);
  return Math.round(completed);
}

/** Crisis latency with nothing else going on. */
async function crisisIdle(load: Load) {
  progress('crisis, idle');
  const idle = await sampleCrises(load.buttons, load.crisisWatch, load.crisisUsers.slice(0, 30), () => true, 'crisis');
  if (idle.lost > 0) throw new Error(`${idle.lost} crisis events never reached the devices of an idle runtime`);
  await resolveCrises(load.buttons, load.crisisWatch, idle.used);
  return { crisis_idle_p99_ms: ms(idle.latency, 99) };
}

/** The transport's limits measured in the same run (see {@link baselineLimit}). */
interface Limits {
  transport: number;
  fanout: number;
}

/** The processes of a saturated run by role, for their CPU per event; `load` is this process. */
const roles = (bench: Bench, load: Load): ProcessGroups => ({
  runtime: [bench.runtimePid],
  nats: [bench.serverPid],
  devices: [load.watch.pid, load.crisisWatch.pid],
  load: [process.pid],
});

/** Throughput and crisis latency under saturation, then the same without the crisis lane. */
async function saturation(bench: Bench, load: Load, limits: Limits) {
  const run = await saturated(bench.js, load, 'crisis', undefined, roles(bench, load));
  const fifo = await saturated(bench.js, load, 'normal');
  return {
    cpu: run.cpuUsPerEvent!,
    fields: {
      runtime_eps: Math.round(run.eps),
      runtime_vs_limit: ratio(run.eps, limits.transport),
      runtime_vs_fanout_limit: ratio(run.eps, limits.fanout),
      crisis_p50_ms: ms(run.latency, 50),
      crisis_p99_ms: ms(run.latency, 99),
      crisis_max_ms: Math.round(run.latency.maxValue / 10) / 100,
      crisis_samples: run.latency.totalCount,
      crisis_lost: run.lost + fifo.lost,
      fifo_crisis_p99_ms: ms(fifo.latency, 99),
      fifo_runtime_eps: Math.round(fifo.eps),
    },
  };
}

/** A saturated run's events per second and its processes' CPU µs per event. */
interface DevicesRun {
  eps: number;
  cpu: Record<string, number>;
}

/**
 * The saturated closed loop (plan changes only, no crisis sampling) with other numbers of devices
 * per load user, each on a fresh runtime node with load users of its own, beside `main`: the main
 * run's, at {@link DEVICES} devices per user.
 */
async function byDevices(bench: Bench, main: DevicesRun) {
  const runs = new Map([[DEVICES, main]]);
  for (const devices of OTHER_DEVICE_COUNTS) {
    await bench.runtime();
    const load = await startLoad(bench, { devices, crisisUsers: 0, prefix: `load${devices}` });
    try {
      let window: WindowCpu | undefined;
      const eps = await closedLoop(`runtime, ${devices} device(s) per user`, load.loadUsers, (user) => flipTier(bench.js, load, user), async (inWindow) => {
        window = await cpuOverWindow(roles(bench, load), inWindow);
      });
      runs.set(devices, { eps: Math.round(eps), cpu: cpuPerEvent(window!, eps) });
    } finally {
      await load.stop();
    }
  }
  const sorted = [...runs].sort(([a], [b]) => a - b);
  return {
    runtime_eps_by_devices: Object.fromEntries(sorted.map(([n, r]) => [n, r.eps])),
    cpu_us_per_event_by_devices: Object.fromEntries(sorted.map(([n, r]) => [n, r.cpu])),
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

/**
 * Memory: users made resident, heap measured after a full collection before and after: once while
 * each was just active (`heap_bytes_per_active_user`), once after each was frozen to its record's
 * bytes, as every idle resident is after `FM_FREEZE_AFTER_MS` (`heap_bytes_per_resident_user`).
 */
async function residentHeap(bench: Bench) {
  /** Heap per user once `SIZE.residentUsers` users applied an event each, with `freezeAfterMs` (`frozen`: and each was frozen). */
  const heapPerUser = async (freezeAfterMs: number, frozen: boolean) => {
    await bench.runtime({ FM_IDLE_MS: '3600000', FM_FREEZE_AFTER_MS: String(freezeAfterMs), FM_MAX_RESIDENT: String(SIZE.residentUsers + 10_000) });
    const heapBefore = (await metrics(bench.nc, true)).heapUsed;
    await publishMany(bench.js, 'resident users', SIZE.residentUsers, (i) =>
      event(`res-${i}`, 'subscription_activated', { subscriptionId: `sub_res_${i}`, tier: i % 2 ? 'basic' : 'premium' }),
    );
    const all = (m: MetricsSnapshot) =>
      m.residents >= SIZE.residentUsers && m.events >= SIZE.residentUsers && (!frozen || m.freezes >= SIZE.residentUsers);
    await waitForMetrics(bench.nc, `resident users${frozen ? ', frozen' : ''}: applying`, SIZE.residentUsers, all);
    const m = await metrics(bench.nc, true);
    return { residents: m.residents, bytes: Math.round((m.heapUsed - heapBefore) / m.residents) };
  };
  // Users just active (their statechart snapshot, ledger and view state in memory), then idle ones.
  const active = await heapPerUser(3_600_000, false);
  const idle = await heapPerUser(1_000, true);
  return { resident_users: idle.residents, heap_bytes_per_resident_user: idle.bytes, heap_bytes_per_active_user: active.bytes };
}

// ─── the run ─────────────────────────────────────────────────────────────────────────────────

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
  // Servers of their own (the main run's takes TLS only), alternating plain and TLS.
  Object.assign(results, await tlsAndPlain());
  await withBench(async (bench) => {
    const limits = { transport: await baselineLimit(bench.nc, bench.url, 'transport'), fanout: await baselineLimit(bench.nc, bench.url, 'fanout') };
    results.transport_limit_eps = limits.transport;
    results.fanout_limit_eps = limits.fanout;
    await bench.runtime({}, profile);
    const load = await startLoad(bench);
    Object.assign(results, await crisisIdle(load));
    const main = await saturation(bench, load, limits);
    Object.assign(results, main.fields);
    Object.assign(results, await connectCost(bench, load));
    Object.assign(results, await activation(bench, load));
    await load.stop();
    Object.assign(results, await byDevices(bench, { eps: main.fields.runtime_eps, cpu: main.cpu }));
    Object.assign(results, await residentHeap(bench));
    Object.assign(results, await population(bench));
  });
  if (cluster) Object.assign(results, await clusterBench());
  progress('done\n');
  await writeResults(results);
}

await main();
process.exit(0);
