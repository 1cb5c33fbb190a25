/**
 * The bench's machinery, shared by the single-server run (`bench/run.ts`) and the cluster run
 * (`bench/cluster.ts`): sizes, timing and progress, the processes it forks (runtime nodes, device
 * processes), the devices' applied views, publishing, and the closed loop of plan changes with
 * crisis events beside it.
 */
import { fork, type ChildProcess } from 'node:child_process';
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
import type { AppliedRow } from './devices.ts';

/** The project root. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** `--quick`: the same measurements with smaller counts. */
export const quick = process.argv.includes('--quick');

/** Sizes of a run. */
export const SIZE = quick
  ? { crisisUsers: 40, warmupMs: 500, saturatedMs: 3_000, inFlight: 100, activations: 30, residentUsers: 3_000, population: 8_000, populationBudgetMs: 20_000 }
  : { crisisUsers: 250, warmupMs: 3_000, saturatedMs: 20_000, inFlight: 1_000, activations: 300, residentUsers: 100_000, population: 1_000_000, populationBudgetMs: 300_000 };
const DEVICES = ['d0', 'd1', 'd2'];
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
/** A latency histogram in microseconds. */
export const histogram = () => build({ lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: 3 });
export type Histogram = ReturnType<typeof histogram>;
/** A percentile of a histogram in milliseconds, two decimals. */
export const ms = (h: Histogram, p: number) => Math.round(h.getValueAtPercentile(p) / 10) / 100;
/** Records a latency given in milliseconds. */
export const record = (h: Histogram, latencyMs: number) => h.recordValue(Math.max(1, Math.round(latencyMs * 1000)));

/** One progress line on stderr, rewritten in place. */
export function progress(label: string, done?: number, total?: number): void {
  const bar = total ? ` [${'#'.repeat(Math.round((20 * done!) / total)).padEnd(20)}] ${done}/${total}` : '';
  process.stderr.write(`\r\x1b[K${label}${bar}`);
}

// ─── processes ────────────────────────────────────────────────────────────────────────────────

/** Forks a TypeScript module of the project with extra environment. */
export function forkTs(script: string, env: Record<string, string>, execArgv: string[] = []): ChildProcess {
  return fork(join(ROOT, script), [], { env: { ...process.env, ...env }, execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
}

/** The first IPC message of a child that passes `predicate`; rejects if the child exits first. */
export function message<T>(child: ChildProcess, predicate: (m: T) => boolean): Promise<T> {
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

// ─── devices: who applied what ───────────────────────────────────────────────────────────────

/** Tracks the views devices applied and resolves waits on them. */
export class DeviceWatch {
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

  /** The device process's id (its CPU time is read from /proc). */
  get pid(): number | undefined {
    return this.child.pid;
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
 * Keeps `inFlight` loops each sending one event and waiting for it to be seen end to end, for the
 * warm-up and then the measured window; returns events per second over the window. `during` runs
 * beside the window and is told whether it is still open.
 */
export async function closedLoop(
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
 * Presses a crisis user's button (an event on `lane`); resolves with when it was stored and when the
 * last of the user's devices applied a crisis view, which stays undefined when that took longer than
 * {@link CRISIS_GIVE_UP_MS}: the crisis was lost.
 */
export async function pressCrisis(js: JetStreamClient, watch: DeviceWatch, user: string, lane: Lane): Promise<{ sent: number; applied?: number }> {
  const e = event(user, 'crisis_button', { deviceId: 'd0' });
  const applied = watch.until(user, (row) => row[4]);
  const sent = now();
  await publish(js, e, topology.subjects.event(user, e.type, lane));
  let timer: NodeJS.Timeout | undefined;
  const givenUp = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), CRISIS_GIVE_UP_MS)));
  const at = await Promise.race([applied, givenUp]);
  clearTimeout(timer);
  return { sent, applied: at };
}

/**
 * Crisis events every `everyMs` while `sampling()` holds, each for a fresh crisis user: published →
 * all three devices in crisis. `lost`: crises no device showed in time.
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
 * Premium users with three devices each: the load users, and the crisis users whose devices and
 * crisis button are their own clients, as on real phones (a device never shares a connection with
 * other users' devices).
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

/**
 * Starts the device processes and registers `loadUsers` load users (one per loop of the closed loop)
 * and `crisisUsers` crisis users, all premium.
 */
export async function startLoad(server: { url: string; js: JetStreamClient }, loadUsers = SIZE.inFlight, crisisUsers = SIZE.crisisUsers): Promise<Load> {
  const watch = await DeviceWatch.start(server.url);
  const crisisWatch = await DeviceWatch.start(server.url);
  const buttonNc = await connectNats({ servers: server.url, name: 'bench-crisis-button' });
  const loadPool = Array.from({ length: loadUsers }, (_, i) => `load-${String(i).padStart(5, '0')}`);
  const crisisPool = Array.from({ length: crisisUsers }, (_, i) => `crisis-${String(i).padStart(4, '0')}`);
  const stop = () => Promise.all([watch.stop(), crisisWatch.stop(), drainNats(buttonNc)]).then(() => undefined);
  const premium = async (u: string, w: DeviceWatch) => {
    const applied = w.until(u, (row) => row[3] === 'premium');
    for (const d of DEVICES) await publish(server.js, event(u, 'device_registered', { deviceId: d, platform: 'ios' }));
    await publish(server.js, event(u, 'subscription_activated', { subscriptionId: `sub_${u}`, tier: 'premium' }));
    await applied;
  };
  try {
    progress('registering devices');
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
 * the measured window is open; every crisis is resolved after.
 */
export async function saturated(js: JetStreamClient, load: Load, lane: Lane, label = lane === 'crisis' ? 'runtime' : 'runtime, no crisis lane') {
  let crisis: Awaited<ReturnType<typeof sampleCrises>> | undefined;
  const eps = await closedLoop(label, load.loadUsers.length, (user) => flipTier(js, load, user), async (inWindow) => {
    crisis = await sampleCrises(load.buttons, load.crisisWatch, load.crisisUsers, inWindow, lane);
  });
  await resolveCrises(load.buttons, load.crisisWatch, crisis!.used);
  return { eps, latency: crisis!.latency, lost: crisis!.lost };
}
