/**
 * Runs the fault schedule against the system: one fault at a time, at its time or after its quiet
 * gap from the previous heal, whichever is later; each fault is healed after its duration (a killed
 * process restarted, a paused one continued, a cut link restored), and what happened is recorded
 * with its times (the checker puts crisis latencies down to the fault active at a press). A server
 * fault's role is resolved to a server when it starts (the lane stream's leader, one of its
 * followers, a partition consumer's leader), from what JetStream reports then.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { Logger } from '../actors/logger.ts';
import type { NatsCluster } from '../scripts/natsProcess.ts';
import { surely } from '../tests/support/clusterSystem.ts';
import { laneConsumerName, type Topology } from '../transport/topology.ts';
import { cut, heal, type ServerNet } from './network.ts';
import { describeTarget, faultSpanMs, type FaultKind, type FaultStep } from './schedule.ts';

/** How long a leader lookup may take before the fault picks a server by the schedule's number. */
const LOOKUP_GIVE_UP_MS = 5_000;
/** A restarted server that does not get healthy is started again this many times. */
const RESTART_ATTEMPTS = 3;

/** What the faults act on. */
export interface FaultSystem {
  cluster: NatsCluster;
  /** The servers' places in the network, by server name. */
  network: ReadonlyMap<string, ServerNet>;
  jsm: JetStreamManager;
  topology: Topology;
  killNode(id: string): Promise<void>;
  /** Starts a node again under its id; resolves when it is ready. */
  startNode(id: string): Promise<void>;
  signalNode(id: string, signal: 'SIGSTOP' | 'SIGCONT'): void;
}

/** A fault as it happened. */
export interface FaultRecord {
  index: number;
  kind: FaultKind;
  /** The schedule's target (a role for a server fault). */
  planned: string;
  /** What it hit: a node id or a server name. */
  target: string;
  /** How the server was found (`leader of FM_EVENTS`, …). */
  how?: string;
  /** When it started, and when it was healed and recovered (restarted process ready), ms since the epoch. */
  start: number;
  healedAt?: number;
  end?: number;
  durationMs: number;
  /** What went wrong healing it (the run then fails). */
  error?: string;
}

/** The schedule's faults, run one at a time; see the module comment. */
export class Nemesis {
  readonly records: FaultRecord[] = [];
  /** Steps not run: they would not have healed before the load's end. */
  readonly skipped: number[] = [];
  private readonly system: FaultSystem;
  private readonly log: Logger;
  /** Heals the fault under way (set while one is). */
  private healing: (() => Promise<void>) | undefined;
  private current: FaultRecord | undefined;

  constructor(system: FaultSystem, log: Logger) {
    this.system = system;
    this.log = log;
  }

  /** The fault under way, if any. */
  get active(): FaultRecord | undefined {
    return this.current;
  }

  /**
   * Runs `steps` from `loadStart` (ms since the epoch) until `endAt`, or until `signal` aborts; the
   * fault under way is healed before it returns.
   */
  async run(steps: readonly FaultStep[], loadStart: number, endAt: number, signal: AbortSignal): Promise<void> {
    let healed = loadStart;
    for (const step of steps) {
      const startAt = Math.max(loadStart + step.atMs, healed + step.gapMs);
      if (startAt + faultSpanMs(step) > endAt) {
        this.skipped.push(step.index);
        continue;
      }
      if (!(await wait(startAt - Date.now(), signal))) break;
      const record = await this.inject(step);
      await wait(step.durationMs, signal);
      await this.healCurrent();
      healed = record.end ?? Date.now();
      if (signal.aborted) break;
    }
    await this.healCurrent();
  }

  /** Heals the fault under way, if any (idempotent). */
  async healCurrent(): Promise<void> {
    const healing = this.healing;
    const record = this.current;
    this.healing = undefined;
    this.current = undefined;
    if (!healing || !record) return;
    record.healedAt = Date.now();
    try {
      await healing();
    } catch (err) {
      record.error = (err as Error).message;
      this.log.error({ fault: record.index, kind: record.kind, target: record.target, err: record.error }, 'fault not healed');
    }
    record.end = Date.now();
    this.log.info({ fault: record.index, kind: record.kind, target: record.target, ms: record.end - record.start }, 'fault healed');
  }

  private async inject(step: FaultStep): Promise<FaultRecord> {
    const { system } = this;
    const record: FaultRecord = { index: step.index, kind: step.kind, planned: describeTarget(step.target), target: '', start: Date.now(), durationMs: step.durationMs };
    if ('node' in step.target) {
      const id = step.target.node;
      record.target = id;
      if (step.kind === 'node_kill') {
        await system.killNode(id);
        this.healing = () => system.startNode(id);
      } else {
        system.signalNode(id, 'SIGSTOP');
        this.healing = async () => system.signalNode(id, 'SIGCONT');
      }
    } else {
      const { name, how } = await this.resolveServer(step);
      record.target = name;
      record.how = how;
      const { cluster } = system;
      if (step.kind === 'server_kill') {
        await cluster.kill(name);
        this.healing = () => restartServer(cluster, name);
      } else if (step.kind === 'server_pause') {
        const pid = cluster.pid(name);
        if (pid !== undefined) process.kill(pid, 'SIGSTOP');
        this.healing = async () => {
          if (pid !== undefined) process.kill(pid, 'SIGCONT');
        };
      } else {
        const net = system.network.get(name)!;
        await cut(net);
        this.healing = async () => void (await heal(net));
      }
    }
    // Counted from when it took effect.
    record.start = Date.now();
    this.current = record;
    this.records.push(record);
    this.log.info({ fault: record.index, kind: record.kind, target: record.target, how: record.how, durationMs: step.durationMs }, 'fault injected');
    return record;
  }

  /** The server a server fault hits, and how it was found. */
  private async resolveServer(step: FaultStep): Promise<{ name: string; how: string }> {
    const target = step.target;
    if ('node' in target) throw new Error('not a server fault');
    const { jsm, topology, cluster } = this.system;
    const names = cluster.servers.map((s) => s.name);
    const stream = topology.streams[target.lane];
    try {
      if (target.server === 'consumer_leader') {
        const consumer = laneConsumerName(target.lane, target.partition);
        const leader = (await surely(() => jsm.consumers.info(stream, consumer), LOOKUP_GIVE_UP_MS)).cluster?.leader;
        if (leader) return { name: leader, how: `leader of ${stream} consumer ${consumer}` };
      } else {
        const cluster = (await surely(() => jsm.streams.info(stream), LOOKUP_GIVE_UP_MS)).cluster;
        if (target.server === 'stream_leader' && cluster?.leader) return { name: cluster.leader, how: `leader of ${stream}` };
        const followers = (cluster?.replicas ?? []).map((r) => r.name).sort();
        if (target.server === 'follower' && followers.length) return { name: followers[target.pick % followers.length]!, how: `follower of ${stream} (leader ${cluster?.leader})` };
      }
    } catch (err) {
      this.log.warn({ fault: step.index, err: (err as Error).message }, 'leader lookup failed');
    }
    const name = names[target.pick % names.length]!;
    return { name, how: `no ${target.server} known: picked by the schedule` };
  }
}

/** Sleeps `ms` (nothing when not positive) unless `signal` aborts; false when it did. */
export async function wait(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  if (ms > 0) await sleep(ms, undefined, { signal }).catch(() => undefined);
  return !signal.aborted;
}

/** Starts a killed server again from its store; tries again when it does not get healthy. */
async function restartServer(cluster: NatsCluster, name: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await cluster.restart(name);
      return;
    } catch (err) {
      // A server that started but never got healthy is still running: kill it before the next try.
      await cluster.kill(name);
      if (attempt >= RESTART_ATTEMPTS) throw err;
    }
  }
}
