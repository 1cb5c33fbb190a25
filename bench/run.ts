/**
 * `npm run bench [-- --quick]`: crisis latency under saturation, throughput against the transport's
 * limit, memory per resident user, activation latency and the largest population, all on a real
 * nats-server with the runtime, the devices and the baseline worker as their own processes and this
 * process as the load generator. Prints a table and writes `bench/results/latest.json`.
 *
 * Every number sits beside a baseline measured in the same run (the machine is shared and noisy):
 * the raw JetStream limit for throughput, the idle crisis latency and the same run without the crisis
 * lane for crisis latency. Percentiles come from HDR histograms.
 */
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { build } from 'hdr-histogram-js';
import type { MetricsSnapshot } from '../actors/metrics.ts';
import { UserEvent, type UserEventType } from '../machines/events.ts';
import type { PaidTier } from '../machines/features.ts';
import { encode } from '../transport/codec.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
import type { Lane } from '../transport/subjects.ts';
import { createTopology } from '../transport/topology.ts';
import { startNatsProcess, natsServerBinary, type NatsProcess } from '../scripts/natsProcess.ts';
import { BASELINE, provisionBaseline } from './baseline.ts';
import type { AppliedRow } from './devices.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const quick = process.argv.includes('--quick');
/** `--profile`: the throughput run's runtime writes a CPU profile to bench/results/ (`node --cpu-prof`). */
const profile = process.argv.includes('--profile');

/** Sizes of a run. */
const SIZE = quick
  ? { crisisUsers: 40, warmupMs: 500, saturatedMs: 3_000, inFlight: 100, activations: 30, residentUsers: 3_000, population: 8_000, populationBudgetMs: 20_000 }
  : { crisisUsers: 250, warmupMs: 3_000, saturatedMs: 20_000, inFlight: 1_000, activations: 300, residentUsers: 100_000, population: 1_000_000, populationBudgetMs: 300_000 };
const DEVICES = ['d0', 'd1', 'd2'];
const CRISIS_EVERY_MS = 100;
/** Events a bulk publisher keeps awaiting JetStream at once. */
const PUBLISHES_IN_FLIGHT = 256;

const topology = createTopology();
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const histogram = () => build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });
type Histogram = ReturnType<typeof histogram>;
const ms = (h: Histogram, p: number) => Math.round(h.getValueAtPercentile(p) / 10) / 100;

/** One progress line on stderr, rewritten in place. */
function progress(label: string, done?: number, total?: number): void {
  const bar = total ? ` [${'#'.repeat(Math.round((20 * done!) / total)).padEnd(20)}] ${done}/${total}` : '';
  process.stderr.write(`\r\x1b[K${label}${bar}`);
}

// ─── processes ────────────────────────────────────────────────────────────────────────────────

function forkTs(script: string, env: Record<string, string>, execArgv: string[] = []): ChildProcess {
  return fork(join(ROOT, script), [], { env: { ...process.env, ...env }, execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
}

function message<T>(child: ChildProcess, predicate: (m: T) => boolean): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: T) => {
      if (!predicate(m)) return;
      child.off('message', onMessage);
      resolve(m);
    };
    child.on('message', onMessage);
    child.once('exit', (code) => reject(new Error(`${child.spawnfile} exited (${code})`)));
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** The runtime node as its own process; ready once it answers a metrics request. */
async function startRuntime(nc: NatsConnection, url: string, env: Record<string, string>, cpuProfile = false): Promise<ChildProcess> {
  const execArgv = ['--expose-gc', ...(cpuProfile ? ['--cpu-prof', `--cpu-prof-dir=${join(ROOT, 'bench/results')}`] : [])];
  const child = forkTs('actors/main.ts', { NATS_URL: url, LOG_LEVEL: 'warn', ...env }, execArgv);
  for (let i = 0; ; i++) {
    try {
      await metrics(nc);
      return child;
    } catch (err) {
      if (i > 200) throw err;
      await sleep(50);
    }
  }
}

async function metrics(nc: NatsConnection, gc = false): Promise<MetricsSnapshot> {
  const reply = await nc.request(topology.subjects.control('metrics'), gc ? 'gc' : '', { timeout: 10_000 });
  return JSON.parse(reply.string()) as MetricsSnapshot;
}

// ─── devices: who applied what ───────────────────────────────────────────────────────────────

/** Tracks the views devices applied and resolves waits on them. */
class DeviceWatch {
  private readonly child: ChildProcess;
  private readonly waits = new Map<string, { test: (row: AppliedRow) => boolean; left: Set<string>; resolve: (at: number) => void }>();

  private constructor(child: ChildProcess) {
    this.child = child;
    child.on('message', (m: { applied?: AppliedRow[] }) => {
      for (const row of m.applied ?? []) this.onApplied(row);
    });
  }

  static async start(url: string): Promise<DeviceWatch> {
    const child = forkTs('bench/devices.ts', { NATS_URL: url });
    await message<{ ready?: boolean }>(child, (m) => !!m.ready);
    return new DeviceWatch(child);
  }

  async add(users: string[]): Promise<void> {
    const pairs = users.flatMap((u) => DEVICES.map((d) => `${u}:${d}`));
    this.child.send({ start: pairs });
    await message<{ started?: number }>(this.child, (m) => m.started === pairs.length);
  }

  /** Resolves with the time the last of the user's devices applied a view that passes `test`. */
  until(userId: string, test: (row: AppliedRow) => boolean): Promise<number> {
    return new Promise((resolve) => this.waits.set(userId, { test, left: new Set(DEVICES), resolve }));
  }

  private onApplied(row: AppliedRow): void {
    const wait = this.waits.get(row[0]);
    if (!wait || !wait.test(row)) return;
    wait.left.delete(row[1]);
    if (wait.left.size === 0) {
      this.waits.delete(row[0]);
      wait.resolve(row[5]);
    }
  }

  stop(): Promise<void> {
    return stopChild(this.child);
  }
}

// ─── publishing ──────────────────────────────────────────────────────────────────────────────

let eventSeq = 0;
function event(userId: string, type: UserEventType, fields: Record<string, unknown>): UserEvent {
  return { type, id: `b${process.pid}-${++eventSeq}`, userId, at: Date.now(), ...fields } as UserEvent;
}

/** Publishes an event to a subject (its lane's by default); resolves when JetStream stored it. */
function publish(js: JetStreamClient, e: UserEvent, subject = topology.subjects.event(e.userId, e.type)) {
  return js.publish(subject, encode(UserEvent, e), { msgID: e.id });
}

/**
 * Publishes up to `count` events, at most {@link PUBLISHES_IN_FLIGHT} awaiting JetStream at once,
 * with progress; stops early when the time `until` passes. Returns how many it published.
 */
async function publishMany(js: JetStreamClient, label: string, count: number, make: (i: number) => UserEvent, until = Infinity): Promise<number> {
  let next = 0;
  const worker = async () => {
    while (next < count && Date.now() < until) {
      const i = next++;
      await publish(js, make(i));
      if (i % 1000 === 0) progress(label, i, count);
    }
  };
  await Promise.all(Array.from({ length: PUBLISHES_IN_FLIGHT }, worker));
  progress(label, next, count);
  return next;
}

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

/**
 * Keeps `inFlight` loops each sending one event and waiting for it to be seen end to end, for the
 * warm-up and then the measured window; returns events per second over the window. `during` runs
 * beside the window and is told whether it is still open.
 */
async function closedLoop(
  label: string,
  inFlight: number,
  send: (user: string) => Promise<unknown>,
  during?: (inWindow: () => boolean) => Promise<void>,
): Promise<number> {
  let measuring = false;
  let stop = false;
  let completed = 0;
  const loops = Array.from({ length: inFlight }, async (_, i) => {
    const user = `load-${String(i).padStart(5, '0')}`;
    while (!stop) {
      await send(user);
      if (measuring) completed++;
    }
  });
  progress(`${label}: warm-up`);
  await sleep(SIZE.warmupMs);
  measuring = true;
  const started = now();
  const side = during?.(() => measuring);
  for (let t = 0; t < SIZE.saturatedMs; t += 500) {
    progress(`${label}: saturated`, Math.round(t / 1000), SIZE.saturatedMs / 1000);
    await sleep(500);
  }
  measuring = false;
  const elapsed = (now() - started) / 1000;
  const eps = completed / elapsed;
  stop = true;
  await side;
  await Promise.all(loops);
  return eps;
}

/**
 * Crisis events every 100 ms while `sampling()` holds, each for a fresh crisis user: published →
 * all three devices in crisis.
 */
async function sampleCrises(
  js: JetStreamClient,
  watch: DeviceWatch,
  users: string[],
  sampling: () => boolean,
  lane: Lane,
): Promise<{ latency: Histogram; used: string[] }> {
  const h = histogram();
  const pending: Promise<void>[] = [];
  const used: string[] = [];
  for (let i = 0; sampling() && i < users.length; i++) {
    const user = users[i]!;
    used.push(user);
    const e = event(user, 'crisis_button', { deviceId: 'd0' });
    const applied = watch.until(user, (row) => row[4]);
    const sent = now();
    await publish(js, e, topology.subjects.event(user, e.type, lane));
    pending.push(applied.then((at) => h.recordValue(Math.max(1, Math.round((at - sent) * 1000)))));
    await sleep(CRISIS_EVERY_MS);
  }
  await Promise.all(pending);
  return { latency: h, used };
}

/** Resolves every crisis user's crisis, so the pool can be used again. */
async function resolveCrises(js: JetStreamClient, watch: DeviceWatch, users: string[]): Promise<void> {
  await Promise.all(
    users.map(async (u) => {
      const back = watch.until(u, (row) => !row[4]);
      await publish(js, event(u, 'crisis_resolved', { by: 'clinician' }));
      await back;
    }),
  );
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

/**
 * Premium users with three devices each: the load users, and the crisis users whose devices and
 * crisis button are their own clients, as on real phones (a device never shares a connection with
 * other users' devices).
 */
interface Load {
  watch: DeviceWatch;
  crisisWatch: DeviceWatch;
  buttons: JetStreamClient;
  loadUsers: string[];
  crisisUsers: string[];
  /** Each load user's tier now: every load event flips it, so every one of them changes the view. */
  tiers: Map<string, PaidTier>;
  stop(): Promise<void>;
}

/** Starts the device processes and registers every load and crisis user as premium. */
async function startLoad(bench: Bench): Promise<Load> {
  const watch = await DeviceWatch.start(bench.url);
  const crisisWatch = await DeviceWatch.start(bench.url);
  const buttonNc = await connectNats({ servers: bench.url, name: 'bench-crisis-button' });
  const loadUsers = Array.from({ length: SIZE.inFlight }, (_, i) => `load-${String(i).padStart(5, '0')}`);
  const crisisUsers = Array.from({ length: SIZE.crisisUsers }, (_, i) => `crisis-${String(i).padStart(4, '0')}`);
  progress('registering devices');
  await watch.add(loadUsers);
  await crisisWatch.add(crisisUsers);
  const premium = async (u: string, w: DeviceWatch) => {
    const applied = w.until(u, (row) => row[3] === 'premium');
    for (const d of DEVICES) await publish(bench.js, event(u, 'device_registered', { deviceId: d, platform: 'ios' }));
    await publish(bench.js, event(u, 'subscription_activated', { subscriptionId: `sub_${u}`, tier: 'premium' }));
    await applied;
  };
  await Promise.all([...loadUsers.map((u) => premium(u, watch)), ...crisisUsers.map((u) => premium(u, crisisWatch))]);
  return {
    watch,
    crisisWatch,
    buttons: jetstream(buttonNc),
    loadUsers,
    crisisUsers,
    tiers: new Map(loadUsers.map((u) => [u, 'premium'])),
    async stop() {
      await Promise.all([watch.stop(), crisisWatch.stop(), drainNats(buttonNc)]);
    },
  };
}

/** Flips a load user's tier; resolves with the time the last of its devices applied the new view. */
async function flipTier(js: JetStreamClient, load: Load, user: string): Promise<number> {
  const tier = load.tiers.get(user) === 'premium' ? 'basic' : 'premium';
  load.tiers.set(user, tier);
  const applied = load.watch.until(user, (row) => row[3] === tier);
  await publish(js, event(user, 'plan_changed', { subscriptionId: `sub_${user}`, tier }));
  return applied;
}

/** Crisis latency with nothing else going on. */
async function crisisIdle(load: Load) {
  progress('crisis, idle');
  const idle = await sampleCrises(load.buttons, load.crisisWatch, load.crisisUsers.slice(0, 30), () => true, 'crisis');
  await resolveCrises(load.buttons, load.crisisWatch, idle.used);
  return { crisis_idle_p99_ms: ms(idle.latency, 99) };
}

/**
 * A closed loop of plan changes while crisis users press their button (on `lane`) for as long as
 * the measured window is open; every crisis is resolved after.
 */
async function saturated(js: JetStreamClient, load: Load, lane: Lane) {
  let crisis: Awaited<ReturnType<typeof sampleCrises>> | undefined;
  const eps = await closedLoop(
    lane === 'crisis' ? 'runtime' : 'runtime, no crisis lane',
    SIZE.inFlight,
    (user) => flipTier(js, load, user),
    async (inWindow) => {
      crisis = await sampleCrises(load.buttons, load.crisisWatch, load.crisisUsers, inWindow, lane);
    },
  );
  await resolveCrises(load.buttons, load.crisisWatch, crisis!.used);
  return { eps, latency: crisis!.latency };
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
    h.recordValue(Math.max(1, Math.round((applied - sent) * 1000)));
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
  for (const [k, v] of Object.entries(results)) console.log(`| ${k} | ${v} |`);
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
    progress('done\n');
  });
  await writeResults(results);
}

await main();
process.exit(0);
