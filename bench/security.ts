/**
 * What the transport's security costs (`bench/run.ts`). The single-server run is the default: every
 * connection TLS, role users signing in with their nkeys, the store encrypted at rest, the auth
 * callout in the runtime node's process. Measured beside it:
 *
 * - {@link tlsAndPlain}, first in the run: the main saturated run (the same closed loop of plan
 *   changes with crisis presses, the same users and devices) in legs of their own, each a process
 *   with a fresh nats-server, runtime node and device processes, alternating plain and TLS
 *   ({@link LEG_PAIRS} pairs, plain first): a plain leg's server is started with
 *   `FM_ALLOW_PLAIN=true` and all its processes with `FM_TLS=off`. Both kinds start alike, so the
 *   order of the run weighs on neither. Fields `plain_runtime_eps`, `plain_crisis_p50_ms`,
 *   `plain_crisis_p99_ms`, `tls_runtime_eps`, `tls_crisis_p50_ms`, `tls_crisis_p99_ms` (medians of
 *   the legs), `*_crisis_lost` (summed), and `tls_vs_plain_eps`, `tls_vs_plain_crisis_p50`,
 *   `tls_vs_plain_crisis_p99`: TLS divided by plain.
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

/** Pairs of legs, plain then TLS, that {@link tlsAndPlain} runs. */
const LEG_PAIRS = quick ? 1 : 2;

/** In a leg's process: the main run's saturated load on a server and runtime node of its own, TLS unless `FM_TLS=off`. */
async function leg(): Promise<LoadNumbers> {
  const tls = process.env.FM_TLS !== 'off';
  const label = tls ? 'TLS' : 'plain';
  let numbers: LoadNumbers | undefined;
  progress(`${label} leg: server, runtime node, devices`);
  await withBench(async (bench) => {
    await bench.runtime();
    const load = await startLoad(bench);
    try {
      await checkTransport(bench, tls);
      const run = await saturated(bench.js, load, 'crisis', `runtime, ${label} leg`);
      numbers = { runtime_eps: Math.round(run.eps), crisis_p50_ms: ms(run.latency, 50), crisis_p99_ms: ms(run.latency, 99), crisis_lost: run.lost };
    } finally {
      await load.stop();
    }
  });
  return numbers!;
}

/** One leg ({@link leg}) in a process of its own: plain with {@link PLAIN_ENV}, else TLS. */
async function runLeg(plain: boolean): Promise<LoadNumbers> {
  const child = forkTs('bench/security.ts', plain ? PLAIN_ENV : {}, [], process.argv.slice(2));
  try {
    return (await message<{ leg?: LoadNumbers }>(child, (m) => !!m.leg)).leg!;
  } finally {
    await stopChild(child);
  }
}

/** What TLS costs: plain and TLS legs alternating, their medians and the ratios (see the module comment). */
export async function tlsAndPlain(): Promise<Record<string, number>> {
  const legs: Record<'plain' | 'tls', LoadNumbers[]> = { plain: [], tls: [] };
  for (let pair = 0; pair < LEG_PAIRS; pair++) {
    legs.plain.push(await runLeg(true));
    legs.tls.push(await runLeg(false));
  }
  const median = (xs: number[]) => {
    const sorted = [...xs].sort((a, b) => a - b);
    const mid = sorted.length / 2;
    return Number.isInteger(mid) ? (sorted[mid - 1]! + sorted[mid]!) / 2 : sorted[Math.floor(mid)]!;
  };
  const fields: Record<string, number> = {};
  for (const kind of ['plain', 'tls'] as const) {
    fields[`${kind}_runtime_eps`] = Math.round(median(legs[kind].map((l) => l.runtime_eps)));
    fields[`${kind}_crisis_p50_ms`] = median(legs[kind].map((l) => l.crisis_p50_ms));
    fields[`${kind}_crisis_p99_ms`] = median(legs[kind].map((l) => l.crisis_p99_ms));
    fields[`${kind}_crisis_lost`] = legs[kind].reduce((sum, l) => sum + l.crisis_lost, 0);
  }
  return {
    ...fields,
    tls_vs_plain_eps: ratio(fields.tls_runtime_eps!, fields.plain_runtime_eps!),
    tls_vs_plain_crisis_p50: ratio(fields.tls_crisis_p50_ms!, fields.plain_crisis_p50_ms!),
    tls_vs_plain_crisis_p99: ratio(fields.tls_crisis_p99_ms!, fields.plain_crisis_p99_ms!),
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

// A leg's own process (forked by runLeg).
if (import.meta.main) process.send!({ leg: await leg() });
