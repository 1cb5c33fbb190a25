/**
 * The population steps of the single-server run (`bench/run.ts`): as many users as the time budget
 * allows, each registering one device, served through passivation; then some of those devices
 * connected, and a restart of the nats-server under them. Adds these fields:
 *
 * - `registered_users`: users with a stored record, the resident-heap step's and this step's;
 *   `population_stopped_by` says whether this step reached its target (`SIZE.population`) or its
 *   time budget; `population_eps`: this step's users / (first publish → every event applied and
 *   every view stored); `rss_mb`, `population_resident_users`: the runtime node's then.
 * - `device_population`: `registered`, devices registered in this step (one `device_registered` per
 *   user, each storing the user's one view); `connected`, devices of those users connected (the
 *   users spread evenly over the population), `per_connection` of them sharing a NATS connection,
 *   all in one device process (bench/devices.ts, 64 starting at once); `server_consumers`, consumers
 *   on the server over all streams with them connected (`/jsz`: the runtime's own, none per
 *   device); `server_rss_mb`, the nats-server's resident memory then (`/varz` `mem`);
 *   `catch_up_p50_ms`, `catch_up_p99_ms`, per device from its `DeviceActor.start` call to its first
 *   catch-up holding a view; `viewless`, devices whose catch-up found no stored view (0 unless
 *   views are lost).
 * - `reconnect_storm_ms`: with those devices connected, the nats-server stopped (SIGTERM) and started
 *   again on the same port and store: from the moment it accepts connections until every device has
 *   caught up after its reconnect holding at least the version stored before the restart.
 * - `reconnect_runtime_ms`: from the same moment until the devices of {@link CHANGED_AFTER_RESTART}
 *   of those users (passivated long before) applied the view of an event published for each once
 *   the server is healthy again and the bench's own connection is back: the runtime node
 *   reconnected, consumes and commits.
 *
 * Either of the last two is a sentence instead of a number when it did not happen within
 * {@link STORM_GIVE_UP_MS}.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { isTransient } from '../transport/errors.ts';
import { lastView } from '../transport/viewStore.ts';
import {
  DeviceWatch,
  event,
  histogram,
  monitor,
  ms,
  now,
  progress,
  publish,
  publishMany,
  record,
  SIZE,
  sleep,
  topology,
  waitForMetrics,
  within,
  type Bench,
} from './harness.ts';

/** Devices sharing one NATS connection (a phone has its own; sharing keeps the bench's sockets few). */
const DEVICES_PER_CONNECTION = 100;
/** Stored views read at once before the restart. */
const READS_IN_FLIGHT = 64;
/** Users whose view changes right after the restart. */
const CHANGED_AFTER_RESTART = 100;
/** Longest wait for the devices, or the runtime, after the restart. */
const STORM_GIVE_UP_MS = 60_000;

/** Runs `fn` for every item, at most `limit` at once. */
async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

/** Users with one device each, as many as the time budget allows: the registered devices. */
async function registerPopulation(bench: Bench) {
  await bench.runtime({ FM_IDLE_MS: '2000', FM_MAX_RESIDENT: '100000' });
  const started = now();
  const published = await publishMany(
    bench.js,
    'population',
    SIZE.population,
    (i) => event(`pop-${i}`, 'device_registered', { deviceId: 'd0', platform: 'ios' }),
    Date.now() + SIZE.populationBudgetMs,
  );
  // Each user's one event changes what its devices see: one view stored per user.
  const m = await waitForMetrics(bench.nc, 'population: applying', published, (x) => x.events >= published && x.viewsPublished >= published);
  const fields = {
    registered_users: SIZE.residentUsers + published,
    population_stopped_by: published < SIZE.population ? `time budget ${SIZE.populationBudgetMs / 1000} s` : 'target reached',
    population_eps: Math.round(published / ((now() - started) / 1000)),
    rss_mb: Math.round(m.rss / 1024 / 1024),
    population_resident_users: m.residents,
  };
  return { fields, registered: published };
}

/** The connected devices: their catch-up at start and what the server holds with them connected. */
async function connectDevices(bench: Bench, watch: DeviceWatch, registered: number, users: string[]) {
  progress(`device population: connecting ${users.length} devices`);
  const { connected, viewless } = await watch.connect(users, DEVICES_PER_CONNECTION);
  const catchUp = histogram();
  for (const t of connected) record(catchUp, t);
  const jsz = await monitor<{ consumers: number }>(bench, '/jsz');
  const varz = await monitor<{ mem: number }>(bench, '/varz');
  return {
    registered,
    connected: connected.length,
    per_connection: DEVICES_PER_CONNECTION,
    server_consumers: jsz.consumers,
    server_rss_mb: Math.round(varz.mem / 1024 / 1024),
    catch_up_p50_ms: ms(catchUp, 50),
    catch_up_p99_ms: ms(catchUp, 99),
    viewless,
  };
}

/** Publishes an event, again while the server answers that it cannot yet (same id: stored once). */
async function publishAfterRestart(bench: Bench, userId: string): Promise<void> {
  const e = event(userId, 'subscription_activated', { subscriptionId: `sub_${userId}`, tier: 'premium' });
  for (;;) {
    try {
      await publish(bench.js, e);
      return;
    } catch (err) {
      if (!isTransient(err)) throw err;
      await sleep(50);
    }
  }
}

/** The nats-server restarted under the connected devices and the runtime node (see the module comment). */
async function reconnectStorm(bench: Bench, watch: DeviceWatch, users: string[]) {
  const { direct } = await jetstreamManager(bench.nc);
  const stored = new Map<string, number>();
  await eachLimited(users, READS_IN_FLIGHT, async (u) => {
    const view = await lastView(direct, topology, u);
    if (!view) throw new Error(`no view stored for ${u} before the restart`);
    stored.set(u, view.version);
  });
  const { converged } = await watch.storm(stored);
  progress('reconnect storm: restarting nats-server');
  const acceptedAt = await bench.restartServer();
  const changed = users.slice(0, CHANGED_AFTER_RESTART);
  const applied = Promise.all(changed.map((u) => watch.until(u, (row) => row[3] === 'premium')));
  await Promise.all(changed.map((u) => publishAfterRestart(bench, u)));
  let done = false;
  const since = (at: number | undefined) => (at === undefined ? undefined : Math.round(at - acceptedAt));
  const storm = within(converged, STORM_GIVE_UP_MS).finally(() => (done = true));
  while (!done) {
    progress('reconnect storm: devices caught up', users.length - (await watch.pending()), users.length);
    await sleep(500);
  }
  const [stormAt, runtimeAt] = await Promise.all([storm, within(applied.then((at) => Math.max(...at)), STORM_GIVE_UP_MS)]);
  return {
    reconnect_storm_ms: since(stormAt) ?? `not within ${STORM_GIVE_UP_MS} ms: ${await watch.pending()} of ${users.length} devices had not caught up`,
    reconnect_runtime_ms: since(runtimeAt) ?? `not within ${STORM_GIVE_UP_MS} ms: no view of the ${changed.length} users changed after the restart reached their devices`,
  };
}

/** The population steps (see the module comment). */
export async function population(bench: Bench): Promise<Record<string, unknown>> {
  const { fields, registered } = await registerPopulation(bench);
  const count = Math.min(SIZE.connectedDevices, registered);
  // Spread over the population: early and late registrations alike.
  const users = Array.from({ length: count }, (_, i) => `pop-${Math.floor((i * registered) / count)}`);
  const watch = await DeviceWatch.start(bench.url, 1);
  try {
    const device_population = await connectDevices(bench, watch, registered, users);
    return { ...fields, device_population, ...(await reconnectStorm(bench, watch, users)) };
  } finally {
    await watch.stop();
  }
}
