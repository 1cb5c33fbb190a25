/**
 * Stripe payloads shaped like API 2025-03-31 and later (prices and periods on subscription items,
 * invoices naming their subscription under `parent.subscription_details`), and signing them as
 * Stripe does, with the official package's test header.
 */
import Stripe from 'stripe';
import type { StripeEvent } from '../../machines/stripe.ts';
import { CARD, PERSON } from './pii.ts';

export const PRICE_BASIC = 'price_1QbAsicMonthlyEUR';
export const PRICE_PREMIUM = 'price_1QpReMiumMonthlyEUR';
/** `STRIPE_PRICE_TIERS` for these prices. */
export const PRICE_TIERS = { [PRICE_BASIC]: 'basic', [PRICE_PREMIUM]: 'premium' } as const;
/** {@link PRICE_TIERS} as the `STRIPE_PRICE_TIERS` environment variable spells them. */
export const PRICE_TIERS_ENV = Object.entries(PRICE_TIERS)
  .map(([price, tier]) => `${price}=${tier}`)
  .join(',');
export const SUB_ID = 'sub_1R2bC3dE4fG5hI6j';
export const CUSTOMER = 'cus_RxYz0123456789';
export const USER_ID = 'usr_42';
/** 2025-06-01T00:00:00Z in seconds, Stripe's unit. */
export const CREATED = 1_748_736_000;

/** Who and what a payload is about. */
export interface Parties {
  subscriptionId?: string;
  customer?: string;
  /** The subscription's metadata; `{ user_id }` set at checkout by default. */
  metadata?: Record<string, string>;
}

/** A subscription object as Stripe sends it since 2025-03-31. */
export function subscription(status: string, prices: string[], parties: Parties = {}) {
  const id = parties.subscriptionId ?? SUB_ID;
  return {
    id,
    object: 'subscription',
    customer: parties.customer ?? CUSTOMER,
    status,
    metadata: parties.metadata ?? { user_id: USER_ID },
    cancel_at_period_end: false,
    canceled_at: status === 'canceled' ? CREATED : null,
    collection_method: 'charge_automatically',
    currency: 'eur',
    latest_invoice: 'in_1R2bC3dE4fG5hI6jKl',
    livemode: false,
    start_date: CREATED - 86_400,
    items: {
      object: 'list',
      has_more: false,
      url: `/v1/subscription_items?subscription=${id}`,
      data: prices.map((price, i) => ({
        id: `si_R2bC3dE4fG5h${i}`,
        object: 'subscription_item',
        subscription: id,
        quantity: 1,
        current_period_start: CREATED - 86_400,
        current_period_end: CREATED + 29 * 86_400,
        price: {
          id: price,
          object: 'price',
          active: true,
          currency: 'eur',
          product: `prod_${i}`,
          recurring: { interval: 'month', interval_count: 1, usage_type: 'licensed' },
          type: 'recurring',
          unit_amount: 999,
        },
      })),
    },
  };
}

/** An invoice as Stripe sends it since 2025-03-31: its subscription under `parent`. */
export function invoice(fields: Record<string, unknown> = {}, parties: Parties = {}) {
  return {
    id: 'in_1R2bC3dE4fG5hI6jKl',
    object: 'invoice',
    customer: parties.customer ?? CUSTOMER,
    customer_email: PERSON.email,
    customer_name: PERSON.name,
    customer_phone: PERSON.phone,
    customer_address: PERSON.address,
    status: 'open',
    billing_reason: 'subscription_cycle',
    amount_due: 999,
    amount_paid: 0,
    attempt_count: 1,
    attempted: true,
    currency: 'eur',
    metadata: {},
    next_payment_attempt: null,
    parent: {
      type: 'subscription_details',
      quote_details: null,
      subscription_details: { metadata: parties.metadata ?? { user_id: USER_ID }, subscription: parties.subscriptionId ?? SUB_ID },
    },
    lines: { object: 'list', data: [], has_more: false },
    ...fields,
  };
}

/** A customer object (`customer.created`, `customer.updated`): the person's details. */
export function stripeCustomer(parties: Parties = {}) {
  return {
    id: parties.customer ?? CUSTOMER,
    object: 'customer',
    email: PERSON.email,
    name: PERSON.name,
    phone: PERSON.phone,
    address: PERSON.address,
    metadata: parties.metadata ?? { user_id: USER_ID },
    invoice_settings: { default_payment_method: 'pm_1R2bC3dE4fG5hI6j' },
    livemode: false,
  };
}

/** A charge (`charge.succeeded`): billing details and the card that paid. */
export function charge(parties: Parties = {}) {
  return {
    id: 'ch_1R2bC3dE4fG5hI6jKl',
    object: 'charge',
    amount: 999,
    currency: 'eur',
    customer: parties.customer ?? CUSTOMER,
    receipt_email: PERSON.email,
    billing_details: { email: PERSON.email, name: PERSON.name, phone: PERSON.phone, address: PERSON.address },
    payment_method: 'pm_1R2bC3dE4fG5hI6j',
    payment_method_details: { type: 'card', card: { ...CARD, checks: { cvc_check: 'pass', address_line1_check: 'pass' } } },
    metadata: parties.metadata ?? { user_id: USER_ID },
    status: 'succeeded',
  };
}

let eventSeq = 0;

/** A Stripe event envelope around an object; `created` in seconds. */
export function stripeEvent(type: string, object: Record<string, unknown>, created = CREATED): StripeEvent & Record<string, unknown> {
  eventSeq += 1;
  return {
    id: `evt_1R2bC3dE4fG5hI${String(eventSeq).padStart(4, '0')}${Math.random().toString(36).slice(2, 8)}`,
    object: 'event',
    api_version: '2025-03-31.basil',
    type,
    created,
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    data: { object },
  };
}

/** A webhook body and the `Stripe-Signature` header Stripe would send with it. */
export function signed(event: unknown, secret: string, timestamp = Math.floor(Date.now() / 1000)): { body: string; signature: string } {
  const body = JSON.stringify(event);
  return { body, signature: Stripe.webhooks.generateTestHeaderString({ payload: body, secret, timestamp }) };
}
