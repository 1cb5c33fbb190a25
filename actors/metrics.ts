/**
 * The runtime's counters and latencies, for two readers. The bench and the tests ask a node for a
 * JSON snapshot (`fm.ctl.metrics`): plain counts and HDR latency percentiles (microsecond
 * resolution, up to an hour, exact to 3 digits). Prometheus scrapes `registry` (served on /metrics
 * by the ingress): native counters (`_total`), latency histograms in seconds and resident gauges,
 * every series labelled with the node. The hot path only bumps a number; the registry reads the
 * counters when scraped, so Prometheus sees monotonic counters it can `rate()` and sum across nodes.
 */
import { build, type Histogram as HdrHistogram } from 'hdr-histogram-js';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Latency percentiles in milliseconds. */
export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/**
 * Histogram buckets in seconds: from a fast activation to a coalesced trial view, with the seed's
 * budgets (200 ms crisis, 500 ms therapeutic access) as bucket bounds, so their breaches are exact.
 */
const LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5, 10, 30, 60];

/** One latency, recorded for both readers. */
export class Latency {
  readonly hdr: HdrHistogram = build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
  readonly prom: Histogram;
  constructor(registry: Registry, name: string, help: string) {
    this.prom = new Histogram({ name, help, buckets: LATENCY_BUCKETS_S, registers: [registry] });
  }
}

/** Counters of the snapshot, and the Prometheus counter each one is exposed as. */
const COUNTERS = {
  events: ['fm_events_applied_total', 'Events applied to a statechart (duplicates and stale events excluded)'],
  duplicates: ['fm_events_duplicate_total', 'Events already applied (redelivered or published twice)'],
  stale: ['fm_events_stale_total', 'Events older than what the user already applied'],
  crises: ['fm_crises_started_total', 'Crisis episodes started'],
  deadLetters: ['fm_dead_letters_total', 'Messages kept as dead letters'],
  crisisRateLimited: ['fm_crisis_rate_limited_total', "Crisis-lane events over their user's rate limit, kept as dead letters"],
  retries: ['fm_retries_total', 'NATS requests tried again after a transient failure'],
  activations: ['fm_activations_total', 'Users loaded into memory'],
  passivations: ['fm_passivations_total', 'Users dropped from memory'],
  freezes: ['fm_freezes_total', 'Idle resident users kept as their record bytes only'],
  thaws: ['fm_thaws_total', 'Frozen users rebuilt in memory for their next event'],
  commits: ['fm_commits_total', 'Commits (views, audit, record, acknowledgements)'],
  viewsPublished: ['fm_views_published_total', 'Device views published'],
  fenced: ['fm_fenced_commits_total', 'Record writes refused because another owner wrote first'],
  supersededViews: ['fm_superseded_views_total', 'Views not stored because a newer owner had stored a newer one'],
  orphanedViews: ['fm_orphaned_views_total', 'Users whose devices held views a crashed or fenced owner never recorded'],
  alerts: ['fm_alerts_total', 'Seed budget overruns raised as alerts'],
  partitionsTaken: ['fm_partitions_taken_total', 'Partitions this node took over'],
  partitionsHandedOver: ['fm_partitions_handed_over_total', 'Partitions this node handed to another'],
  replays: ['fm_partition_replays_total', 'Partition lanes replayed from their ack floor (deliveries out of stream order, or a fenced commit)'],
} as const;

/** Gauges of the snapshot, and the Prometheus gauge each one is exposed as. */
const GAUGES = {
  residents: ['fm_residents', 'Users in memory now'],
  residentsPeak: ['fm_residents_peak', 'Most users in memory at once since the node started'],
  partitionsHeld: ['fm_partitions_held', 'Partitions this node holds now'],
  normalLimit: ['fm_normal_limit', 'Normal-lane events the node lets in at once now (learned from commit latency)'],
  crisisRateLimitUsers: ['fm_crisis_rate_limit_users', 'Users whose crisis-lane rate limit bucket the node holds (not full again yet)'],
} as const;

type Counts = Record<keyof typeof COUNTERS | keyof typeof GAUGES, number>;

/** Counters, gauges and latencies of one node. */
export class RuntimeMetrics implements Counts {
  // What each counts: COUNTERS and GAUGES above.
  events = 0;
  duplicates = 0;
  stale = 0;
  crises = 0;
  deadLetters = 0;
  crisisRateLimited = 0;
  retries = 0;
  activations = 0;
  passivations = 0;
  freezes = 0;
  thaws = 0;
  commits = 0;
  viewsPublished = 0;
  fenced = 0;
  supersededViews = 0;
  orphanedViews = 0;
  alerts = 0;
  partitionsTaken = 0;
  partitionsHandedOver = 0;
  replays = 0;
  residents = 0;
  residentsPeak = 0;
  partitionsHeld = 0;
  normalLimit = 0;
  crisisRateLimitUsers = 0;

  /** The Prometheus view of these metrics, every series labelled `node`. */
  readonly registry = new Registry();
  /** Event time at the source → its commit's views published. */
  readonly eventLatency = new Latency(this.registry, 'fm_event_latency_seconds', 'Event time at the source to its views published');
  readonly crisisLatency = new Latency(this.registry, 'fm_crisis_latency_seconds', 'Crisis event time at the source to its views published');
  readonly therapeuticLatency = new Latency(this.registry, 'fm_therapeutic_latency_seconds', 'Therapeutic-access change at the source to its views published');
  readonly activationLatency = new Latency(this.registry, 'fm_activation_seconds', 'Loading a user into memory');

  constructor(nodeId: string) {
    this.registry.setDefaultLabels({ node: nodeId });
    const metrics = this;
    for (const [field, [name, help]] of Object.entries(COUNTERS) as Array<[keyof typeof COUNTERS, readonly [string, string]]>) {
      let reported = 0;
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.inc(metrics[field] - reported);
          reported = metrics[field];
        },
      });
    }
    for (const [field, [name, help]] of Object.entries(GAUGES) as Array<[keyof typeof GAUGES, readonly [string, string]]>) {
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(metrics[field]);
        },
      });
    }
  }

  /** Records a latency in milliseconds. */
  static record(h: Latency, ms: number): void {
    h.hdr.recordValue(Math.max(1, Math.round(ms * 1000)));
    h.prom.observe(Math.max(0, ms) / 1000);
  }

  /** A latency's percentiles in milliseconds. */
  static summary(h: Latency): LatencySummary {
    const ms = (us: number) => us / 1000;
    return {
      count: h.hdr.totalCount,
      p50: ms(h.hdr.getValueAtPercentile(50)),
      p99: ms(h.hdr.getValueAtPercentile(99)),
      max: ms(h.hdr.maxValue),
    };
  }

  /** All counters and latency summaries, as plain data (the `fm.ctl.metrics` answer). */
  snapshot() {
    const summary = RuntimeMetrics.summary;
    return {
      events: this.events,
      duplicates: this.duplicates,
      stale: this.stale,
      crises: this.crises,
      deadLetters: this.deadLetters,
      crisisRateLimited: this.crisisRateLimited,
      retries: this.retries,
      activations: this.activations,
      passivations: this.passivations,
      freezes: this.freezes,
      thaws: this.thaws,
      commits: this.commits,
      viewsPublished: this.viewsPublished,
      fenced: this.fenced,
      supersededViews: this.supersededViews,
      orphanedViews: this.orphanedViews,
      alerts: this.alerts,
      partitionsTaken: this.partitionsTaken,
      partitionsHandedOver: this.partitionsHandedOver,
      replays: this.replays,
      residents: this.residents,
      residentsPeak: this.residentsPeak,
      partitionsHeld: this.partitionsHeld,
      normalLimit: this.normalLimit,
      crisisRateLimitUsers: this.crisisRateLimitUsers,
      eventLatencyMs: summary(this.eventLatency),
      crisisLatencyMs: summary(this.crisisLatency),
      therapeuticLatencyMs: summary(this.therapeuticLatency),
      activationLatencyMs: summary(this.activationLatency),
    };
  }
}

/** Plain-data form of the metrics, as a node answers `fm.ctl.metrics` (with its memory use). */
export type MetricsSnapshot = ReturnType<RuntimeMetrics['snapshot']> & { nodeId: string; partitions: number[]; heapUsed: number; rss: number };
