/**
 * The runtime's counters and latency histograms, for the bench and a metrics endpoint. Histograms
 * are HDR (microsecond resolution, up to an hour), so percentiles are exact to 3 digits.
 */
import { build, type Histogram } from 'hdr-histogram-js';

function histogram(): Histogram {
  return build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });
}

/** Latency percentiles in milliseconds. */
export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

/** Counters and histograms of one node. */
export class RuntimeMetrics {
  /** Events applied to a statechart (duplicates and stale events excluded). */
  events = 0;
  duplicates = 0;
  stale = 0;
  /** Crisis episodes started. */
  crises = 0;
  deadLetters = 0;
  /** NATS requests tried again after a transient failure (see actors/retry.ts). */
  retries = 0;
  activations = 0;
  passivations = 0;
  commits = 0;
  viewsPublished = 0;
  /** Snapshot writes refused because another owner wrote first. */
  fenced = 0;
  /** Users whose devices held views a crashed or fenced owner published but never recorded. */
  orphanedViews = 0;
  alerts = 0;
  /** Users in memory now. */
  residents = 0;
  /** Most users in memory at once since the node started. */
  residentsPeak = 0;
  /** Event time at the source → views published, per lane. */
  readonly eventLatency = histogram();
  readonly crisisLatency = histogram();
  readonly therapeuticLatency = histogram();
  readonly activationLatency = histogram();

  /** Records a latency in milliseconds. */
  static record(h: Histogram, ms: number): void {
    h.recordValue(Math.max(1, Math.round(ms * 1000)));
  }

  /** A histogram's percentiles in milliseconds. */
  static summary(h: Histogram): LatencySummary {
    const ms = (us: number) => us / 1000;
    return {
      count: h.totalCount,
      p50: ms(h.getValueAtPercentile(50)),
      p99: ms(h.getValueAtPercentile(99)),
      max: ms(h.maxValue),
    };
  }

  /** All counters and latency summaries, as plain data. */
  snapshot() {
    const summary = RuntimeMetrics.summary;
    return {
      events: this.events,
      duplicates: this.duplicates,
      stale: this.stale,
      crises: this.crises,
      deadLetters: this.deadLetters,
      retries: this.retries,
      activations: this.activations,
      passivations: this.passivations,
      commits: this.commits,
      viewsPublished: this.viewsPublished,
      fenced: this.fenced,
      orphanedViews: this.orphanedViews,
      alerts: this.alerts,
      residents: this.residents,
      residentsPeak: this.residentsPeak,
      eventLatencyMs: summary(this.eventLatency),
      crisisLatencyMs: summary(this.crisisLatency),
      therapeuticLatencyMs: summary(this.therapeuticLatency),
      activationLatencyMs: summary(this.activationLatency),
    };
  }
}

/** Plain-data form of the metrics, as a node answers `fm.ctl.metrics` (with its memory use). */
export type MetricsSnapshot = ReturnType<RuntimeMetrics['snapshot']> & { nodeId: string; heapUsed: number; rss: number };
