/**
 * The billing ledger: what a user's payment events say, kept so that their order of arrival does not
 * matter (DESIGN §4). Stripe delivers out of order, retries for days and sends duplicates, so a
 * payment event is evidence about its subscription at a point in time, not a transition: a
 * subscription event is a snapshot of the subscription as of its `created` time, an invoice event a
 * payment outcome at its time. Per subscription the ledger keeps the evidence sorted by time and
 * folds it into a {@link SubscriptionStanding}; the user's {@link BillingStanding} combines their
 * subscriptions. The statechart follows the standing (`billing_changed`), so for any permutation and
 * duplication of the same evidence the user ends in the same state as with in-order delivery.
 *
 * Order of evidence: by time, then, within the same millisecond (Stripe's `created` has second
 * resolution), a failure before access before a cancellation, a lower tier before a higher one:
 * in the same second, access wins over a failure, and a cancellation (terminal in Stripe) wins over
 * both. Pure and deterministic; no I/O.
 */
import type { PaymentEvent } from './events.ts';
import { PAID_TIERS, type PaidTier } from './features.ts';

/** What a subscription is as far as access goes. */
export type BillingStatus = 'active' | 'past_due' | 'canceled';

/** One fact about a subscription: a snapshot of it, or an invoice's outcome. */
export interface Evidence {
  /** Time of the fact at its source (Stripe's `created`, in ms). */
  at: number;
  kind: 'snapshot' | 'invoice';
  /** A snapshot's status; an invoice's outcome (paid: `active`, failed: `past_due`). */
  status: BillingStatus;
  /** The tier the subscription's prices buy, when the fact names them. */
  tier: PaidTier | null;
}

/** Where one subscription stands after its evidence, in order. */
export type SubscriptionStanding =
  | { status: 'active'; tier: PaidTier }
  /** Not paying since `since`: the time of the first failure or cancellation after the last access. */
  | { status: 'past_due' | 'canceled'; tier: PaidTier | null; since: number };

/**
 * Where the user stands across their subscriptions, as the statechart follows it. `asOf` is the
 * time of the newest evidence: it changes with every new fact, so each fact reaches the statechart.
 */
export type BillingStanding = SubscriptionStanding & { asOf: number };

/** The evidence of one subscription: the newest facts in order, older ones folded into `base`. */
export interface SubscriptionLedger {
  /** Standing after the evidence folded away (the oldest), `null` when none was. */
  base: SubscriptionStanding | null;
  /** The newest evidence folded into `base`: anything not after it is too old to place. */
  baseEvidence: Evidence | null;
  /** Evidence after `baseEvidence`, oldest first, at most {@link LEDGER_EVIDENCE}. */
  evidence: Evidence[];
}

/** A user's ledger: per subscription id, at most {@link LEDGER_SUBSCRIPTIONS}. */
export type BillingLedger = Readonly<Record<string, SubscriptionLedger>>;

/**
 * Facts kept per subscription before the oldest is folded into the base. Evidence older than the
 * base arrives only after this many newer facts of the same subscription (months of invoices), and
 * is then stale: the one case where order could matter.
 */
export const LEDGER_EVIDENCE = 16;

/** Subscriptions kept per user; the one with the oldest newest fact goes first. */
export const LEDGER_SUBSCRIPTIONS = 4;

/** A ledger with no evidence. */
export const EMPTY_LEDGER: BillingLedger = {};

const STATUS_RANK: Readonly<Record<BillingStatus, number>> = { past_due: 0, active: 1, canceled: 2 };
const tierRank = (tier: PaidTier | null) => (tier === null ? -1 : PAID_TIERS.indexOf(tier));

/** Orders evidence: by time, then failure < access < cancellation, then by tier, then snapshot last. */
export function compareEvidence(a: Evidence, b: Evidence): number {
  return (
    a.at - b.at ||
    STATUS_RANK[a.status] - STATUS_RANK[b.status] ||
    tierRank(a.tier) - tierRank(b.tier) ||
    Number(a.kind === 'snapshot') - Number(b.kind === 'snapshot')
  );
}

/** What a payment event says about its subscription. */
export function evidenceOf(event: PaymentEvent): Evidence {
  const { at } = event;
  switch (event.type) {
    case 'subscription_updated':
      return { at, kind: 'snapshot', status: event.status, tier: event.tier };
    case 'subscription_activated':
    case 'plan_changed':
      return { at, kind: 'snapshot', status: 'active', tier: event.tier };
    case 'subscription_canceled':
      return { at, kind: 'snapshot', status: 'canceled', tier: null };
    case 'payment_failed':
      return { at, kind: 'invoice', status: 'past_due', tier: null };
    case 'payment_recovered':
      return { at, kind: 'invoice', status: 'active', tier: null };
  }
}

/**
 * One subscription's standing after one more fact, in order. A snapshot is the subscription as of
 * its time: newest wins. An invoice only moves between access and failure: a paid invoice does not
 * revive a canceled subscription (a new one does), and it gives no access before any snapshot
 * named the tier.
 */
export function nextStanding(s: SubscriptionStanding | null, e: Evidence): SubscriptionStanding | null {
  const tier = e.tier ?? s?.tier ?? null;
  const lapsedSince = s !== null && s.status !== 'active' ? s.since : e.at;
  if (e.kind === 'snapshot') {
    if (e.status !== 'active') return { status: e.status, tier, since: lapsedSince };
    return tier === null ? s : { status: 'active', tier };
  }
  if (s === null || s.status === 'canceled') return s;
  if (e.status === 'active') return tier === null ? s : { status: 'active', tier };
  return s.status === 'active' ? { status: 'past_due', tier, since: e.at } : s;
}

/** A subscription's standing: its evidence folded in order over its base. */
export function subscriptionStanding(ledger: SubscriptionLedger): SubscriptionStanding | null {
  return ledger.evidence.reduce(nextStanding, ledger.base);
}

/**
 * The user's standing over all their subscriptions: any active subscription gives access, at the
 * highest tier paid for; otherwise the one that stopped being paid last counts; `null` when no
 * subscription stands anywhere yet.
 */
export function billingStanding(ledger: BillingLedger): BillingStanding | null {
  let best: SubscriptionStanding | null = null;
  let asOf = -Infinity;
  for (const sub of Object.values(ledger)) {
    const standing = subscriptionStanding(sub);
    asOf = Math.max(asOf, newestAt(sub));
    if (standing && (best === null || outranks(standing, best))) best = standing;
  }
  return best && { ...best, asOf };
}

function outranks(a: SubscriptionStanding, b: SubscriptionStanding): boolean {
  if (a.status === 'active' || b.status === 'active') {
    return a.status === 'active' && (b.status !== 'active' || tierRank(a.tier) > tierRank(b.tier));
  }
  return a.since > b.since || (a.since === b.since && STATUS_RANK[a.status] > STATUS_RANK[b.status]);
}

function newestAt(sub: SubscriptionLedger): number {
  return sub.evidence.at(-1)?.at ?? sub.baseEvidence?.at ?? -Infinity;
}

/**
 * Records a fact about a subscription. Returns the new ledger, or `null` when the fact is older than
 * what the subscription's ledger still places (stale). Recording the same fact twice changes nothing.
 */
export function recordEvidence(ledger: BillingLedger, subscriptionId: string, e: Evidence): BillingLedger | null {
  const sub = ledger[subscriptionId] ?? { base: null, baseEvidence: null, evidence: [] };
  if (sub.baseEvidence && compareEvidence(e, sub.baseEvidence) <= 0) return null;
  const evidence = [...sub.evidence];
  let i = evidence.length;
  while (i > 0 && compareEvidence(evidence[i - 1]!, e) > 0) i--;
  if (i > 0 && compareEvidence(evidence[i - 1]!, e) === 0) return ledger;
  evidence.splice(i, 0, e);
  let { base, baseEvidence } = sub;
  while (evidence.length > LEDGER_EVIDENCE) {
    baseEvidence = evidence.shift()!;
    base = nextStanding(base, baseEvidence);
  }
  const entries = Object.entries(ledger).filter(([id]) => id !== subscriptionId);
  entries.push([subscriptionId, { base, baseEvidence, evidence }]);
  entries.sort(([, a], [, b]) => newestAt(a) - newestAt(b));
  return Object.fromEntries(entries.slice(-LEDGER_SUBSCRIPTIONS));
}

/** Whether two standings are the same (including `since` and `asOf`). */
export function standingsEqual(a: BillingStanding | null, b: BillingStanding | null): boolean {
  if (a === null || b === null) return a === b;
  return (
    a.status === b.status &&
    a.tier === b.tier &&
    a.asOf === b.asOf &&
    (a.status === 'active' || (b.status !== 'active' && a.since === b.since))
  );
}

/** The statechart's event: the user's billing standing changed (made by the fold, never on the wire). */
export interface BillingChanged {
  type: 'billing_changed';
  /** The payment event that changed it. */
  id: string;
  userId: string;
  at: number;
  standing: BillingStanding;
}
