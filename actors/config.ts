/**
 * Configuration of a runtime node: every setting with its documented default (`@default`), the
 * values in {@link DEFAULT_RUNTIME_CONFIG}. `configFromEnv` reads the few settings an operator or a
 * test changes (README, Configuration) and leaves the rest at their defaults; `deploymentFromEnv`
 * is what every other process (devices, CLI, demo) reads to find the same deployment.
 */
import { DEFAULT_DELIVERY, type DeliveryPolicy } from '../machines/delivery.ts';
import { DEFAULT_POLICY, type UserPolicy } from '../machines/policy.ts';
import { DEFAULT_NATS_URL, natsUrlFromEnv } from '../transport/connection.ts';
import type { Lane } from '../transport/subjects.ts';
import { DEFAULT_TOPOLOGY_OPTIONS, type TopologyOptions } from '../transport/topology.ts';
import { DEFAULT_ADMISSION, type AdmissionOptions } from './admission.ts';
import type { TokenBucketPolicy } from './tokenBucket.ts';

/** A crisis line shown on every device. */
export interface CrisisLine {
  name: string;
  phone: string;
}

/** Backoff of retried NATS requests (see actors/retry.ts): doubling from the first delay up to the longest. */
export interface RetryPolicy {
  /** @default 50 */
  firstDelayMs: number;
  /** @default 2000 */
  maxDelayMs: number;
}

/** How a node takes and hands over partitions. */
export interface OwnershipPolicy {
  /** How often the node compares the partitions it holds with the assignment. @default 250 */
  tickMs: number;
  /** How often the node renews its membership (well under the topology's `memberTtlMs`). @default 200 */
  heartbeatMs: number;
  /** Partitions handed over per tick when another node should own them: a joining node takes its share gradually. @default 4 */
  releasePerTick: number;
}

/** Everything a runtime node is configured with. */
export interface RuntimeConfig {
  /**
   * Identifies this node in partition ownership, logs, connection names, the process title and the
   * `node` label of its metrics (`FM_NODE_ID`).
   * @default 'node-1'
   */
  nodeId: string;
  /**
   * NATS server URL(s) (`NATS_URL`).
   * @default 'nats://127.0.0.1:4222'
   */
  natsUrl: string;
  /**
   * Names, retention and limits of streams, consumers and buckets; the prefix is `FM_PREFIX`.
   * @default DEFAULT_TOPOLOGY_OPTIONS (transport/topology.ts)
   */
  topology: TopologyOptions;
  /** How the node agrees with the others on who owns which partition (see `partitions.ts`). */
  ownership: OwnershipPolicy;
  /**
   * Durations of the user statechart: trial, grace, crisis hold (`FM_TRIAL_MS`, `FM_GRACE_MS`,
   * `FM_GRACE_AFTER_CRISIS_MS`).
   * @default DEFAULT_POLICY (machines/policy.ts)
   */
  policy: UserPolicy;
  /**
   * Coalescing windows and compression per sync frequency.
   * @default DEFAULT_DELIVERY (machines/delivery.ts)
   */
  delivery: DeliveryPolicy;
  /**
   * A resident user idle this long is passivated; 0: as soon as its work is durable (`FM_IDLE_MS`).
   * @default 60000
   */
  idleMs: number;
  /**
   * A resident user idle this long is kept as its record only, deflated (about 80 bytes for a
   * simple user), until its next event (`FM_FREEZE_AFTER_MS`).
   * @default 2000
   */
  freezeAfterMs: number;
  /**
   * Most users resident at once; the least recently used idle ones are passivated beyond it (`FM_MAX_RESIDENT`).
   * @default 200000
   */
  maxResident: number;
  /**
   * How often the passivation sweep runs (`FM_SWEEP_MS`).
   * @default 1000
   */
  sweepMs: number;
  /**
   * How many normal-lane events the node works on at once: learned from commit latency, held to
   * `targetMs` (`FM_ADMISSION_TARGET_MS`), at most `max` (`FM_NORMAL_CONCURRENCY`); the crisis lane
   * is never limited (`admission.ts`).
   * @default DEFAULT_ADMISSION
   */
  admission: AdmissionOptions;
  /**
   * Each user's crisis-button presses on the crisis lane (`crisisRateLimit.ts`): `burst` pass at
   * once, then `ratePerS` a second; the excess becomes `rate_limited` dead letters
   * (`FM_CRISIS_BURST`, `FM_CRISIS_RATE_PER_S`). Ten at once, because a person in distress taps
   * again and again, and all of those first presses pass: the first starts the crisis (a bucket is
   * full unless its user pressed ten times in the last ten seconds, and then the crisis is on), the
   * rest only confirm it. One a second after that, because no person keeps pressing faster, while
   * a stuck or hostile device then costs a dead letter per press instead of a commit. A bucket is
   * full again ten seconds after a flood ends, and at once when the crisis is resolved.
   * @default { ratePerS: 1, burst: 10 }
   */
  crisisRateLimit: TokenBucketPolicy;
  /**
   * Messages each partition's lane consumer buffers ahead of the node.
   * @default { normal: 64, crisis: 16 }
   */
  pullBatch: Record<Lane, number>;
  /**
   * How long each pull of a partition consumer waits before the next: well under the topology's
   * `pinTimeoutMs`, since the server unpins a holder that has not pulled for that long.
   * @default 1000
   */
  pullExpiresMs: number;
  /**
   * Normal-lane messages handed out between two yields to the event loop: a buffered batch is
   * otherwise handed out in one turn, and the crisis connection's socket is not read until it ends.
   * @default 32
   */
  normalYieldEvery: number;
  /**
   * Events a user applies before its work is committed even if more are queued.
   * @default 64
   */
  maxBatch: number;
  /**
   * Backoff of NATS requests retried after a transient failure.
   * @default { firstDelayMs: 50, maxDelayMs: 2000 }
   */
  retry: RetryPolicy;
  /**
   * Longest a graceful stop waits for users to finish their commits.
   * @default 5000
   */
  stopGraceMs: number;
  /**
   * Seed budget: a slower crisis logs a warning and raises an alert.
   * @default 200
   */
  crisisBudgetMs: number;
  /**
   * Seed budget: a slower therapeutic-access change logs a warning and raises an alert.
   * @default 500
   */
  therapeuticBudgetMs: number;
  /**
   * Crisis lines every device shows (per deployment region).
   * @default [{ name: '988 Suicide & Crisis Lifeline', phone: '988' }]
   */
  crisisLines: CrisisLine[];
  /**
   * Whether the process running the node also runs a replica of the auth callout, which admits
   * devices (`auth/callout.ts`); `FM_CALLOUT=off` when it runs elsewhere.
   * @default true
   */
  callout: boolean;
}

/** Default configuration of a single node serving every partition. */
export const DEFAULT_RUNTIME_CONFIG: Readonly<RuntimeConfig> = {
  nodeId: 'node-1',
  natsUrl: DEFAULT_NATS_URL,
  topology: DEFAULT_TOPOLOGY_OPTIONS,
  ownership: { tickMs: 250, heartbeatMs: 200, releasePerTick: 4 },
  policy: DEFAULT_POLICY,
  delivery: DEFAULT_DELIVERY,
  idleMs: 60_000,
  freezeAfterMs: 2_000,
  maxResident: 200_000,
  sweepMs: 1_000,
  admission: DEFAULT_ADMISSION,
  crisisRateLimit: { ratePerS: 1, burst: 10 },
  pullBatch: { normal: 64, crisis: 16 },
  pullExpiresMs: 1_000,
  normalYieldEvery: 32,
  maxBatch: 64,
  retry: { firstDelayMs: 50, maxDelayMs: 2_000 },
  stopGraceMs: 5_000,
  crisisBudgetMs: 200,
  therapeuticBudgetMs: 500,
  crisisLines: [{ name: '988 Suicide & Crisis Lifeline', phone: '988' }],
  callout: true,
};

/** The process title a node runs under (`ps`, `ss`, `top`), so an operator can find it. */
export function processTitle(config: Pick<RuntimeConfig, 'nodeId'>): string {
  return `fullmind-sync ${config.nodeId}`;
}

/** Where a process finds the deployment: the NATS server and the subject prefix. */
export interface Deployment {
  natsUrl: string;
  topology: TopologyOptions;
}

const int = (value: string | undefined): number | undefined => {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`expected a non-negative integer, got "${value}"`);
  return n;
};

/** A rate (any positive number) or, with `integer`, a count of at least 1: a zero would refuse every crisis press. */
const positive = (value: string | undefined, integer = false): number | undefined => {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new Error(`expected a positive ${integer ? 'integer' : 'number'}, got "${value}"`);
  }
  return n;
};

/**
 * The deployment from `NATS_URL`, `FM_PREFIX`, `FM_PARTITIONS` and `FM_REPLICAS` over the
 * defaults: the one place these are read, so every process (nodes, ingress, devices, CLI) agrees.
 */
export function deploymentFromEnv(env: NodeJS.ProcessEnv = process.env): Deployment {
  const t = DEFAULT_RUNTIME_CONFIG.topology;
  return {
    natsUrl: natsUrlFromEnv(env),
    topology: {
      ...t,
      prefix: env.FM_PREFIX || t.prefix,
      partitions: int(env.FM_PARTITIONS) || t.partitions,
      replicas: int(env.FM_REPLICAS) || t.replicas,
    },
  };
}

/** Configuration from environment variables over the defaults. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): RuntimeConfig {
  const d = DEFAULT_RUNTIME_CONFIG;
  return {
    ...d,
    ...deploymentFromEnv(env),
    nodeId: env.FM_NODE_ID || d.nodeId,
    policy: {
      ...d.policy,
      trialMs: int(env.FM_TRIAL_MS) ?? d.policy.trialMs,
      graceMs: int(env.FM_GRACE_MS) ?? d.policy.graceMs,
      graceAfterCrisisMs: int(env.FM_GRACE_AFTER_CRISIS_MS) ?? d.policy.graceAfterCrisisMs,
    },
    idleMs: int(env.FM_IDLE_MS) ?? d.idleMs,
    freezeAfterMs: int(env.FM_FREEZE_AFTER_MS) ?? d.freezeAfterMs,
    maxResident: int(env.FM_MAX_RESIDENT) ?? d.maxResident,
    sweepMs: int(env.FM_SWEEP_MS) ?? d.sweepMs,
    admission: {
      ...d.admission,
      targetMs: int(env.FM_ADMISSION_TARGET_MS) ?? d.admission.targetMs,
      max: int(env.FM_NORMAL_CONCURRENCY) ?? d.admission.max,
    },
    crisisRateLimit: {
      ratePerS: positive(env.FM_CRISIS_RATE_PER_S) ?? d.crisisRateLimit.ratePerS,
      burst: positive(env.FM_CRISIS_BURST, true) ?? d.crisisRateLimit.burst,
    },
    callout: env.FM_CALLOUT === 'off' ? false : d.callout,
  };
}
