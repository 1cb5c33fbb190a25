/**
 * `npm run nemesis`: a Jepsen-style run on this machine (DESIGN §10). Three nats-servers clustered,
 * each in a network namespace of its own (network.ts), three runtime nodes and device processes
 * under load (load.ts), a seeded schedule of faults (schedule.ts, faults.ts): kill -9 and SIGSTOP of
 * nodes and servers, and partitions that cut one server off. Then everything is healed, the lanes
 * drain, the devices settle, and the checker (checker.ts) reads what the system stored and what
 * the devices printed. Exit status 0 only when it finds no anomaly and the run had no error.
 *
 * Needs root (network namespaces). Only one run at a time on a machine: the namespaces have fixed
 * names, and a run removes what an aborted one left (its namespaces, and its node and device
 * processes, by the pids it recorded) before it starts.
 */
import { execFileSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Kvm } from '@nats-io/kv';
import { pino } from 'pino';
import { deploymentFromEnv } from '../actors/config.ts';
import { REDACTED_KEYS, type Logger } from '../actors/logger.ts';
import { ensureSecrets } from '../auth/secrets.ts';
import { machineMs } from '../bench/cpu.ts';
import { startNatsCluster, type ClusterServerOptions, type NatsCluster } from '../scripts/natsProcess.ts';
import { TestClient } from '../tests/support/client.ts';
import { needlesIn } from '../tests/support/pii.ts';
import { laneTotals } from '../tests/support/settle.ts';
import type { DeviceView } from '../transport/schemas.ts';
import { createTopology, type Topology } from '../transport/topology.ts';
import { lastView } from '../transport/viewStore.ts';
import { ANOMALY_KINDS, check, showsStoredView, type AnomalyKind, type PiiHit } from './checker.ts';
import { readAudit, readDeadLetters, readLanes, readUsers, replicasCurrent } from './collect.ts';
import { Nemesis, wait } from './faults.ts';
import { Load } from './load.ts';
import { createNetwork, networkPlan, NET_PREFIX, removeNetwork, removeStaleNetwork, type ServerNet } from './network.ts';
import { ManagedProcess, startedProcesses, startNode } from './processes.ts';
import { faultsByKind, formatReport, writeReport, type NemesisReport } from './report.ts';
import { faultSchedule } from './schedule.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** Where the report goes unless `--out` says otherwise; every run's logs go under `logs/` beside it. */
export const RESULTS_DIR = join(ROOT, 'nemesis', 'results');
const NODES = ['node-1', 'node-2', 'node-3'];
const SERVERS = 3;
/** The run's own record of its processes, and its lock: one run at a time per machine. */
const STATE_FILE = join(tmpdir(), 'fullmind-nemesis.json');
/** Time the run may take beyond its load: setup, draining, settling, checking, clean-up. */
const EXTRA_MINUTES = 2;
/** Kept back from the drain and the devices' settling for collecting, checking and the clean-up. */
const RESERVE_MS = 45_000;
const NODE_READY_MS = 60_000;

/** What `npm run nemesis -- …` takes. */
export interface NemesisOptions {
  /** Seeds the fault schedule (and the load's choices); printed, to replay. @default random */
  seed: number;
  /** Minutes of load and faults. @default 3 */
  minutes: number;
  /** The JSON report. @default nemesis/results/latest.json */
  out: string;
  /** Events a second the load users publish (crisis cohorts come on top). @default 40 */
  rate: number;
  /** `FM_PARTITIONS` of the run: small, so partitions move. @default 12 */
  partitions: number;
  /**
   * Another checkout whose runtime nodes to run (e.g. an older commit unpacked with `git archive`,
   * its node_modules linked), to compare; the devices and the checker stay this checkout's.
   * @default this checkout
   */
  runtimeRoot?: string;
  /** Anomaly kinds reported without failing the run (`--tolerate crisis_late`). @default none */
  tolerated: AnomalyKind[];
}

/** Parses the command line (`--seed N --minutes M --out file --rate R --partitions P --runtime-root dir --tolerate kinds`). */
export function parseOptions(argv: readonly string[], randomSeed: () => number = () => randomInt(1, 2 ** 31 - 1)): NemesisOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      seed: { type: 'string' },
      minutes: { type: 'string' },
      out: { type: 'string' },
      rate: { type: 'string' },
      partitions: { type: 'string' },
      'runtime-root': { type: 'string' },
      tolerate: { type: 'string' },
    },
    strict: true,
  });
  const number = (name: string, text: string | undefined, fallback: number, valid: (n: number) => boolean) => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isFinite(n) || !valid(n)) throw new Error(`--${name}: expected a valid number, got "${text}"`);
    return n;
  };
  return {
    seed: number('seed', values.seed, randomSeed(), (n) => Number.isInteger(n) && n >= 0 && n < 2 ** 32),
    minutes: number('minutes', values.minutes, 3, (n) => n > 0 && n <= 24 * 60),
    out: values.out ? resolve(values.out) : join(RESULTS_DIR, 'latest.json'),
    rate: number('rate', values.rate, 40, (n) => n > 0 && n <= 500),
    partitions: number('partitions', values.partitions, 12, (n) => Number.isInteger(n) && n >= 3 && n <= 256),
    runtimeRoot: values['runtime-root'] === undefined ? undefined : resolve(values['runtime-root']),
    tolerated: (values.tolerate?.split(',') ?? []).map((kind) => {
      if (!(ANOMALY_KINDS as readonly string[]).includes(kind)) throw new Error(`--tolerate: expected anomaly kinds among ${ANOMALY_KINDS.join(', ')}, got "${kind}"`);
      return kind as AnomalyKind;
    }),
  };
}

/** The run's record of itself in {@link STATE_FILE}. */
interface RunState {
  pid: number;
  children: number[];
  /** Its temporary folders (servers' stores, secrets). */
  dirs?: string[];
}

/** The run's temporary folders (the servers' stores, its secrets), all named `fullmind-nemesis-…` in the temp folder. */
const TEMP_PREFIX = join(tmpdir(), 'fullmind-nemesis-');
const tempDirs: string[] = [];

/** A process's command line ('' when it is gone). */
function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/**
 * Refuses to run beside another run; removes what an aborted run left: its node and device
 * processes (by the pids it recorded, if they still are what it started) and its network (with
 * the servers in it).
 */
async function removeStaleRun(log: Logger): Promise<void> {
  if (existsSync(STATE_FILE)) {
    const state = JSON.parse(readFileSync(STATE_FILE, 'utf8')) as RunState;
    if (state.pid !== process.pid && commandLine(state.pid).includes('nemesis/run.ts')) {
      throw new Error(`another nemesis run is going on (pid ${state.pid}); one at a time per machine`);
    }
    for (const pid of state.children) {
      const cmd = commandLine(pid);
      if (cmd.includes('actors/main.ts') || cmd.includes('clients/devicesMain.ts')) {
        process.kill(pid, 'SIGCONT');
        process.kill(pid, 'SIGKILL');
        log.warn({ pid }, 'killed a process an earlier run left');
      }
    }
    for (const dir of state.dirs ?? []) {
      if (!dir.startsWith(TEMP_PREFIX)) continue;
      rmSync(dir, { recursive: true, force: true });
      log.warn({ dir }, 'removed a folder an earlier run left');
    }
  }
  const stale = await removeStaleNetwork();
  if (stale.namespaces.length || stale.links.length) log.warn(stale, 'removed the network an earlier run left');
}

/** Records the run's processes (for the next run's clean-up, should this one be killed). */
function writeState(): void {
  const state: RunState = { pid: process.pid, children: [...startedProcesses].flatMap((p) => (p.pid ? [p.pid] : [])), dirs: tempDirs };
  writeFileSync(STATE_FILE, JSON.stringify(state));
}

/** Every line of every file under `dir` that holds a PII fixture value (the sweep of tests/support/pii.ts). */
function sweepForPii(dir: string): PiiHit[] {
  const hits: PiiHit[] = [];
  for (const name of readdirSync(dir)) {
    const file = join(dir, name);
    if (!statSync(file).isFile()) continue;
    const text = readFileSync(file, 'utf8');
    if (needlesIn(text).length === 0) continue;
    text.split('\n').forEach((line, i) => {
      const labels = needlesIn(line);
      if (labels.length) hits.push({ file: relative(ROOT, file), line: i + 1, labels });
    });
  }
  return hits;
}

/** Runs' log folders kept under `results/logs` (the oldest are removed when a run starts). */
const KEEP_RUN_LOGS = 5;

function pruneLogs(): void {
  const dir = join(RESULTS_DIR, 'logs');
  if (!existsSync(dir)) return;
  const runs = readdirSync(dir).sort();
  for (const old of runs.slice(0, Math.max(0, runs.length - (KEEP_RUN_LOGS - 1)))) rmSync(join(dir, old), { recursive: true, force: true });
}

/** `m:ss`. */
const clock = (ms: number) => `${Math.floor(Math.max(0, ms) / 60_000)}:${String(Math.floor((Math.max(0, ms) % 60_000) / 1000)).padStart(2, '0')}`;

/** Polls `test` every second until it holds (true), `until` passes or `signal` aborts (false). */
async function until(test: () => Promise<boolean>, untilMs: number, signal: AbortSignal): Promise<boolean> {
  while (Date.now() < untilMs && !signal.aborted) {
    if (await test().catch(() => false)) return true;
    await wait(1_000, signal);
  }
  return false;
}

/** Waits until every partition consumer of both lanes has nothing pending or unacknowledged (twice in a row). */
async function lanesDrained(client: TestClient, until: number, signal: AbortSignal): Promise<{ drained: boolean; left: number }> {
  let left = -1;
  let quiet = 0;
  while (Date.now() < until && !signal.aborted) {
    try {
      const totals = await Promise.all([laneTotals(client, 'normal'), laneTotals(client, 'crisis')]);
      left = totals.reduce((sum, t) => sum + t.pending + t.ackPending, 0);
      quiet = left === 0 ? quiet + 1 : 0;
      if (quiet >= 2) return { drained: true, left: 0 };
    } catch {
      quiet = 0;
    }
    await wait(1_000, signal);
  }
  return { drained: false, left };
}

/** The user's last stored view, from the views stream's leader (null: none; undefined: not read now). */
function leaderView(client: TestClient, userId: string): Promise<DeviceView | null | undefined> {
  return lastView(client.jsm.streams, client.topology, userId).catch(() => undefined);
}

/** Waits until every device of a running device process applied its user's stored view; returns the devices that did not. */
async function devicesSettled(client: TestClient, load: Load, until: number, signal: AbortSignal): Promise<string[]> {
  for (;;) {
    const devices = load.groups.filter((g) => g.process.running).flatMap((g) => [...g.logs.values()]);
    const users = [...new Set(devices.map((d) => d.userId))];
    const stored = new Map(await Promise.all(users.map(async (u) => [u, await leaderView(client, u)] as const)));
    const unsettled = devices.filter((d) => {
      const view = stored.get(d.userId);
      if (view === undefined) return true;
      // A device the view no longer lists was removed: it waits for nothing.
      return view !== null && view.devices.includes(d.deviceId) && !showsStoredView(d, view.version);
    });
    if (unsettled.length === 0 || Date.now() > until || signal.aborted) return unsettled.map((d) => `${d.userId}:${d.deviceId}`);
    await wait(1_000, signal);
  }
}

/** Runs the nemesis; returns the exit status (0: no anomaly, 1: anomalies or run errors, 2: the run could not run). */
export async function main(argv: readonly string[]): Promise<number> {
  let options: NemesisOptions;
  try {
    options = parseOptions(argv);
  } catch (err) {
    console.error(`nemesis: ${(err as Error).message}\nusage: npm run nemesis -- [--seed N] [--minutes M] [--out file.json] [--rate events/s] [--partitions P] [--runtime-root dir]`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    console.error('nemesis: needs root (it makes network namespaces with `ip netns`)');
    return 2;
  }
  const startedAt = Date.now();
  const lengthMs = Math.round(options.minutes * 60_000);
  const deadline = startedAt + lengthMs + EXTRA_MINUTES * 60_000;
  const replay = `npm run nemesis -- --seed ${options.seed} --minutes ${options.minutes}`;
  const runDir = join(RESULTS_DIR, 'logs', `${new Date(startedAt).toISOString().replaceAll(':', '-').slice(0, 19)}-seed${options.seed}`);
  pruneLogs();
  mkdirSync(runDir, { recursive: true });
  const log: Logger = pino(
    { level: 'info', base: { component: 'nemesis', seed: options.seed }, redact: { paths: REDACTED_KEYS.flatMap((k) => [k, `*.${k}`]), censor: '[redacted]' } },
    pino.destination({ dest: join(runDir, 'nemesis.log'), sync: true }),
  );
  console.log(`nemesis: seed ${options.seed}, ${options.minutes} min of load (replay: ${replay}); logs in ${relative(process.cwd(), runDir) || '.'}`);
  log.info({ ...options, runDir }, 'nemesis run starts');

  const abort = new AbortController();
  const { signal } = abort;
  let phase = 'setup';
  // Set up below; whatever was made is taken down in `shutdown`, also after a failure or a signal.
  let cluster: NatsCluster | undefined;
  let client: TestClient | undefined;
  let load: Load | undefined;
  let nemesis: Nemesis | undefined;
  const nodes = new Map<string, ManagedProcess>();
  const incarnations = new Map<string, number>();
  let progressTimer: NodeJS.Timeout | undefined;
  let shutDown: Promise<void> | undefined;

  const shutdown = (): Promise<void> =>
    (shutDown ??= (async () => {
      clearInterval(progressTimer);
      await nemesis?.healCurrent().catch(() => undefined);
      await load?.close().catch(() => undefined);
      await Promise.all([...startedProcesses].map((p) => p.stop()));
      await client?.close().catch(() => undefined);
      // A paused server ignores SIGTERM.
      for (const s of cluster?.servers ?? []) {
        const pid = cluster?.pid(s.name);
        if (pid) process.kill(pid, 'SIGCONT');
      }
      await cluster?.terminate().catch(() => undefined);
      await removeNetwork().catch(() => undefined);
      await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
      rmSync(STATE_FILE, { force: true });
    })());

  /** A second signal: no patience left; kill everything now. */
  const killEverything = () => {
    for (const p of startedProcesses) p.signal('SIGKILL');
    for (const s of cluster?.servers ?? []) {
      const pid = cluster?.pid(s.name);
      if (pid) process.kill(pid, 'SIGKILL');
    }
    for (const s of networkPlan(SERVERS)) {
      try {
        execFileSync('ip', ['netns', 'del', s.netns], { stdio: 'ignore' });
      } catch {
        // Not there.
      }
    }
    try {
      execFileSync('ip', ['link', 'del', `${NET_PREFIX}br`], { stdio: 'ignore' });
    } catch {
      // Not there.
    }
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
    rmSync(STATE_FILE, { force: true });
  };
  let signals = 0;
  const onSignal = (name: NodeJS.Signals) => {
    signals++;
    log.warn({ signal: name }, 'signal: stopping');
    if (signals === 1) {
      process.stderr.write(`\nnemesis: ${name}: healing and cleaning up (again to kill everything at once)\n`);
      abort.abort(new Error(`stopped by ${name}`));
    } else {
      killEverything();
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  const hardStop = setTimeout(() => abort.abort(new Error(`the run took longer than ${options.minutes + EXTRA_MINUTES} minutes`)), deadline - Date.now());

  const runErrors: Array<{ kind: string; detail: string }> = [];
  try {
    await removeStaleRun(log);
    writeState();

    // Secrets of the run's own: the server certificate names the servers' client addresses.
    const plan = networkPlan(SERVERS);
    const secretsDir = await mkdtemp(`${TEMP_PREFIX}secrets-`);
    tempDirs.push(secretsDir);
    writeState();
    await ensureSecrets(secretsDir, { ipAddresses: plan.map((s) => s.clientIp) });
    process.env.FM_SECRETS = secretsDir;

    const network = await createNetwork(SERVERS);
    const servers: ClusterServerOptions[] = [];
    for (const s of network) {
      const cwd = await mkdtemp(`${TEMP_PREFIX}n${s.index}-`);
      tempDirs.push(cwd);
      // Its log kept with the run's (appended: a restart goes on in the same file).
      const args = ['-l', join(runDir, `n${s.index}.log`)];
      servers.push({ name: `n${s.index}`, cwd, port: 4222, httpPort: 8222, routePort: 6222, host: s.clientIp, routeHost: s.routeIp, netns: s.netns, args });
    }
    writeState();
    cluster = await startNatsCluster({ servers, detached: true });
    const url = cluster.urls.join(',');
    log.info({ url }, 'cluster up');

    const env = { NATS_URL: url, FM_REPLICAS: '3', FM_PARTITIONS: String(options.partitions), FM_SECRETS: secretsDir, LOG_LEVEL: 'info' };
    const topology: Topology = createTopology(deploymentFromEnv(env).topology);
    const launchNode = async (id: string) => {
      const n = (incarnations.get(id) ?? 0) + 1;
      incarnations.set(id, n);
      await startNode({ id, env, logFile: join(runDir, `${id}.${n}.log`), readyTimeoutMs: NODE_READY_MS, root: options.runtimeRoot }, (p) => {
        nodes.set(id, p);
        writeState();
      });
    };
    // The first provisions the streams, consumers and buckets.
    await launchNode(NODES[0]!);
    await Promise.all(NODES.slice(1).map(launchNode));
    client = await TestClient.connect(url, topology);
    log.info('nodes ready');
    if (signal.aborted) throw signal.reason;

    const c = client;
    const steps = faultSchedule({ seed: options.seed, lengthMs, nodes: NODES, partitions: options.partitions });
    log.info({ steps: steps.length }, 'schedule');
    const loadStart = Date.now();
    const loadEnd = loadStart + lengthMs;
    load = await Load.start({
      url,
      topology,
      seed: options.seed,
      ratePerS: options.rate,
      tokens: await new Kvm(c.nc).open(topology.buckets.deviceTokens),
      secretsDir,
      // Each device with a standby connection on another server (the crisis path's second way in).
      deviceEnv: { ...env, FM_DEVICE_STANDBY: '1' },
      logDir: runDir,
      log,
      giveUpAt: deadline - RESERVE_MS,
      endsAt: loadEnd,
      storedVersion: async (userId) => {
        const view = await leaderView(c, userId);
        if (view === undefined) throw new Error('stored view not read');
        return view?.version ?? null;
      },
    });
    const system = {
      cluster,
      network: new Map<string, ServerNet>(network.map((s) => [`n${s.index}`, s])),
      jsm: c.jsm,
      topology,
      killNode: async (id: string) => {
        await nodes.get(id)?.crash();
      },
      startNode: launchNode,
      signalNode: (id: string, sig: 'SIGSTOP' | 'SIGCONT') => nodes.get(id)?.signal(sig),
    };
    nemesis = new Nemesis(system, log);
    phase = 'load';

    // The progress line: events published, faults so far, time left.
    let cpuBefore = machineMs();
    const tty = process.stderr.isTTY;
    let ticks = 0;
    progressTimer = setInterval(() => {
      writeState();
      const cpuNow = machineMs();
      const busy = Math.round((100 * (cpuNow.busy - cpuBefore.busy)) / Math.max(1, cpuNow.total - cpuBefore.total));
      cpuBefore = cpuNow;
      const active = nemesis?.active;
      const left = phase === 'load' ? `${clock(loadEnd - Date.now())} of load left` : phase;
      const line =
        `nemesis seed ${options.seed} | ${left} | ${load!.stats.published} events, ${load!.stats.presses} presses | ` +
        `faults ${nemesis!.records.length}/${steps.length}${active ? ` (now ${active.kind} ${active.target})` : ''} | cpu ${busy}% | hard stop in ${clock(deadline - Date.now())}`;
      if (tty) process.stderr.write(`\r\x1b[K${line}`);
      else if (ticks++ % 15 === 0) process.stderr.write(`${line}\n`);
    }, 1_000);

    await nemesis.run(steps, loadStart, loadEnd, signal);
    await wait(loadEnd - Date.now(), signal);
    phase = 'healing';
    await nemesis.healCurrent();
    for (const id of NODES) if (!nodes.get(id)?.running) await launchNode(id).catch((err: Error) => runErrors.push({ kind: 'node_not_restarted', detail: err.message }));
    phase = 'stopping the load';
    if (!(await load.stop(Math.max(0, Math.min(40_000, deadline - RESERVE_MS - Date.now()))))) runErrors.push({ kind: 'load_not_stopped', detail: 'publishes or crisis cycles still under way' });
    phase = 'draining the lanes';
    const drained = await lanesDrained(client, deadline - RESERVE_MS, signal);
    if (!drained.drained) runErrors.push({ kind: 'lanes_not_drained', detail: `${drained.left} messages pending or unacknowledged in the partition consumers` });
    const caughtUp = await until(() => replicasCurrent(c), deadline - RESERVE_MS, signal);
    if (!caughtUp) runErrors.push({ kind: 'replicas_not_current', detail: 'a replica of a stream the checker reads was still behind' });
    phase = 'settling the devices';
    const unsettled = await devicesSettled(client, load, Math.min(Date.now() + 30_000, deadline - RESERVE_MS), signal);
    log.info({ unsettled: unsettled.length, drained }, 'settled');
    if (signal.aborted) throw signal.reason;

    phase = 'collecting';
    const events = await readLanes(client);
    const [deadLetters, audit] = await Promise.all([readDeadLetters(client), readAudit(client)]);
    const userIds = [...new Set([...events.map((e) => e.userId), ...audit.map((a) => a.userId)])];
    const users = await readUsers(client, userIds);
    const devices = load.deviceLogs();
    const loadStats = load.stats;
    for (const g of load.groups) if (g.process.child.exitCode !== null && g.process.child.exitCode !== 0) runErrors.push({ kind: 'device_process_failed', detail: `${g.name} exited ${g.process.child.exitCode}` });
    if (loadStats.cohortsFailed) runErrors.push({ kind: 'device_process_not_started', detail: `${loadStats.cohortsFailed} cohorts without devices (see nemesis.log)` });
    if (loadStats.failed) runErrors.push({ kind: 'publish_gave_up', detail: `${loadStats.failed} events not published by the run's deadline (see nemesis.log)` });
    for (const f of nemesis.records) if (f.error) runErrors.push({ kind: 'fault_not_healed', detail: `${f.kind} ${f.target}: ${f.error}` });
    const faults = nemesis.records.map((f) => ({ kind: f.kind, target: f.target, start: f.start, end: f.end ?? Date.now() }));
    log.info({ events: events.length, deadLetters: deadLetters.length, audit: audit.length, users: users.length }, 'collected');

    phase = 'stopping';
    await shutdown();
    phase = 'checking';
    const result = check({ events, deadLetters, audit, users, devices, faults, pii: sweepForPii(runDir), runErrors }, { tolerated: options.tolerated });
    const report: NemesisReport = {
      seed: options.seed,
      minutes: options.minutes,
      replay,
      startedAt: new Date(startedAt).toISOString(),
      finishedAt: new Date().toISOString(),
      ok: result.ok,
      config: {
        servers: SERVERS,
        nodes: NODES,
        replicas: 3,
        partitions: options.partitions,
        rate: options.rate,
        out: options.out,
        runtimeRoot: options.runtimeRoot ?? null,
        crisisDeadlineMs: 10_000,
        tolerated: options.tolerated,
        attribution: 'a press is put down to the fault active at it or healed less than 5 s before, else to a fault that started while it waited to be shown',
      },
      schedule: steps,
      skipped: nemesis.skipped,
      faults: nemesis.records,
      faultsByKind: faultsByKind(nemesis.records),
      load: loadStats,
      anomalies: result.anomalies,
      runErrors: result.runErrors,
      notes: result.notes,
      crisisLatency: result.crisis,
      slowestPresses: result.slowestPresses,
      totals: result.totals,
      logs: relative(ROOT, runDir),
    };
    await writeReport(options.out, report);
    if (process.stderr.isTTY) process.stderr.write('\n');
    console.log(formatReport(report));
    log.info({ ok: result.ok }, 'nemesis run done');
    return result.ok ? 0 : 1;
  } catch (err) {
    if (process.stderr.isTTY) process.stderr.write('\n');
    const message = (err as Error).message ?? String(err);
    log.error({ phase, err: message }, 'nemesis run failed');
    console.error(signal.aborted ? `nemesis: ${(signal.reason as Error).message} while ${phase}: no check; everything it started is stopped and removed` : `nemesis: the run failed while ${phase}: ${message}`);
    return 2;
  } finally {
    clearTimeout(hardStop);
    await shutdown();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
  }
}
