/**
 * Configuration of a runtime node, with every default in one place. `configFromEnv` reads the
 * few settings an operator or a test changes (see README) and leaves the rest at their defaults.
 */
import { DEFAULT_DELIVERY, type DeliveryPolicy } from '../machines/delivery.ts';
import { DEFAULT_POLICY, type UserPolicy } from '../machines/policy.ts';
import { DEFAULT_NATS_URL } from '../transport/connection.ts';
import { DEFAULT_TOPOLOGY_OPTIONS, type TopologyOptions } from '../transport/topology.ts';

/** A crisis line shown on every device. */
export interface CrisisLine {
  name: string;
  phone: string;
}

/** Everything a runtime node is configured with. */
export interface RuntimeConfig {
  /** Identifies this node in partition ownership, logs and connection names. */
  nodeId: string;
  natsUrl: string;
  topology: TopologyOptions;
  /** Number of partitions users are hashed into. Fixed for the life of a deployment. */
  partitions: number;
  /** Partitions this node owns; `all` for a single-node deployment. */
  ownedPartitions: number[] | 'all';
  /** Durations of the user statechart (trial, grace, crisis hold). */
  policy: UserPolicy;
  /** Coalescing windows and compression per sync frequency. */
  delivery: DeliveryPolicy;
  /** A resident user idle this long is passivated (0: as soon as its work is durable). */
  idleMs: number;
  /** Most users resident at once; the least recently used idle ones are passivated beyond it. */
  maxResident: number;
  /** How often the passivation sweep runs. */
  sweepMs: number;
  /** Normal-lane events being processed at once across the node; the crisis lane is never limited. */
  normalConcurrency: number;
  /** Events a user applies before its work is committed even if more are queued. */
  maxBatch: number;
  /** Seed budgets: a slower crisis or therapeutic-access change logs a warning and raises an alert. */
  crisisBudgetMs: number;
  therapeuticBudgetMs: number;
  /** Crisis lines every device shows (configuration, per deployment region). */
  crisisLines: CrisisLine[];
}

/** Default configuration of a single node serving every partition. */
export const DEFAULT_RUNTIME_CONFIG: Readonly<RuntimeConfig> = {
  nodeId: 'node-1',
  natsUrl: DEFAULT_NATS_URL,
  topology: DEFAULT_TOPOLOGY_OPTIONS,
  partitions: 64,
  ownedPartitions: 'all',
  policy: DEFAULT_POLICY,
  delivery: DEFAULT_DELIVERY,
  idleMs: 60_000,
  maxResident: 200_000,
  sweepMs: 1_000,
  normalConcurrency: 32,
  maxBatch: 64,
  crisisBudgetMs: 200,
  therapeuticBudgetMs: 500,
  crisisLines: [{ name: '988 Suicide & Crisis Lifeline', phone: '988' }],
};

/** The process title a node runs under (`ps`, `ss`, `top`), so an operator can find it. */
export function processTitle(config: Pick<RuntimeConfig, 'nodeId'>): string {
  return `fullmind-sync ${config.nodeId}`;
}

const int = (value: string | undefined): number | undefined => {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`expected a non-negative integer, got "${value}"`);
  return n;
};

/** Configuration from environment variables over the defaults. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): RuntimeConfig {
  const d = DEFAULT_RUNTIME_CONFIG;
  return {
    ...d,
    nodeId: env.FM_NODE_ID || d.nodeId,
    natsUrl: env.NATS_URL || d.natsUrl,
    topology: { ...d.topology, prefix: env.FM_PREFIX || d.topology.prefix },
    partitions: int(env.FM_PARTITIONS) ?? d.partitions,
    policy: {
      ...d.policy,
      trialMs: int(env.FM_TRIAL_MS) ?? d.policy.trialMs,
      graceMs: int(env.FM_GRACE_MS) ?? d.policy.graceMs,
      graceAfterCrisisMs: int(env.FM_GRACE_AFTER_CRISIS_MS) ?? d.policy.graceAfterCrisisMs,
    },
    idleMs: int(env.FM_IDLE_MS) ?? d.idleMs,
    maxResident: int(env.FM_MAX_RESIDENT) ?? d.maxResident,
    sweepMs: int(env.FM_SWEEP_MS) ?? d.sweepMs,
    normalConcurrency: int(env.FM_NORMAL_CONCURRENCY) ?? d.normalConcurrency,
  };
}
