/**
 * How many normal-lane deliveries a node works on at once, learned from how long its commits take
 * (a gradient limit, after Netflix's concurrency-limits, with an absolute latency target): while
 * commits take less than `targetMs`, more are let in; when they take longer, the limit shrinks in
 * proportion. A crisis commit is never limited, but it shares NATS and the event loop with the
 * normal lane's: keeping normal commits near the target keeps the queues a crisis waits in short.
 * The normal lane gets `1 - reserve` of the learned limit: the seed's optimizer kept a fifth of
 * capacity for the crisis lane.
 */

/** Options of {@link AdaptiveLimit}. */
export interface AdmissionOptions {
  /** The limit before any commit was measured. */
  initial: number;
  /**
   * Never fewer in flight than this. A machine short of CPU makes every commit slow, and a limit
   * far below what the lane has in flight then only builds a backlog: events wait past the lane's
   * ack wait and come again (seen at 4 under the whole test suite: events a minute late).
   */
  min: number;
  /** Never more in flight than this. */
  max: number;
  /** Commit latency (ms) the normal lane is held to: half the crisis lane's 10 ms p99 target. */
  targetMs: number;
  /** Share of the learned limit kept free for the crisis lane. */
  reserve: number;
}

/** Default admission. */
export const DEFAULT_ADMISSION: AdmissionOptions = { initial: 32, min: 16, max: 1_024, targetMs: 5, reserve: 0.2 };

/** Weight of a new sample in the recent latency (about the last ten commits). */
const RECENT_WEIGHT = 0.1;
/** Weight of a new estimate in the limit: it moves smoothly. */
const LIMIT_WEIGHT = 0.2;

/** The normal lane's concurrency limit. Deterministic: the same samples give the same limit. */
export class AdaptiveLimit {
  private readonly options: AdmissionOptions;
  private estimate: number;
  private recent = 0;

  constructor(options: Partial<AdmissionOptions> = {}) {
    this.options = { ...DEFAULT_ADMISSION, ...options };
    this.estimate = this.options.initial;
  }

  /** Normal-lane deliveries that may be in flight now. */
  get limit(): number {
    const { min, reserve } = this.options;
    return Math.max(min, Math.floor(this.estimate * (1 - reserve)));
  }

  /** The recent commit latency (ms), smoothed. */
  get latencyMs(): number {
    return this.recent;
  }

  /** Takes one normal commit's latency, measured while `inFlight` normal deliveries were being worked on. */
  observe(latencyMs: number, inFlight: number): void {
    const { min, max, targetMs } = this.options;
    this.recent = this.recent === 0 ? latencyMs : this.recent + (latencyMs - this.recent) * RECENT_WEIGHT;
    // A lane that does not use its limit says nothing about a larger one.
    if (inFlight < this.limit / 2 && this.recent <= targetMs) return;
    const gradient = Math.min(1, Math.max(0.5, targetMs / Math.max(this.recent, 0.01)));
    const next = this.estimate * gradient + Math.sqrt(this.estimate);
    this.estimate = Math.min(max, Math.max(min, this.estimate + (next - this.estimate) * LIMIT_WEIGHT));
  }
}
