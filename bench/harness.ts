/**
 * The bench's machinery, shared by the single-server run (`bench/run.ts`, `bench/population.ts`)
 * and the cluster run (`bench/cluster.ts`): sizes, timing and progress, the single-server run's
 * nats-server, the processes it forks (runtime nodes, device processes), the devices' applied views
 * and catch-ups, publishing, and the closed loop of plan changes with crisis events beside it.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstream, type JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { build } from 'hdr-histogram-js';
import { DEFAULT_RUNTIME_CONFIG } from '../actors/config.ts';
import type { MetricsSnapshot } from '../actors/metrics.ts';
import { UserEvent, type UserEventType } from '../machines/events.ts';
import type { PaidTier } from '../machines/features.ts';
import { encode } from '../transport/codec.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
import type { Lane } from '../transport/subjects.ts';
import { createTopology } from '../transport/topology.ts';
import { acceptsTcp, startNatsProcess, type NatsProcess } from '../scripts/natsProcess.ts';
import { cpuOverWindow, cpuPerEvent, type ProcessGroups, type WindowCpu } from './cpu.ts';
import type { AppliedRow, DevicesRequest } from './devices.ts';

/** The project root. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** `--quick`: the same measurements with smaller counts. */
export const quick = process.argv.includes('--quick');

/**
 * Sizes of a run. `population`: users the population step registers, one device each (beside the
 * `residentUsers` of the heap step); `connectedDevices`: how many of those devices then connect.
 */
export const SIZE = quick
  ? { crisisUsers: 40, warmupMs: 500, saturatedMs: 3_000, inFlight: 100, activations: 30, residentUsers: 3_000, population: 8_000, populationBudgetMs: 20_000, connectedDevices: 1_000 }
  : { crisisUsers: 250, warmupMs: 3_000, saturatedMs: 20_000, inFlight: 1_000, activations: 300, residentUsers: 100_000, population: 1_000_000, populationBudgetMs: 300_000, connectedDevices: 10_000 };
/** Devices per user of the main saturated run (`runtime_eps`). */
export const DEVICES = 3;
const CRISIS_EVERY_MS = 100;
/** Events a bulk publisher keeps awaiting JetStream at once. */
const PUBLISHES_IN_FLIGHT = 256;
/** A crisis no device showed this long after it was stored counts as lost. */
const CRISIS_GIVE_UP_MS = 60_000;
/** How long a runtime node may take to answer its first metrics request (it provisions first). */
const RUNTIME_READY_MS = 60_000;

/** Names the bench publishes to and asks (the default prefix, as the runtime's). */
export const topology = createTopology();
/** A high-resolution wall-clock time, comparable across the bench's processes. */
export const now = () => performance.timeOrigin + performance.now();
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with `promise`'s value, or undefined after `timeoutMs`. */
export async function within<T>(promise: Promise<T>, timeoutMs: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A latency histogram in microseconds. */
export const histogram = () => build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });
export type Histogram = ReturnType<typeof histogram>;
/** A percentile of a histogram in milliseconds, two decimals. */
export const ms = (h: Histogram, p: number) => Math.round(h.getValueAtPercentile(p) / 10) / 100;
/** `value / baseline`, two decimals: how a number is reported beside its baseline from the same run. */
export const ratio = (value: number, baseline: number) => Math.round((value / baseline) * 100) / 100;
/** Records a latency given in milliseconds. */
export const record = (h: Histogram, latencyMs: number) => h.recordValue(Math.max(1, Math.round(latencyMs * 1000)));

/** One progress line on stderr, rewritten in place. */
export function progress(label: string, done?: number, total?: number): void {
  const bar = total ? ` [${'#'.repeat(Math.round((20 * done!) / total)).padEnd(20)}] ${done}/${total}` : '';
  process.stderr.write(`\r\x1b[K${label}${bar}`);
}

// ─── processes ────────────────────────────────────────────────────────────────────────────────

/** Forks a TypeScript module of the project with extra environment (and arguments, e.g. `--quick`). */
export function forkTs(script: string, env: Record<string, string>, execArgv: string[] = [], args: readonly string[] = []): ChildProcess {
  return fork(join(ROOT, script), args, { env: { ...process.env, ...env }, execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
}

/** The first IPC message of a child that passes `predicate`; rejects if the child exits first. */
export function message<T>(child: ChildProcess, predicate: (m: T) => boolean): Promise<T> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`${child.spawnfile} exited (${code})`));
    const onMessage = (m: T) => {
      if (!predicate(m)) return;
      child.off('message', onMessage).off('exit', onExit);
      resolve(m);
    };
    child.on('message', onMessage).once('exit', onExit);
  });
}

/** SIGTERM (a clean stop) and wait for the exit. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** A runtime node as its own process; ready once it answers a metrics request on its own subject. */
export async function startRuntime(nc: NatsConnection, url: string, env: Record<string, string>, cpuProfile = false): Promise<ChildProcess> {
  const execArgv = ['--expose-gc', ...(cpuProfile ? ['--cpu-prof', `--cpu-prof-dir=${join(ROOT, 'bench/results')}`] : [])];
  const child = forkTs('actors/main.ts', { NATS_URL: url, LOG_LEVEL: 'warn', ...env }, execArgv);
  const nodeId = env.FM_NODE_ID ?? DEFAULT_RUNTIME_CONFIG.nodeId;
  const deadline = Date.now() + RUNTIME_READY_MS;
  for (;;) {
    try {
      await metrics(nc, false, nodeId);
      return child;
    } catch (err) {
      if (Date.now() > deadline || child.exitCode !== null) {
        child.kill('SIGKILL');
        throw err;
      }
      await sleep(50);
    }
  }
}

/**
 * A node's metrics: the one given, or whichever node answers first (`gc`: after a full collection).
 */
export async function metrics(nc: NatsConnection, gc = false, nodeId?: string): Promise<MetricsSnapshot> {
  const subject = topology.subjects.control(nodeId ? `metrics.${nodeId}` : 'metrics');
  const reply = await nc.request(subject, gc ? 'gc' : '', { timeout: 10_000 });
  return JSON.parse(reply.string()) as MetricsSnapshot;
}

// ─── the single-server run ───────────────────────────────────────────────────────────────────

/** How often a restarting server is asked whether it accepts connections yet. */
const ACCEPT_POLL_MS = 2;

/** The single-server run's nats-server and connection, and the runtime node of the current measurement. */
export interface Bench {
  url: string;
  /** The server's HTTP monitor (`/varz`, `/jsz`). */
  monitor: string;
  nc: NatsConnection;
  js: JetStreamClient;
  /** Stops the current runtime node (if any) and starts a new one with `env`. */
  runtime(env?: Record<string, string>, cpuProfile?: boolean): Promise<void>;
  /**
   * Stops the nats-server (SIGTERM) and starts it again on the same ports and store; resolves once
   * it is healthy and `nc` has reconnected, with the time it first accepted a TCP connection.
   */
  restartServer(): Promise<number>;
  /** The nats-server's process id. */
  readonly serverPid: number | undefined;
  /** The current runtime node's process id. */
  readonly runtimePid: number | undefined;
}

/** Runs `steps` against a fresh nats-server in a temp store; stops the runtime and the server after. */
export async function withBench(steps: (bench: Bench) => Promise<void>): Promise<void> {
  const store = mkdtempSync(join(tmpdir(), 'fullmind-bench-'));
  const port = 14_000 + (process.pid % 1000);
  const server = { cwd: store, port, httpPort: port + 1000 };
  let nats: NatsProcess = await startNatsProcess(server);
  const url = `nats://127.0.0.1:${port}`;
  const nc = await connectNats({ servers: url, name: 'bench', credentials: { role: 'runtime' } });
  let current: ChildProcess | undefined;
  try {
    await steps({
      url,
      monitor: `http://127.0.0.1:${server.httpPort}`,
      nc,
      js: jetstream(nc),
      async runtime(env = {}, cpuProfile = false) {
        if (current) await stopChild(current);
        current = await startRuntime(nc, url, env, cpuProfile);
      },
      async restartServer() {
        // A request nats.js sends before its connection is back is answered to nobody (its timeout, 5 s).
        const reconnected = (async () => {
          for await (const status of nc.status()) if (status.type === 'reconnect') return;
        })();
        await nats.terminate();
        const accepting = (async () => {
          while (!(await acceptsTcp(port))) await sleep(ACCEPT_POLL_MS);
          return now();
        })();
        nats = await startNatsProcess(server);
        await reconnected;
        return accepting;
      },
      get serverPid() {
        return nats.child.pid;
      },
      get runtimePid() {
        return current?.pid;
      },
    });
  } finally {
    if (current) await stopChild(current);
    await drainNats(nc);
    await nats.terminate();
    rmSync(store, { recursive: true, force: true });
  }
}

/** GETs a path of the server's HTTP monitor as JSON. */
export async function monitor<T>(bench: Bench, path: string): Promise<T> {
  const response = await fetch(`${bench.monitor}${path}`);
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return (await response.json()) as T;
}

/** Asks the node for its metrics every half second, with progress, until `done`; returns the last answer. */
export async function waitForMetrics(nc: NatsConnection, label: string, total: number, done: (m: MetricsSnapshot) => boolean): Promise<MetricsSnapshot> {
  for (let m = await metrics(nc); ; m = await metrics(nc)) {
    if (done(m)) return m;
    progress(label, m.events, total);
    await sleep(500);
  }
}

// ─── devices: who applied what ───────────────────────────────────────────────────────────────

/** The ids of a user's `count` devices: d0, d1, …. */
export const deviceIds = (count: number) => Array.from({ length: count }, (_, i) => `d${i}`);

/** One device process (bench/devices.ts): tracks the views its devices applied and resolves waits on them. */
export class DeviceWatch {
  private readonly child: ChildProcess;
  /** The ids of each user's devices in this process. */
  readonly devices: readonly string[];
  private readonly waits = new Map<string, { test: (row: AppliedRow) => boolean; left: Set<string>; resolve: (at: number) => void }>();

  private constructor(child: ChildProcess, devices: readonly string[]) {
    this.child = child;
    this.devices = devices;
    child.on('message', (m: { applied?: AppliedRow[] }) => {
      for (const row of m.applied ?? []) this.onApplied(row);
    });
  }

  /** Forks a device process whose users have `devices` devices each. */
  static async start(url: string, devices = DEVICES): Promise<DeviceWatch> {
    const child = forkTs('bench/devices.ts', { NATS_URL: url });
    await message<{ ready?: boolean }>(child, (m) => !!m.ready);
    return new DeviceWatch(child, deviceIds(devices));
  }

  /** Every device of each user, as `user:device`. */
  private pairs(users: readonly string[]): string[] {
    return users.flatMap((u) => this.devices.map((d) => `${u}:${d}`));
  }

  /** Starts every device of `users` on the process's one connection. */
  async add(users: string[]): Promise<void> {
    const pairs = this.pairs(users);
    this.ask({ start: pairs });
    await message<{ started?: number }>(this.child, (m) => m.started === pairs.length);
  }

  /**
   * Starts every device of `users` on new connections of `perConnection` devices each; resolves
   * with each device's catch-up time in ms (start → first catch-up holding a view) and how many
   * found no view.
   */
  async connect(users: string[], perConnection: number): Promise<{ connected: number[]; viewless: number }> {
    this.ask({ connect: { pairs: this.pairs(users), perConnection } });
    return message<{ connected: number[]; viewless: number }>(this.child, (m) => m.connected !== undefined);
  }

  /**
   * From now on, waits for every device of the users in `versions` to catch up (after a reconnect)
   * holding at least its user's version; resolves with when the last one did.
   */
  async storm(versions: ReadonlyMap<string, number>): Promise<{ converged: Promise<number> }> {
    const converged = message<{ converged?: number }>(this.child, (m) => m.converged !== undefined).then((m) => m.converged!);
    this.ask({ storm: [...versions].flatMap(([user, version]) => this.devices.map((d): [string, number] => [`${user}:${d}`, version])) });
    await message<{ armed?: boolean }>(this.child, (m) => !!m.armed);
    return { converged };
  }

  /** Devices of the storm not converged yet. */
  async pending(): Promise<number> {
    this.ask({ pending: true });
    return (await message<{ pending?: number }>(this.child, (m) => m.pending !== undefined)).pending!;
  }

  /** Resolves with the time the last of the user's devices applied a view that passes `test`. */
  until(userId: string, test: (row: AppliedRow) => boolean): Promise<number> {
    return new Promise((resolve) => this.waits.set(userId, { test, left: new Set(this.devices), resolve }));
  }

  /** The device process's id (its CPU time is read from /proc). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  private ask(request: DevicesRequest): void {
    this.child.send(request);
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
/** A new event with a unique id, timed now. */
export function event(userId: string, type: UserEventType, fields: Record<string, unknown>): UserEvent {
  return { type, id: `b${process.pid}-${++eventSeq}`, userId, at: Date.now(), ...fields } as UserEvent;
}

/** Publishes an event to a subject (its lane's by default); resolves when JetStream stored it. */
export function publish(js: JetStreamClient, e: UserEvent, subject = topology.subjects.event(e.userId, e.type)) {
  return js.publish(subject, encode(UserEvent, e), { msgID: e.id });
}

/**
 * Publishes up to `count` events, at most {@link PUBLISHES_IN_FLIGHT} awaiting JetStream at once,
 * with progress; stops early when the time `until` passes. Returns how many it published.
 */
export async function publishMany(js: JetStreamClient, label: string, count: number, make: (i: number) => UserEvent, until = Infinity): Promise<number> {
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

// ─── the closed loop ─────────────────────────────────────────────────────────────────────────

/**
 * Keeps one loop per user (as many in flight) each sending one event and waiting for it to be seen
 * end to end, for the warm-up and then the measured window; returns events per second over the
 * window. `during` runs beside the window and is told whether it is still open.
 */
export async function closedLoop(
  label: string,
  users: readonly string[],
  send: (user: string) => Promise<unknown>,
  during?: (inWindow: () => boolean) => Promise<void>,
): Promise<number> {
  let measuring = false;
  let stop = false;
  let completed = 0;
  const loops = users.map(async (user) => {
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
 * Presses a crisis user's button (an event on `lane`); resolves with when it was stored and when the
 * last of the user's devices applied a crisis view, which stays undefined when that took longer than
 * {@link CRISIS_GIVE_UP_MS}: the crisis was lost.
 */
export async function pressCrisis(js: JetStreamClient, watch: DeviceWatch, user: string, lane: Lane): Promise<{ sent: number; applied?: number }> {
  const e = event(user, 'crisis_button', { deviceId: 'd0' });
  const applied = watch.until(user, (row) => row[4]);
  const sent = now();
  await publish(js, e, topology.subjects.event(user, e.type, lane));
  return { sent, applied: await within(applied, CRISIS_GIVE_UP_MS) };
}

/**
 * Crisis events every `everyMs` while `sampling()` holds, each for a fresh crisis user: published →
 * all its devices in crisis. `lost`: crises no device showed in time.
 */
export async function sampleCrises(
  js: JetStreamClient,
  watch: DeviceWatch,
  users: string[],
  sampling: () => boolean,
  lane: Lane,
  everyMs = CRISIS_EVERY_MS,
): Promise<{ latency: Histogram; used: string[]; lost: number }> {
  const h = histogram();
  const pending: Promise<void>[] = [];
  const used: string[] = [];
  let lost = 0;
  for (let i = 0; sampling() && i < users.length; i++) {
    const user = users[i]!;
    used.push(user);
    const pressed = pressCrisis(js, watch, user, lane);
    pending.push(pressed.then(({ sent, applied }) => (applied === undefined ? void lost++ : record(h, applied - sent))));
    await sleep(everyMs);
  }
  await Promise.all(pending);
  return { latency: h, used, lost };
}

/** Resolves every crisis user's crisis, so the pool can be used again. */
export async function resolveCrises(js: JetStreamClient, watch: DeviceWatch, users: string[]): Promise<void> {
  await Promise.all(
    users.map(async (u) => {
      const back = watch.until(u, (row) => !row[4]);
      await publish(js, event(u, 'crisis_resolved', { by: 'clinician' }));
      await back;
    }),
  );
}

/**
 * Premium users with the same number of devices each: the load users, and the crisis users whose
 * devices and crisis button are their own clients, as on real phones (a device never shares a
 * connection with other users' devices).
 */
export interface Load {
  watch: DeviceWatch;
  crisisWatch: DeviceWatch;
  buttons: JetStreamClient;
  loadUsers: string[];
  crisisUsers: string[];
  /** Each load user's tier now: every load event flips it, so every one of them changes the view. */
  tiers: Map<string, PaidTier>;
  stop(): Promise<void>;
}

/** Options of {@link startLoad}. */
export interface LoadOptions {
  /** Load users, one per loop of the closed loop. @default SIZE.inFlight */
  loadUsers?: number;
  /** Crisis users (none: no crisis sampling). @default SIZE.crisisUsers */
  crisisUsers?: number;
  /** Devices per user. @default DEVICES */
  devices?: number;
  /** The load users' ids start with it, so runs with other device counts have users of their own. @default 'load' */
  prefix?: string;
}

/** `count` user ids: `<prefix>-00000`, …. */
export const userIds = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(5, '0')}`);

/** Starts the device processes and registers the load users and the crisis users, all premium. */
export async function startLoad(server: { url: string; js: JetStreamClient }, options: LoadOptions = {}): Promise<Load> {
  const { loadUsers = SIZE.inFlight, crisisUsers = SIZE.crisisUsers, devices = DEVICES, prefix = 'load' } = options;
  const watch = await DeviceWatch.start(server.url, devices);
  const crisisWatch = await DeviceWatch.start(server.url, devices);
  const buttonNc = await connectNats({ servers: server.url, name: 'bench-crisis-button', credentials: { role: 'runtime' } });
  const loadPool = userIds(prefix, loadUsers);
  const crisisPool = userIds('crisis', crisisUsers);
  const stop = () => Promise.all([watch.stop(), crisisWatch.stop(), drainNats(buttonNc)]).then(() => undefined);
  const premium = async (u: string, w: DeviceWatch) => {
    const applied = w.until(u, (row) => row[3] === 'premium');
    for (const d of w.devices) await publish(server.js, event(u, 'device_registered', { deviceId: d, platform: 'ios' }));
    await publish(server.js, event(u, 'subscription_activated', { subscriptionId: `sub_${u}`, tier: 'premium' }));
    await applied;
  };
  try {
    progress(`registering devices (${devices} per user)`);
    await watch.add(loadPool);
    await crisisWatch.add(crisisPool);
    await Promise.all([...loadPool.map((u) => premium(u, watch)), ...crisisPool.map((u) => premium(u, crisisWatch))]);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    watch,
    crisisWatch,
    buttons: jetstream(buttonNc),
    loadUsers: loadPool,
    crisisUsers: crisisPool,
    tiers: new Map(loadPool.map((u) => [u, 'premium'])),
    stop,
  };
}

/** Flips a load user's tier; resolves with the time the last of its devices applied the new view. */
export async function flipTier(js: JetStreamClient, load: Load, user: string): Promise<number> {
  const tier = load.tiers.get(user) === 'premium' ? 'basic' : 'premium';
  load.tiers.set(user, tier);
  const applied = load.watch.until(user, (row) => row[3] === tier);
  await publish(js, event(user, 'plan_changed', { subscriptionId: `sub_${user}`, tier }));
  return applied;
}

/**
 * A closed loop of plan changes while crisis users press their button (on `lane`) for as long as
 * the measured window is open; every crisis is resolved after. With `cpu`, also those processes'
 * CPU µs per event over the window.
 */
export async function saturated(js: JetStreamClient, load: Load, lane: Lane, label = lane === 'crisis' ? 'runtime' : 'runtime, no crisis lane', cpu?: ProcessGroups) {
  let crisis: Awaited<ReturnType<typeof sampleCrises>> | undefined;
  let window: WindowCpu | undefined;
  const eps = await closedLoop(label, load.loadUsers, (user) => flipTier(js, load, user), async (inWindow) => {
    [crisis, window] = await Promise.all([sampleCrises(load.buttons, load.crisisWatch, load.crisisUsers, inWindow, lane), cpu && cpuOverWindow(cpu, inWindow)]);
  });
  await resolveCrises(load.buttons, load.crisisWatch, crisis!.used);
  return { eps, latency: crisis!.latency, lost: crisis!.lost, cpuUsPerEvent: window && cpuPerEvent(window, eps) };
}
