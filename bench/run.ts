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
import { encode } from '../transport/codec.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
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

/** Publishes many events with a bounded number awaiting JetStream, with progress. */
/** Publishes up to `count` events (fewer when `until` passes first); returns how many. */
async function publishMany(js: JetStreamClient, label: string, count: number, make: (i: number) => UserEvent, until = Infinity): Promise<number> {
  let next = 0;
  const worker = async () => {
    while (next < count && Date.now() < until) {
      const i = next++;
      await publish(js, make(i));
      if (i % 1000 === 0) progress(label, i, count);
    }
  };
  await Promise.all(Array.from({ length: 256 }, worker));
  progress(label, next, count);
  return next;
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
 * warm-up and then the measured window; returns events per second over the window.
 */
async function closedLoop(label: string, inFlight: number, send: (user: string) => Promise<void>, during?: () => Promise<void>): Promise<number> {
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
  const side = during?.();
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

/** Crisis events every 100 ms, each for a fresh crisis user: published → all three devices in crisis. */
async function sampleCrises(
  js: JetStreamClient,
  watch: DeviceWatch,
  users: string[],
  until: () => boolean,
  lane: 'crisis' | 'normal',
): Promise<{ latency: Histogram; used: string[] }> {
  const h = histogram();
  const pending: Promise<void>[] = [];
  const used: string[] = [];
  for (let i = 0; until() && i < users.length; i++) {
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

async function main(): Promise<void> {
  const store = mkdtempSync(join(tmpdir(), 'fullmind-bench-'));
  const port = 14_000 + (process.pid % 1000);
  const nats: NatsProcess = await startNatsProcess({ cwd: store, port, httpPort: port + 1000 });
  const url = `nats://127.0.0.1:${port}`;
  const nc = await connectNats({ servers: url, name: 'bench' });
  const js = jetstream(nc);
  const results: Record<string, unknown> = {};
  const children: ChildProcess[] = [];
  try {
    results.transport_limit_eps = Math.round(await transportLimit(nc, url));

    // Throughput and crisis latency: premium users with three devices each.
    let runtime = await startRuntime(nc, url, {}, profile);
    children.push(runtime);
    // The crisis users' devices and their crisis button are their own clients, as on real phones:
    // a device never shares a connection with other users' devices.
    const watch = await DeviceWatch.start(url);
    const crisisWatch = await DeviceWatch.start(url);
    const buttonNc = await connectNats({ servers: url, name: 'bench-crisis-button' });
    const buttons = jetstream(buttonNc);
    const loadUsers = Array.from({ length: SIZE.inFlight }, (_, i) => `load-${String(i).padStart(5, '0')}`);
    const crisisUsers = Array.from({ length: SIZE.crisisUsers }, (_, i) => `crisis-${String(i).padStart(4, '0')}`);
    progress('registering devices');
    await watch.add(loadUsers);
    await crisisWatch.add(crisisUsers);
    const watchOf = (u: string) => (u.startsWith('crisis-') ? crisisWatch : watch);
    await Promise.all(
      [...loadUsers, ...crisisUsers].map(async (u) => {
        const premium = watchOf(u).until(u, (row) => row[3] === 'premium');
        for (const d of DEVICES) await publish(js, event(u, 'device_registered', { deviceId: d, platform: 'ios' }));
        await publish(js, event(u, 'subscription_activated', { subscriptionId: `sub_${u}`, tier: 'premium' }));
        await premium;
      }),
    );

    progress('crisis, idle');
    const idle = await sampleCrises(buttons, crisisWatch, crisisUsers.slice(0, 30), () => true, 'crisis');
    await resolveCrises(buttons, crisisWatch, idle.used);
    results.crisis_idle_p99_ms = ms(idle.latency, 99);

    // Each load event flips its user's tier, so every one of them changes the view.
    const tiers = new Map(loadUsers.map((u) => [u, 'premium' as 'basic' | 'premium']));
    const planChange = (lane: 'crisis' | 'normal') => {
      let crisisRun: Awaited<ReturnType<typeof sampleCrises>> | undefined;
      let running = true;
      const eps = closedLoop(
        lane === 'crisis' ? 'runtime' : 'runtime, no crisis lane',
        SIZE.inFlight,
        async (user) => {
          const tier = tiers.get(user) === 'premium' ? 'basic' : 'premium';
          tiers.set(user, tier);
          const applied = watch.until(user, (row) => row[3] === tier);
          await publish(js, event(user, 'plan_changed', { subscriptionId: `sub_${user}`, tier }));
          await applied;
        },
        async () => {
          crisisRun = await sampleCrises(buttons, crisisWatch, crisisUsers, () => running, lane);
        },
      ).then((value) => {
        running = false;
        return value;
      });
      return eps.then((value) => ({ eps: value, crisis: crisisRun! }));
    };
    // The samples stop when the window closes; give them a moment to land.
    const saturated = await planChange('crisis');
    await resolveCrises(buttons, crisisWatch, saturated.crisis.used);
    results.runtime_eps = Math.round(saturated.eps);
    results.runtime_vs_limit = Math.round((saturated.eps / (results.transport_limit_eps as number)) * 100) / 100;
    results.crisis_p50_ms = ms(saturated.crisis.latency, 50);
    results.crisis_p99_ms = ms(saturated.crisis.latency, 99);
    results.crisis_max_ms = Math.round(saturated.crisis.latency.maxValue / 10) / 100;
    results.crisis_samples = saturated.crisis.latency.totalCount;
    const fifo = await planChange('normal');
    await resolveCrises(buttons, crisisWatch, fifo.crisis.used);
    results.fifo_crisis_p99_ms = ms(fifo.crisis.latency, 99);
    results.fifo_runtime_eps = Math.round(fifo.eps);

    // Activation: every event goes to a user passivated as soon as its last commit was durable.
    await stopChild(runtime);
    runtime = await startRuntime(nc, url, { FM_IDLE_MS: '0', FM_SWEEP_MS: '5' });
    children.push(runtime);
    const activation = histogram();
    for (let i = 0; i < SIZE.activations; i++) {
      const user = loadUsers[i % loadUsers.length]!;
      while ((await metrics(nc)).residents > 0) await sleep(2);
      const tier = tiers.get(user) === 'premium' ? 'basic' : 'premium';
      tiers.set(user, tier);
      const applied = watch.until(user, (row) => row[3] === tier);
      const sent = now();
      await publish(js, event(user, 'plan_changed', { subscriptionId: `sub_${user}`, tier: tier }));
      activation.recordValue(Math.max(1, Math.round(((await applied) - sent) * 1000)));
      progress('activation', i + 1, SIZE.activations);
    }
    results.activation_p99_ms = ms(activation, 99);
    results.activation_p50_ms = ms(activation, 50);
    await Promise.all([watch.stop(), crisisWatch.stop(), drainNats(buttonNc)]);

    // Memory: users made resident, heap measured after a full collection before and after.
    await stopChild(runtime);
    runtime = await startRuntime(nc, url, { FM_IDLE_MS: '3600000', FM_MAX_RESIDENT: String(SIZE.residentUsers + 10_000) });
    children.push(runtime);
    const heapBefore = (await metrics(nc, true)).heapUsed;
    await publishMany(js, 'resident users', SIZE.residentUsers, (i) =>
      event(`res-${i}`, 'subscription_activated', { subscriptionId: `sub_res_${i}`, tier: i % 2 ? 'basic' : 'premium' }),
    );
    let m = await metrics(nc);
    while (m.residents < SIZE.residentUsers || m.events < SIZE.residentUsers) {
      progress('resident users: applying', m.events, SIZE.residentUsers);
      await sleep(500);
      m = await metrics(nc);
    }
    m = await metrics(nc, true);
    results.resident_users = m.residents;
    results.heap_bytes_per_resident_user = Math.round((m.heapUsed - heapBefore) / m.residents);

    // Population: as many registered users as the machine allows, served through passivation.
    await stopChild(runtime);
    runtime = await startRuntime(nc, url, { FM_IDLE_MS: '2000', FM_MAX_RESIDENT: '100000' });
    children.push(runtime);
    const populationStart = now();
    const target = await publishMany(
      js,
      'population',
      SIZE.population - SIZE.residentUsers,
      (i) => event(`pop-${i}`, 'subscription_activated', { subscriptionId: `sub_pop_${i}`, tier: i % 2 ? 'basic' : 'premium' }),
      Date.now() + SIZE.populationBudgetMs,
    );
    m = await metrics(nc);
    while (m.events < target) {
      progress('population: applying', m.events, target);
      await sleep(1000);
      m = await metrics(nc);
    }
    // Users with a stored record: the resident run's and this one's.
    results.registered_users = SIZE.residentUsers + target;
    results.population_stopped_by = target < SIZE.population - SIZE.residentUsers ? `time budget ${SIZE.populationBudgetMs / 1000} s` : 'target reached';
    results.population_eps = Math.round(target / ((now() - populationStart) / 1000));
    results.rss_mb = Math.round(m.rss / 1024 / 1024);
    results.population_resident_users = m.residents;
    progress('done\n');
  } finally {
    for (const c of children) await stopChild(c);
    await drainNats(nc);
    await nats.terminate();
    rmSync(store, { recursive: true, force: true });
  }

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

await main();
process.exit(0);
