/**
 * The crisis lane's per-user rate limit: one device flooding its crisis button must not delay
 * another user's crisis. A node decides on each crisis-lane delivery as it arrives, before the
 * user actor's transition and commit (the expensive part): an event over its user's limit becomes a
 * dead letter and is acknowledged once that is stored, so a flood holds the partition consumer's
 * ack-pending window only for those writes, never the node's crisis-first scheduling, and the
 * other users of the partition go through. A limited event is never applied later: the limit
 * refuses, it does not delay.
 *
 * A token bucket per user (`tokenBucket.ts`). Only buckets that are not full are kept, least
 * recently used first, and {@link CrisisRateLimit.prune} drops those full again: the state is
 * bounded by the users who pressed lately (an entry goes at the node's first sweep once
 * `burst / ratePerS` seconds have passed since its user's last press), not by the users a node
 * serves, and it lives beside the user actors, so freezing or passivating a user changes nothing.
 * A bucket is the node's: after a crash or a partition's move the next holder starts full and
 * decides afresh what is delivered again (a limited event whose acknowledgement was lost may then
 * be applied; its dead letter stays).
 */
import type { UserEventType } from '../machines/events.ts';
import type { Lane } from '../transport/subjects.ts';
import { isFull, take, type TokenBucket, type TokenBucketPolicy } from './tokenBucket.ts';

/**
 * Crisis-lane event types limited per user: the crisis button only, the one event a device sends
 * (a device's credentials name its own user's crisis button and nothing else on the lane). A
 * `crisis_detected` comes from the assessment service or a clinician, and a clinician's escalation
 * must never be refused; a `crisis_resolved` ends a crisis by a human act (a clinician, or the
 * check-in after the hold) and is never what floods. Crisis events the bench sends down the normal
 * lane are not limited either: the normal lane has its own admission.
 */
export const RATE_LIMITED_TYPES: ReadonlySet<UserEventType> = new Set<UserEventType>(['crisis_button']);

/** What the limit decided for one delivery. */
export type CrisisVerdict = { allowed: true } | { allowed: false; inARow: number };

/** A user who spent tokens lately, with how many of their events were refused since the last one that passed. */
interface Entry {
  bucket: TokenBucket;
  refused: number;
}

const ALLOWED: CrisisVerdict = { allowed: true };

/** The per-user limit of one node's crisis lane. */
export class CrisisRateLimit {
  private readonly policy: TokenBucketPolicy;
  /** Users whose bucket is not full, least recently used first (a user who presses moves to the end). */
  private readonly entries = new Map<string, Entry>();

  constructor(policy: TokenBucketPolicy) {
    this.policy = policy;
  }

  /**
   * Decides one delivery at `now` (monotonic ms). A refused one says how many in a row its user
   * has had refused, so a flood is logged once, not once per event. A `crisis_resolved` refills
   * its user's bucket: the next press starts a new crisis and must pass, even right after a flood.
   */
  admit(lane: Lane, event: { userId: string; type: string }, now: number): CrisisVerdict {
    if (lane !== 'crisis') return ALLOWED;
    const { userId } = event;
    if (event.type === 'crisis_resolved') {
      this.entries.delete(userId);
      return ALLOWED;
    }
    // The type as the subject names it: garbage on a crisis-button subject counts too.
    if (!RATE_LIMITED_TYPES.has(event.type as UserEventType)) return ALLOWED;
    const entry = this.entries.get(userId);
    const { allowed, bucket } = take(entry?.bucket, now, this.policy);
    const refused = allowed ? 0 : (entry?.refused ?? 0) + 1;
    // Deleted first so that the user moves to the end: the map stays in order of last use.
    this.entries.delete(userId);
    this.entries.set(userId, { bucket, refused });
    return allowed ? ALLOWED : { allowed: false, inARow: refused };
  }

  /**
   * Forgets users whose bucket is full again, from the least recently used on, stopping at the
   * first that is not: each call costs what it removes. One left behind a slower one to refill
   * goes on a later call, no later than `burst / ratePerS` seconds after its own last press.
   */
  prune(now: number): void {
    for (const [userId, { bucket }] of this.entries) {
      if (!isFull(bucket, now, this.policy)) return;
      this.entries.delete(userId);
    }
  }

  /** Users tracked now (whose bucket is not full, or not pruned yet). */
  get size(): number {
    return this.entries.size;
  }
}
