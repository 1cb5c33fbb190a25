/**
 * A token bucket, pure: it holds at most `burst` tokens and gains `ratePerS` of them a second; each
 * event takes one, and an event that finds less than one token is over the limit. The state is two
 * numbers and the clock is the caller's (monotonic milliseconds), so there is no timer: the tokens
 * gained are computed when the bucket is next used. A full bucket is the same as no state at all
 * (`undefined`), so a caller keeps state only for the keys that spent some of their tokens lately.
 */

/** How much a bucket holds and how fast it refills. */
export interface TokenBucketPolicy {
  /** Tokens gained per second (more than 0): the rate sustained once the burst is spent. */
  ratePerS: number;
  /** Most tokens held (at least 1): the events that pass at once after a quiet spell. */
  burst: number;
}

/** A bucket that is not full: it held `tokens` at time `at` (ms, the caller's monotonic clock). */
export interface TokenBucket {
  readonly tokens: number;
  readonly at: number;
}

/** What {@link take} decided, and the bucket after it. */
export interface Taken {
  allowed: boolean;
  bucket: TokenBucket;
}

/** The tokens a bucket holds at `now`: what it held plus what it gained since, up to the burst. */
export function tokensAt(bucket: TokenBucket | undefined, now: number, policy: TokenBucketPolicy): number {
  if (!bucket) return policy.burst;
  // A clock that went back gives nothing.
  const gained = (Math.max(0, now - bucket.at) * policy.ratePerS) / 1000;
  return Math.min(policy.burst, bucket.tokens + gained);
}

/**
 * Takes a token for one event at `now`: allowed when the bucket holds one. A refused event takes
 * nothing, so it leaves the bucket as it was (the state it returns is the same, brought to `now`).
 */
export function take(bucket: TokenBucket | undefined, now: number, policy: TokenBucketPolicy): Taken {
  const tokens = tokensAt(bucket, now, policy);
  const allowed = tokens >= 1;
  return { allowed, bucket: { tokens: allowed ? tokens - 1 : tokens, at: now } };
}

/** Whether a bucket is full at `now`: its state may be forgotten, it would decide nothing differently. */
export function isFull(bucket: TokenBucket | undefined, now: number, policy: TokenBucketPolicy): boolean {
  return tokensAt(bucket, now, policy) >= policy.burst;
}
