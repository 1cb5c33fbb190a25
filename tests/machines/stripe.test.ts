/**
 * Stripe webhook events → domain events (DESIGN §4), with payloads shaped like Stripe API
 * 2025-03-31 and later (prices and periods on subscription items, invoices naming their
 * subscription under `parent.subscription_details`), then Stripe's out-of-order and duplicate
 * deliveries through `applyEvent`.
 */
import { describe, expect, it } from 'vitest';
import { mapStripeEvent, type StripeMapping, type StripeMappingOptions } from '../../machines/stripe.ts';
import { applyEvent, createUserState } from '../../machines/userState.ts';
import {
  CREATED,
  CUSTOMER,
  invoice,
  PRICE_BASIC,
  PRICE_PREMIUM,
  PRICE_TIERS,
  stripeEvent,
  SUB_ID,
  subscription,
  USER_ID,
} from '../support/stripe.ts';
import { viewOf } from './support.ts';

const options: StripeMappingOptions = { priceTiers: PRICE_TIERS };

function mappedEvent(mapping: StripeMapping) {
  expect(mapping.kind, JSON.stringify(mapping)).toBe('event');
  if (mapping.kind !== 'event') throw new Error('unreachable');
  return mapping.event;
}

describe('customer.subscription.created', () => {
  it('active with the basic price → a subscription_updated snapshot: active, basic', () => {
    const e = stripeEvent('customer.subscription.created', subscription('active', [PRICE_BASIC]));
    expect(mappedEvent(mapStripeEvent(e, options))).toEqual({
      type: 'subscription_updated',
      id: e.id,
      userId: USER_ID,
      at: CREATED * 1000,
      subscriptionId: SUB_ID,
      status: 'active',
      tier: 'basic',
    });
  });

  it("trialing (a paid plan's Stripe trial) with the premium price → active, premium", () => {
    const e = stripeEvent('customer.subscription.created', subscription('trialing', [PRICE_PREMIUM]));
    expect(mappedEvent(mapStripeEvent(e, options))).toMatchObject({ type: 'subscription_updated', status: 'active', tier: 'premium' });
  });

  it('several items: the highest tier any of their prices buys', () => {
    const e = stripeEvent('customer.subscription.created', subscription('active', ['price_addon', PRICE_PREMIUM, PRICE_BASIC]));
    expect(mappedEvent(mapStripeEvent(e, options))).toMatchObject({ tier: 'premium' });
  });

  it('a price id given as a bare string is read too', () => {
    const sub = subscription('active', []);
    sub.items.data = [{ id: 'si_x', price: PRICE_BASIC } as never];
    expect(mappedEvent(mapStripeEvent(stripeEvent('customer.subscription.created', sub), options))).toMatchObject({
      tier: 'basic',
    });
  });

  it('incomplete (first payment not yet made) is ignored', () => {
    const e = stripeEvent('customer.subscription.created', subscription('incomplete', [PRICE_BASIC]));
    expect(mapStripeEvent(e, options).kind).toBe('ignored');
  });
});

describe('customer.subscription.updated', () => {
  it('active with another price → a snapshot at that tier', () => {
    const e = stripeEvent('customer.subscription.updated', subscription('active', [PRICE_PREMIUM]));
    expect(mappedEvent(mapStripeEvent(e, options))).toEqual({
      type: 'subscription_updated',
      id: e.id,
      userId: USER_ID,
      at: CREATED * 1000,
      subscriptionId: SUB_ID,
      status: 'active',
      tier: 'premium',
    });
  });

  for (const status of ['past_due', 'unpaid']) {
    it(`${status} → a past_due snapshot that keeps the tier its prices buy`, () => {
      const e = stripeEvent('customer.subscription.updated', subscription(status, [PRICE_BASIC]));
      expect(mappedEvent(mapStripeEvent(e, options))).toMatchObject({ type: 'subscription_updated', status: 'past_due', tier: 'basic' });
    });
  }

  // paused: a trial that ended without a payment method; nothing is being paid.
  for (const status of ['canceled', 'incomplete_expired', 'paused']) {
    it(`${status} → a canceled snapshot`, () => {
      const e = stripeEvent('customer.subscription.updated', subscription(status, [PRICE_BASIC]));
      expect(mappedEvent(mapStripeEvent(e, options))).toMatchObject({ type: 'subscription_updated', status: 'canceled', tier: 'basic' });
    });
  }

  it('past_due with a price no tier is configured for → a snapshot without a tier (only access needs one)', () => {
    const e = stripeEvent('customer.subscription.updated', subscription('past_due', ['price_unknown']));
    expect(mappedEvent(mapStripeEvent(e, options))).toMatchObject({ status: 'past_due', tier: null });
  });
});

describe('customer.subscription.deleted', () => {
  it('→ a canceled snapshot, whatever status the object shows', () => {
    const e = stripeEvent('customer.subscription.deleted', subscription('active', [PRICE_PREMIUM]));
    expect(mappedEvent(mapStripeEvent(e, options))).toEqual({
      type: 'subscription_updated',
      id: e.id,
      userId: USER_ID,
      at: CREATED * 1000,
      subscriptionId: SUB_ID,
      status: 'canceled',
      tier: 'premium',
    });
  });
});

describe('invoices', () => {
  it('invoice.payment_failed → payment_failed with the attempt count and the next attempt in ms', () => {
    const next = CREATED + 3 * 86_400;
    const e = stripeEvent('invoice.payment_failed', invoice({ attempt_count: 2, next_payment_attempt: next }));
    expect(mappedEvent(mapStripeEvent(e, options))).toEqual({
      type: 'payment_failed',
      id: e.id,
      userId: USER_ID,
      at: CREATED * 1000,
      subscriptionId: SUB_ID,
      attemptCount: 2,
      nextAttemptAt: next * 1000,
    });
  });

  it('invoice.payment_failed on the last attempt: no next attempt', () => {
    const e = stripeEvent('invoice.payment_failed', invoice({ attempt_count: 4, next_payment_attempt: null }));
    expect(mappedEvent(mapStripeEvent(e, options))).toMatchObject({ attemptCount: 4, nextAttemptAt: null });
  });

  for (const type of ['invoice.payment_succeeded', 'invoice.paid']) {
    it(`${type} → payment_recovered`, () => {
      const e = stripeEvent(type, invoice({ status: 'paid', amount_paid: 999 }));
      expect(mappedEvent(mapStripeEvent(e, options))).toEqual({
        type: 'payment_recovered',
        id: e.id,
        userId: USER_ID,
        at: CREATED * 1000,
        subscriptionId: SUB_ID,
      });
    });
  }

  it('an invoice without a subscription (a one-off invoice) is ignored', () => {
    const e = stripeEvent('invoice.payment_failed', invoice({ parent: null }));
    expect(mapStripeEvent(e, options).kind).toBe('ignored');
  });
});

describe('the user', () => {
  it('comes from the subscription metadata', () => {
    const e = stripeEvent('customer.subscription.created', subscription('active', [PRICE_BASIC], { metadata: { user_id: 'from_sub' } }));
    expect(mappedEvent(mapStripeEvent(e, { ...options, customerUserId: 'from_lookup' })).userId).toBe('from_sub');
  });

  it('comes from parent.subscription_details.metadata on an invoice', () => {
    const e = stripeEvent('invoice.payment_failed', invoice({}, { metadata: { user_id: 'from_parent' } }));
    expect(mappedEvent(mapStripeEvent(e, { ...options, customerUserId: 'from_lookup' })).userId).toBe('from_parent');
  });

  it('comes from the invoice metadata when the parent names none', () => {
    const e = stripeEvent('invoice.payment_succeeded', invoice({ metadata: { user_id: 'from_invoice' } }, { metadata: {} }));
    expect(mappedEvent(mapStripeEvent(e, options)).userId).toBe('from_invoice');
  });

  it("comes from options.customerUserId (the ingress's customer lookup) when no metadata names one", () => {
    const e = stripeEvent('customer.subscription.updated', subscription('active', [PRICE_BASIC], { metadata: {} }));
    expect(mappedEvent(mapStripeEvent(e, { ...options, customerUserId: 'from_lookup' })).userId).toBe('from_lookup');
    const inv = stripeEvent('invoice.payment_failed', invoice({}, { metadata: {} }));
    expect(mappedEvent(mapStripeEvent(inv, { ...options, customerUserId: 'from_lookup' })).userId).toBe('from_lookup');
  });

  it('unknown → rejected unknown_user', () => {
    const e = stripeEvent('customer.subscription.created', subscription('active', [PRICE_BASIC], { metadata: {} }));
    expect(mapStripeEvent(e, options)).toMatchObject({ kind: 'rejected', reason: 'unknown_user' });
    const inv = stripeEvent('invoice.payment_succeeded', invoice({}, { metadata: {} }));
    expect(mapStripeEvent(inv, options)).toMatchObject({ kind: 'rejected', reason: 'unknown_user' });
  });

  it('a user_id with a dot (not a subject token) → rejected malformed', () => {
    const e = stripeEvent('customer.subscription.created', subscription('active', [PRICE_BASIC], { metadata: { user_id: 'usr.42' } }));
    expect(mapStripeEvent(e, options)).toMatchObject({ kind: 'rejected', reason: 'malformed' });
    const inv = stripeEvent('invoice.payment_failed', invoice({}, { metadata: { user_id: 'usr.*' } }));
    expect(mapStripeEvent(inv, options)).toMatchObject({ kind: 'rejected', reason: 'malformed' });
  });
});

describe('what is not mapped', () => {
  it('an unknown price → rejected unknown_price', () => {
    const e = stripeEvent('customer.subscription.created', subscription('active', ['price_unknown']));
    expect(mapStripeEvent(e, options)).toMatchObject({ kind: 'rejected', reason: 'unknown_price' });
  });

  it('a price id that is an Object.prototype key is still an unknown price', () => {
    const e = stripeEvent('customer.subscription.updated', subscription('active', ['toString', 'constructor']));
    expect(mapStripeEvent(e, options)).toMatchObject({ kind: 'rejected', reason: 'unknown_price' });
  });

  it('a subscription without items → rejected unknown_price', () => {
    const e = stripeEvent('customer.subscription.created', subscription('active', []));
    expect(mapStripeEvent(e, options)).toMatchObject({ kind: 'rejected', reason: 'unknown_price' });
  });

  it('an unhandled type → ignored', () => {
    const e = stripeEvent('customer.created', { id: CUSTOMER, object: 'customer', metadata: { user_id: USER_ID } });
    expect(mapStripeEvent(e, options).kind).toBe('ignored');
    const finalized = stripeEvent('invoice.finalized', invoice());
    expect(mapStripeEvent(finalized, options).kind).toBe('ignored');
  });

  it('an event without data.object, or with a non-integer created → rejected malformed', () => {
    const e = stripeEvent('customer.subscription.created', subscription('active', [PRICE_BASIC]));
    expect(mapStripeEvent({ ...e, data: {} as never }, options)).toMatchObject({ kind: 'rejected', reason: 'malformed' });
    expect(mapStripeEvent({ ...e, created: 1.5 }, options)).toMatchObject({ kind: 'rejected', reason: 'malformed' });
  });
});

describe('out of order and duplicate deliveries (through applyEvent)', () => {
  const map = (type: string, status: string, prices: string[], created: number) =>
    mappedEvent(mapStripeEvent(stripeEvent(type, subscription(status, prices), created), options));

  it('an updated(active) created before an applied deleted is placed before it: the user stays in grace', () => {
    const createdEvt = map('customer.subscription.created', 'active', [PRICE_BASIC], 50);
    const deleted = map('customer.subscription.deleted', 'canceled', [PRICE_BASIC], 200);
    const olderUpdate = map('customer.subscription.updated', 'active', [PRICE_PREMIUM], 100);

    let state = createUserState(USER_ID, 0);
    for (const event of [createdEvt, deleted]) {
      const result = applyEvent(state, event);
      expect(result.outcome).toBe('applied');
      state = result.state;
    }
    const before = viewOf(state);
    expect(before).toMatchObject({ tier: 'grace_period', status: 'canceled' });

    const late = applyEvent(state, olderUpdate);
    expect(late.outcome).toBe('applied');
    expect(viewOf(late.state)).toEqual(before);
  });

  it('a newer subscription event after the late one still applies', () => {
    let state = createUserState(USER_ID, 0);
    for (const event of [
      map('customer.subscription.created', 'active', [PRICE_BASIC], 50),
      map('customer.subscription.deleted', 'canceled', [PRICE_BASIC], 200),
    ]) {
      state = applyEvent(state, event).state;
    }
    const newer = applyEvent(state, map('customer.subscription.created', 'active', [PRICE_PREMIUM], 300));
    expect(newer.outcome).toBe('applied');
    expect(viewOf(newer.state).tier).toBe('premium');
  });

  it('the same Stripe event applied twice is a duplicate the second time, and changes nothing', () => {
    const e = stripeEvent('customer.subscription.created', subscription('active', [PRICE_PREMIUM]), 50);
    const first = applyEvent(createUserState(USER_ID, 0), mappedEvent(mapStripeEvent(e, options)));
    expect(first.outcome).toBe('applied');
    expect(viewOf(first.state).tier).toBe('premium');
    // Stripe redelivers the very same event: it maps to the same domain event id
    const again = applyEvent(first.state, mappedEvent(mapStripeEvent(e, options)));
    expect(again.outcome).toBe('duplicate');
    expect(again.state).toBe(first.state);
  });
});
