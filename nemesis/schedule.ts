/**
 * The nemesis run's fault schedule: a pure function of a seed (and the run's length, nodes and
 * partitions), so `npm run nemesis -- --seed N` replays the same faults in the same order with the
 * same durations and gaps. One fault at a time, each followed by a quiet gap, so the latency of
 * what happens during a fault can be put down to its kind. Every kind comes once in each round of
 * five (a seeded shuffle), so even a short run sees most of them.
 *
 * A server fault names a role, not a server: which server leads a stream or a consumer is only
 * known when the fault starts (`faults.ts` resolves it then and records which server it was).
 */
import type { Lane } from '../transport/subjects.ts';

/** The kinds of fault the run injects. */
export const FAULT_KINDS = ['node_kill', 'node_pause', 'server_kill', 'server_pause', 'partition'] as const;
/** A kind of fault. */
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Which server a server fault hits: a lane stream's leader, a follower of it, or the leader of a partition consumer. */
export const SERVER_ROLES = ['stream_leader', 'follower', 'consumer_leader'] as const;
/** A server's role. */
export type ServerRole = (typeof SERVER_ROLES)[number];

/** What a fault hits. */
export type FaultTarget =
  | { node: string }
  | {
      server: ServerRole;
      /** The lane whose stream (or partition consumer) names the server. */
      lane: Lane;
      /** The partition consumer, for `consumer_leader`. */
      partition: number;
      /** Which replica, for `follower` (modulo the followers there are), and which server when no leader is known. */
      pick: number;
    };

/** One fault of the schedule. */
export interface FaultStep {
  /** Position in the schedule, from 0. */
  index: number;
  kind: FaultKind;
  target: FaultTarget;
  /** When it starts, in ms after the load started, if every earlier fault healed at once (nominal). */
  atMs: number;
  /** How long it lasts: down time before a restart, a pause, a cut. */
  durationMs: number;
  /** The quiet time before it, after the previous fault healed (or the warm-up, for the first). */
  gapMs: number;
}

/** Inputs of {@link faultSchedule}. */
export interface ScheduleOptions {
  seed: number;
  /** Length of the load, in ms: faults start and heal within it. */
  lengthMs: number;
  /** The runtime nodes' ids. */
  nodes: readonly string[];
  /** Partitions per lane (`FM_PARTITIONS`). */
  partitions: number;
  /** Load without faults at the start. @default 15000 */
  warmupMs?: number;
  /** Time kept free of faults at the end. @default 10000 */
  cooldownMs?: number;
}

/** Milliseconds as [least, most] per kind: how long each fault lasts. */
export const FAULT_DURATION_MS: Readonly<Record<FaultKind, readonly [number, number]>> = {
  // Down long enough for the members bucket (1.2 s) to drop the node and the others to take over.
  node_kill: [1_500, 6_000],
  // Past the membership TTL (1.2 s) always, past the pin timeout (3 s) mostly.
  node_pause: [2_000, 7_000],
  server_kill: [2_000, 8_000],
  // Servers notice a silent peer later than nodes do (pings, Raft election timeouts).
  server_pause: [5_000, 10_000],
  partition: [8_000, 20_000],
};

/** Quiet time between two faults, [least, most] ms. */
export const GAP_MS = [8_000, 15_000] as const;

/**
 * What a heal takes beyond the fault's duration, as the schedule counts it (a restarted node or
 * server waits until it is ready); the runner waits for the real heal, then the gap.
 */
const HEAL_ALLOWANCE_MS: Readonly<Record<FaultKind, number>> = {
  node_kill: 5_000,
  node_pause: 500,
  server_kill: 5_000,
  server_pause: 500,
  partition: 1_000,
};

/** The most the schedule expects one fault to take, with its heal: a fault is scheduled only if that still ends in time. */
export function faultSpanMs(step: Pick<FaultStep, 'kind' | 'durationMs'>): number {
  return step.durationMs + HEAL_ALLOWANCE_MS[step.kind];
}

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** An integer in [least, most] from `random`. */
export function between(random: () => number, least: number, most: number): number {
  return least + Math.floor(random() * (most - least + 1));
}

/** The items in a seeded order (Fisher–Yates). */
export function shuffled<T>(random: () => number, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** The faults of a run: the same list for the same options. */
export function faultSchedule(options: ScheduleOptions): FaultStep[] {
  const { seed, lengthMs, nodes, partitions } = options;
  const warmupMs = options.warmupMs ?? 15_000;
  const cooldownMs = options.cooldownMs ?? 10_000;
  if (nodes.length === 0) throw new Error('a schedule needs at least one node');
  const random = prng(seed);
  const steps: FaultStep[] = [];
  const kinds: FaultKind[] = [];
  const roles: ServerRole[] = [];
  let at = 0;
  for (let index = 0; ; index++) {
    if (kinds.length === 0) kinds.push(...shuffled(random, FAULT_KINDS));
    if (roles.length === 0) roles.push(...shuffled(random, SERVER_ROLES));
    const kind = kinds.shift()!;
    const [least, most] = FAULT_DURATION_MS[kind];
    const durationMs = between(random, least, most);
    const gapMs = index === 0 ? warmupMs : between(random, GAP_MS[0], GAP_MS[1]);
    const target: FaultTarget = kind.startsWith('node_')
      ? { node: nodes[between(random, 0, nodes.length - 1)]! }
      : { server: roles.shift()!, lane: random() < 0.5 ? 'normal' : 'crisis', partition: between(random, 0, partitions - 1), pick: between(random, 0, 2) };
    const atMs = at + gapMs;
    if (atMs + faultSpanMs({ kind, durationMs }) > lengthMs - cooldownMs) break;
    steps.push({ index, kind, target, atMs, durationMs, gapMs });
    at = atMs + faultSpanMs({ kind, durationMs });
  }
  return steps;
}

/** A fault's target as a short text, e.g. `node-2` or `consumer_leader of runtime_crisis_4`. */
export function describeTarget(target: FaultTarget): string {
  if ('node' in target) return target.node;
  if (target.server === 'consumer_leader') return `consumer_leader of runtime_${target.lane}_${target.partition}`;
  return `${target.server} of the ${target.lane} lane`;
}
