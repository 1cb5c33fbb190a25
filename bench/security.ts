/**
 * What the transport's security costs (`bench/run.ts`). The single-server run is the default: every
 * connection TLS, role users signing in with their nkeys, the store encrypted at rest, the auth
 * callout in the runtime node's process. Measured beside it:
 *
 * - {@link plainBaseline}, first in the run: the main saturated run (the same closed loop of plan
 *   changes with crisis presses, the same users and devices) on a fresh nats-server started with
 *   `FM_ALLOW_PLAIN=true`, every process of it with `FM_TLS=off`: a process of its own, whose
 *   environment the server, the runtime node and the device processes inherit. Fields
 *   `plain_runtime_eps`, `plain_crisis_p50_ms`, `plain_crisis_p99_ms`, `plain_crisis_lost`, and
 *   `tls_vs_plain_eps`, `tls_vs_plain_crisis_p50`, `tls_vs_plain_crisis_p99`: the main run's
 *   `runtime_eps`, `crisis_p50_ms`, `crisis_p99_ms` divided by them.
 * - {@link connectCost}, in the main run: {@link CONNECTS} connections opened and closed,
 *   {@link CONNECTS_IN_FLIGHT} at once, as devices coming back together do: a role signing in with
 *   its nkey (no callout), and devices signing in with their tokens through the callout (the load
 *   users' devices, registered: their views list them). Fields `connect_nkey` and
 *   `connect_callout`, each `p50_ms`, `p99_ms` (connect call → connection open), `per_s` and
 *   `cpu_ms` per connect of this process (`client`), the `runtime` node's (where the callout
 *   runs) and the `nats` server's; `callout_vs_nkey_connect_p50`, `callout_vs_nkey_connect_p99`
 *   and `callout_vs_nkey_connects_per_s` divide the callout's by the nkey's.
 *
 * Each checks on the server's monitor that its connections are what it says: all TLS, or none.
 */
import { Kvm } from '@nats-io/kv';
import { issueDeviceToken } from '../auth/deviceToken.ts';
import { connectNats } from '../transport/connection.ts';
import type { Credentials } from '../transport/credentials.ts';
import { cpuOverWindow, type ProcessGroups } from './cpu.ts';
import {
  forkTs,
  histogram,
  message,
  monitor,
  ms,
  now,
  progress,
  quick,
  ratio,
  record,
  saturated,
  startLoad,
  stopChild,
  topology,
  within,
  withBench,
  type Bench,
  type Load,
} from './harness.ts';

/** Connections opened per kind of credentials. */
const CONNECTS = quick ? 200 : 2_000;
/** Connections being opened at once. */
const CONNECTS_IN_FLIGHT = 4;
/** A connection not open after this long fails the measurement. */
const CONNECT_GIVE_UP_MS = 10_000;

/** The environment of the plain baseline's process: the server takes plain clients, every client is one. */
const PLAIN_ENV = { FM_ALLOW_PLAIN: 'true', FM_TLS: 'off' };

/** The saturated run's numbers both runs report. */
export interface LoadNumbers {
  runtime_eps: number;
  crisis_p50_ms: number;
  crisis_p99_ms: number;
  crisis_lost: number;
}

/** Throws unless the server's client connections are all TLS (`tls`) or none is: a run measures what it says. */
async function checkTransport(bench: Bench, tls: boolean): Promise<void> {
  const { connections } = await monitor<{ connections: Array<{ name?: string; tls_version?: string }> }>(bench, '/connz?limit=100000');
  if (connections.length === 0) throw new Error('the server lists no connections');
  const wrong = connections.filter((c) => (c.tls_version !== undefined) !== tls);
  if (wrong.length > 0) throw new Error(`${wrong.length} of ${connections.length} connections are not ${tls ? 'TLS' : 'plain'}: ${wrong.map((c) => c.name).join(', ')}`);
}

/** In the plain baseline's process: the main run's saturated load on a server and runtime node of its own, all plain. */
async function plainRun(): Promise<LoadNumbers> {
  let numbers: LoadNumbers | undefined;
  progress('plain baseline: server, runtime node, devices');
  await withBench(async (bench) => {
    await bench.runtime();
    const load = await startLoad(bench);
    try {
      await checkTransport(bench, false);
      const run = await saturated(bench.js, load, 'crisis', 'runtime, plain');
      numbers = { runtime_eps: Math.round(run.eps), crisis_p50_ms: ms(run.latency, 50), crisis_p99_ms: ms(run.latency, 99), crisis_lost: run.lost };
    } finally {
      await load.stop();
    }
  });
  return numbers!;
}

/** The plain baseline: {@link plainRun} in a process of its own with {@link PLAIN_ENV}. */
export async function plainBaseline(): Promise<LoadNumbers> {
  const child = forkTs('bench/security.ts', PLAIN_ENV, [], process.argv.slice(2));
  try {
    return (await message<{ plain?: LoadNumbers }>(child, (m) => !!m.plain)).plain!;
  } finally {
    await stopChild(child);
  }
}

/** The plain baseline's fields beside the main (TLS) run's numbers `tls` (see the module comment). */
export function tlsVsPlain(plain: LoadNumbers, tls: Omit<LoadNumbers, 'crisis_lost'>): Record<string, number> {
  return {
    plain_runtime_eps: plain.runtime_eps,
    plain_crisis_p50_ms: plain.crisis_p50_ms,
    plain_crisis_p99_ms: plain.crisis_p99_ms,
    plain_crisis_lost: plain.crisis_lost,
    tls_vs_plain_eps: ratio(tls.runtime_eps, plain.runtime_eps),
    tls_vs_plain_crisis_p50: ratio(tls.crisis_p50_ms, plain.crisis_p50_ms),
    tls_vs_plain_crisis_p99: ratio(tls.crisis_p99_ms, plain.crisis_p99_ms),
  };
}

/** Connection set-up of one kind of credentials. */
interface ConnectStats {
  p50_ms: number;
  p99_ms: number;
  per_s: number;
  cpu_ms: Record<string, number>;
}

/**
 * Opens and closes {@link CONNECTS} connections, {@link CONNECTS_IN_FLIGHT} at once, the i-th signing
 * in with `credentials(i)`; the CPU of `processes` over them, per connect.
 */
async function connects(bench: Bench, label: string, processes: ProcessGroups, credentials: (i: number) => Credentials): Promise<ConnectStats> {
  const h = histogram();
  let next = 0;
  let running = true;
  const cpu = cpuOverWindow(processes, () => running);
  const started = now();
  const worker = async () => {
    while (next < CONNECTS) {
      const i = next++;
      const sent = now();
      const nc = await within(connectNats({ servers: bench.url, name: 'bench-connect', credentials: credentials(i) }), CONNECT_GIVE_UP_MS);
      if (!nc) throw new Error(`${label}: a connection was not open within ${CONNECT_GIVE_UP_MS} ms`);
      record(h, now() - sent);
      await nc.close();
      if (i % 20 === 0) progress(label, i, CONNECTS);
    }
  };
  await Promise.all(Array.from({ length: CONNECTS_IN_FLIGHT }, worker));
  const elapsed = (now() - started) / 1000;
  running = false;
  const { cpuMs } = await cpu;
  return {
    p50_ms: ms(h, 50),
    p99_ms: ms(h, 99),
    per_s: Math.round(CONNECTS / elapsed),
    cpu_ms: Object.fromEntries(Object.entries(cpuMs).map(([name, total]) => [name, Math.round((total / CONNECTS) * 100) / 100])),
  };
}

/**
 * Credentials of up to {@link CONNECTS} of the load users' devices, each with a token recorded as
 * its device's current one.
 */
async function deviceCredentials(bench: Bench, load: Load): Promise<Credentials[]> {
  const tokens = await new Kvm(bench.nc).open(topology.buckets.deviceTokens);
  const devices = load.loadUsers.flatMap((userId) => load.watch.devices.map((deviceId) => ({ userId, deviceId }))).slice(0, CONNECTS);
  return Promise.all(devices.map(async (device) => ({ deviceToken: await issueDeviceToken(tokens, device), ...device })));
}

/** Role and device connects in the main run, with `load`'s users registered (see the module comment). */
export async function connectCost(bench: Bench, load: Load): Promise<Record<string, unknown>> {
  await checkTransport(bench, true);
  const processes = { client: [process.pid], runtime: [bench.runtimePid], nats: [bench.serverPid] };
  const nkey = await connects(bench, 'connects, role nkey', processes, () => ({ role: 'runtime' }));
  const devices = await deviceCredentials(bench, load);
  const callout = await connects(bench, 'connects, device token through the callout', processes, (i) => devices[i % devices.length]!);
  return {
    connect_nkey: nkey,
    connect_callout: callout,
    callout_vs_nkey_connect_p50: ratio(callout.p50_ms, nkey.p50_ms),
    callout_vs_nkey_connect_p99: ratio(callout.p99_ms, nkey.p99_ms),
    callout_vs_nkey_connects_per_s: ratio(callout.per_s, nkey.per_s),
  };
}

// The plain baseline's own process (forked by plainBaseline with PLAIN_ENV).
if (import.meta.main) process.send!({ plain: await plainRun() });
