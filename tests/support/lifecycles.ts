/**
 * Generated Stripe lifecycles for the order-independence properties (DESIGN §4): one or two
 * subscriptions in turn (the second a re-subscription), each created trialing or active, then plan
 * changes, past_due and active again, failed and paid invoices, maybe deleted. Every event has its
 * own `created` second. A delivery replays the events 1–3 times each, in any order, as Stripe may.
 *
 * Steps and deliveries print as one readable line each, so a shrunk counterexample reads like the
 * story it tells: `t+3s customer.subscription.updated past_due premium (sub 1)`.
 */
import fc from 'fast-check';
import type { PaidTier } from '../../machines/features.ts';
import type { StripeEvent } from '../../machines/stripe.ts';
import { invoice, PRICE_BASIC, PRICE_PREMIUM, stripeEvent, subscription } from './stripe.ts';

const PRICE: Readonly<Record<PaidTier, string>> = { basic: PRICE_BASIC, premium: PRICE_PREMIUM };

/** What happens to a subscription after it was created. */
type Op = { plan: PaidTier } | 'past_due' | 'active_again' | 'invoice_failed' | 'invoice_paid';

/** One subscription's life, before times and ids are given. */
interface SubscriptionLife {
  created: 'trialing' | 'active';
  tier: PaidTier;
  ops: Op[];
  deleted: boolean;
}

/** One Stripe event of a lifecycle. */
export interface LifecycleStep {
  /** Seconds after the lifecycle's start: distinct for every step. */
  offset: number;
  type: string;
  /** The subscription's status on a subscription event. */
  status: string | null;
  tier: PaidTier;
  /** Which subscription of the lifecycle (1, then 2 for a re-subscription). */
  subscription: number;
}

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.constantFrom<Op>('past_due', 'active_again', 'invoice_failed', 'invoice_paid'),
  fc.constantFrom<PaidTier>('basic', 'premium').map((plan) => ({ plan })),
);

const life: fc.Arbitrary<SubscriptionLife> = fc.record({
  created: fc.constantFrom('trialing' as const, 'active' as const),
  tier: fc.constantFrom<PaidTier>('basic', 'premium'),
  ops: fc.array(op, { maxLength: 6 }),
  deleted: fc.boolean(),
});

function describeStep(s: LifecycleStep): string {
  return `t+${s.offset}s ${s.type}${s.status ? ` ${s.status}` : ''} ${s.tier} (sub ${s.subscription})`;
}

/** The Stripe events of subscription lives in turn, with the gaps (≥ 1 s) before each. */
function steps(lives: SubscriptionLife[], gaps: number[]): LifecycleStep[] {
  const out: LifecycleStep[] = [];
  let offset = 0;
  const push = (type: string, status: string | null, tier: PaidTier, subscription: number) => {
    offset += gaps[out.length % gaps.length]!;
    const step: LifecycleStep = { offset, type, status, tier, subscription };
    Object.defineProperty(step, fc.toStringMethod, { value: () => describeStep(step) });
    out.push(step);
  };
  lives.forEach((l, i) => {
    const sub = i + 1;
    let tier = l.tier;
    push('customer.subscription.created', l.created, tier, sub);
    for (const o of l.ops) {
      if (typeof o === 'object') {
        tier = o.plan;
        push('customer.subscription.updated', 'active', tier, sub);
      } else if (o === 'past_due') push('customer.subscription.updated', 'past_due', tier, sub);
      else if (o === 'active_again') push('customer.subscription.updated', 'active', tier, sub);
      else push(o === 'invoice_failed' ? 'invoice.payment_failed' : 'invoice.payment_succeeded', null, tier, sub);
    }
    if (l.deleted) push('customer.subscription.deleted', 'canceled', tier, sub);
  });
  return out;
}

/** A generated lifecycle: its steps in the order they happened. */
export const lifecycle: fc.Arbitrary<LifecycleStep[]> = fc
  .tuple(fc.array(life, { minLength: 1, maxLength: 2 }), fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 8 }))
  .map(([lives, gaps]) => steps(lives, gaps));

/** A lifecycle and an order of delivery: each step's index, 1–3 times, in any order. */
export interface Delivered {
  steps: LifecycleStep[];
  /** Indexes into `steps`, in the order they are delivered. */
  order: number[];
}

/**
 * A lifecycle delivered out of order with duplicates. Shrinking moves towards one copy each in
 * the order they happened, so a counterexample keeps only the disorder that matters.
 */
export const delivered: fc.Arbitrary<Delivered> = lifecycle.chain((s) =>
  fc
    .tuple(
      fc.array(fc.integer({ min: 1, max: 3 }), { minLength: s.length, maxLength: s.length }),
      fc.array(fc.nat({ max: 1000 }), { minLength: 3 * s.length, maxLength: 3 * s.length }),
    )
    .map(([copies, keys]) => {
      const sent = copies.flatMap((n, i) => Array.from({ length: n }, () => i));
      const order = sent.map((i, k) => ({ i, key: keys[k]! })).sort((a, b) => a.key - b.key).map(({ i }) => i);
      const value: Delivered = { steps: s, order };
      Object.defineProperty(value, fc.toStringMethod, {
        value: () => `delivered: ${order.map((i) => describeStep(s[i]!)).join(' | ')}`,
      });
      return value;
    }),
);

/** Who a lifecycle's Stripe events are about. */
export interface LifecycleParties {
  userId: string;
  /** A prefix for the subscription ids (`<prefix>_1`, `<prefix>_2`). */
  subscriptionPrefix: string;
  /** Stripe's `created` of offset 0, in seconds. */
  start: number;
}

/** The Stripe events of a lifecycle, each with a stable id (a duplicate delivery reuses it). */
export function stripeEvents(steps: readonly LifecycleStep[], parties: LifecycleParties): StripeEvent[] {
  return steps.map((s) => {
    const who = { subscriptionId: `${parties.subscriptionPrefix}_${s.subscription}`, metadata: { user_id: parties.userId } };
    const object = s.status === null ? invoice({}, who) : subscription(s.status, [PRICE[s.tier]], who);
    return stripeEvent(s.type, object, parties.start + s.offset);
  });
}
