/**
 * Payments in any order (DESIGN §4): the billing ledger and the statechart that follows it, through
 * the pure domain. Stripe events are mapped by `mapStripeEvent` and applied by `applyEvent`, as the
 * runtime does; the expected end is always the same events applied in the order they happened.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  billingStanding,
  compareEvidence,
  EMPTY_LEDGER,
  LEDGER_EVIDENCE,
  LEDGER_SUBSCRIPTIONS,
  nextStanding,
  recordEvidence,
  type BillingLedger,
  type Evidence,
} from '../../machines/billing.ts';
import type { NormalLaneEvent } from '../../machines/events.ts';
import { mapStripeEvent, type StripeEvent } from '../../machines/stripe.ts';
import { applyEvent, createUserState, type UserState } from '../../machines/userState.ts';
import { delivered, stripeEvents } from '../support/lifecycles.ts';
import { invoice, PRICE_BASIC, PRICE_PREMIUM, PRICE_TIERS, stripeEvent, subscription, USER_ID } from '../support/stripe.ts';
import { DAY, expectCrisisInvariants, viewOf } from './support.ts';

const T = 1_748_736_000; // Stripe `created`, seconds

function domainEvent(e: StripeEvent): NormalLaneEvent {
  const mapping = mapStripeEvent(e, { priceTiers: PRICE_TIERS });
  if (mapping.kind !== 'event') throw new Error(`${e.type} did not map: ${JSON.stringify(mapping)}`);
  return mapping.event;
}

/** A new user (trial from T) after these Stripe events, delivered in this order. */
function deliver(events: readonly StripeEvent[], start: UserState = createUserState(USER_ID, T * 1000)): UserState {
  return events.reduce((state, e) => applyEvent(state, domainEvent(e)).state, start);
}

/** The same events in the order they happened (by `created`). */
const inOrder = (events: readonly StripeEvent[]) => deliver([...events].sort((a, b) => a.created - b.created));

/** What the statechart holds: its state value and context. */
const held = (s: UserState) => ({ value: s.snapshot.value, context: s.snapshot.context });

describe('the issue cases', () => {
  it('A: deleted (t+10) before created (active, basic, t) ends in the grace period, canceled, as in order', () => {
    const created = stripeEvent('customer.subscription.created', subscription('active', [PRICE_BASIC]), T);
    const deleted = stripeEvent('customer.subscription.deleted', subscription('canceled', [PRICE_BASIC]), T + 10);
    const reordered = deliver([deleted, created]);
    expect(viewOf(reordered)).toMatchObject({ tier: 'grace_period', status: 'canceled' });
    expect(viewOf(reordered).gracePeriod).toEqual({ endsAt: (T + 10) * 1000 + 7 * DAY, reason: 'canceled' });
    expect(held(reordered)).toEqual(held(inOrder([deleted, created])));
  });

  it('B: created (basic, t), updated (past_due, premium, t+20), updated (active, premium, t+10), paid (t+30) ends in premium', () => {
    const events = [
      stripeEvent('customer.subscription.created', subscription('active', [PRICE_BASIC]), T),
      stripeEvent('customer.subscription.updated', subscription('past_due', [PRICE_PREMIUM]), T + 20),
      stripeEvent('customer.subscription.updated', subscription('active', [PRICE_PREMIUM]), T + 10),
      stripeEvent('invoice.payment_succeeded', invoice({ status: 'paid' }), T + 30),
    ];
    const reordered = deliver(events);
    expect(viewOf(reordered)).toMatchObject({ tier: 'premium', status: 'active', gracePeriod: null });
    expect(held(reordered)).toEqual(held(inOrder(events)));
  });

  it('a payment failure older than the newest snapshot does not undo it', () => {
    const active = stripeEvent('customer.subscription.updated', subscription('active', [PRICE_PREMIUM]), T + 20);
    const oldFailure = stripeEvent('invoice.payment_failed', invoice(), T + 10);
    expect(viewOf(deliver([active, oldFailure]))).toMatchObject({ tier: 'premium', status: 'active' });
  });

  it('a late fact about an earlier lapse moves the grace period back to where in-order delivery puts it', () => {
    const created = stripeEvent('customer.subscription.created', subscription('active', [PRICE_BASIC]), T);
    const failed = stripeEvent('invoice.payment_failed', invoice(), T + 100);
    const deleted = stripeEvent('customer.subscription.deleted', subscription('canceled', [PRICE_BASIC]), T + 200);
    const reordered = deliver([created, deleted, failed]);
    expect(viewOf(reordered).gracePeriod).toEqual({ endsAt: (T + 100) * 1000 + 7 * DAY, reason: 'canceled' });
    expect(held(reordered)).toEqual(held(inOrder([created, failed, deleted])));
  });
});

describe('billing ledger', () => {
  const snapshot = (at: number, status: Evidence['status'], tier: Evidence['tier'] = 'basic'): Evidence => ({ at, kind: 'snapshot', status, tier });
  const paidInvoice = (at: number): Evidence => ({ at, kind: 'invoice', status: 'active', tier: null });
  const record = (ledger: BillingLedger, sub: string, ...facts: Evidence[]) =>
    facts.reduce<BillingLedger>((l, e) => recordEvidence(l, sub, e) ?? l, ledger);

  it('in the same second: a failure, then access, then a cancellation; a lower tier before a higher one', () => {
    const same = [snapshot(5, 'canceled'), snapshot(5, 'active', 'premium'), snapshot(5, 'past_due'), snapshot(5, 'active', 'basic')];
    expect([...same].sort(compareEvidence).map((e) => `${e.status}/${e.tier}`)).toEqual([
      'past_due/basic',
      'active/basic',
      'active/premium',
      'canceled/basic',
    ]);
    for (const order of [same, [...same].reverse()]) {
      expect(billingStanding(record(EMPTY_LEDGER, 's', ...order))).toMatchObject({ status: 'canceled', since: 5 });
    }
    // Access and failure in the same second: access wins, whichever came first.
    expect(billingStanding(record(EMPTY_LEDGER, 's', snapshot(5, 'past_due'), snapshot(5, 'active')))).toMatchObject({ status: 'active' });
    expect(billingStanding(record(EMPTY_LEDGER, 's', snapshot(5, 'active'), snapshot(5, 'past_due')))).toMatchObject({ status: 'active' });
  });

  it('a paid invoice does not revive a canceled subscription, and gives no access before a snapshot names a tier', () => {
    expect(billingStanding(record(EMPTY_LEDGER, 's', snapshot(1, 'canceled'), paidInvoice(2)))).toMatchObject({ status: 'canceled' });
    expect(billingStanding(record(EMPTY_LEDGER, 's', paidInvoice(2)))).toBeNull();
  });

  it('the same fact twice is recorded once', () => {
    const once = record(EMPTY_LEDGER, 's', snapshot(1, 'active'));
    expect(recordEvidence(once, 's', snapshot(1, 'active'))).toBe(once);
  });

  it(`keeps ${LEDGER_EVIDENCE} facts per subscription; a fact older than the ones folded away is stale`, () => {
    const facts = Array.from({ length: LEDGER_EVIDENCE + 3 }, (_, i) => snapshot(10 + i, i % 2 ? 'past_due' : 'active'));
    const ledger = record(EMPTY_LEDGER, 's', ...facts);
    expect(ledger.s!.evidence).toHaveLength(LEDGER_EVIDENCE);
    expect(recordEvidence(ledger, 's', snapshot(11, 'canceled'))).toBeNull();
    expect(recordEvidence(ledger, 's', snapshot(13.5, 'canceled'))).not.toBeNull();
    // Folding the oldest away changes nothing: the standing is the fold of all of them.
    expect(billingStanding(ledger)).toEqual({ ...facts.reduce(nextStanding, null), asOf: facts.at(-1)!.at });
  });

  it(`keeps ${LEDGER_SUBSCRIPTIONS} subscriptions, dropping the one heard of least recently`, () => {
    let ledger = EMPTY_LEDGER;
    for (let i = 0; i <= LEDGER_SUBSCRIPTIONS; i++) ledger = record(ledger, `s${i}`, snapshot(100 - i, 'canceled'));
    expect(Object.keys(ledger).sort()).toEqual(['s0', 's1', 's2', 's3']);
  });

  it('any active subscription gives access at the highest tier; else the latest lapse counts', () => {
    const two = record(record(EMPTY_LEDGER, 'a', snapshot(1, 'active', 'basic')), 'b', snapshot(2, 'canceled', 'premium'));
    expect(billingStanding(two)).toEqual({ status: 'active', tier: 'basic', asOf: 2 });
    const both = record(two, 'c', snapshot(3, 'active', 'premium'));
    expect(billingStanding(both)).toMatchObject({ status: 'active', tier: 'premium' });
    const lapsed = record(record(EMPTY_LEDGER, 'a', snapshot(1, 'past_due')), 'b', snapshot(5, 'canceled'));
    expect(billingStanding(lapsed)).toMatchObject({ status: 'canceled', since: 5 });
  });
});

/** Runs of the pure order-independence property (reported in the issue note). */
const RUNS = 2_000;

describe('payments in any order (fast-check)', () => {
  it(`any permutation and duplication of a lifecycle's Stripe events ends where in-order delivery ends (${RUNS} lifecycles)`, () => {
    let events = 0;
    fc.assert(
      fc.property(delivered, fc.boolean(), ({ steps, order }, crisis) => {
        const stripe = stripeEvents(steps, { userId: USER_ID, subscriptionPrefix: 'sub_gen', start: T });
        let start = createUserState(USER_ID, T * 1000);
        if (crisis) start = applyEvent(start, { type: 'crisis_button', id: 'crisis-1', userId: USER_ID, at: T * 1000 - 1 }).state;
        let state = start;
        for (const i of order) {
          state = applyEvent(state, domainEvent(stripe[i]!)).state;
          // Crisis state is untouched by any payment, in any order.
          expect(viewOf(state).crisis.active).toBe(crisis);
          expectCrisisInvariants(viewOf(state));
        }
        events += order.length;
        const expected = deliver(stripe, start);
        expect(held(state)).toEqual(held(expected));
        const [got, want] = [viewOf(state), viewOf(expected)];
        expect([got.tier, got.status, got.gracePeriod]).toEqual([want.tier, want.status, want.gracePeriod]);
      }),
      { numRuns: RUNS },
    );
    console.log(`order independence: ${RUNS} lifecycles, ${events} deliveries`);
  });
});
