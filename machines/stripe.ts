/**
 * Stripe webhook events → domain events (DESIGN §4), as a pure function. Signature checks and the
 * customer→user lookup happen in the ingress. A subscription event becomes a snapshot of the
 * subscription (`subscription_updated`: status and tier as of its `created`), an invoice event a
 * payment outcome; the billing ledger (`billing.ts`) makes their order of arrival irrelevant.
 *
 * Shapes follow Stripe API 2025-03-31 and later: prices and periods live on subscription items;
 * an invoice names its subscription under `parent.subscription_details`.
 */
import type { BillingStatus } from './billing.ts';
import { EventId, NormalLaneEvent } from './events.ts';
import { PAID_TIERS, type PaidTier } from './features.ts';

/** The part of a Stripe event this mapping reads. */
export interface StripeEvent {
  id: string;
  type: string;
  /** Seconds since the epoch. */
  created: number;
  data: { object: Record<string, unknown> };
}

/** Configuration of the mapping. */
export interface StripeMappingOptions {
  /** Stripe price id → tier it buys. */
  priceTiers: Readonly<Record<string, PaidTier>>;
  /** The user of the event's customer, from the ingress's lookup, when the metadata names none. */
  customerUserId?: string | undefined;
}

/** The Stripe event types this mapping turns into domain events. */
export const HANDLED_STRIPE_TYPES = [
  'customer.subscription.created',
  'customer.subscription.updated',
  'customer.subscription.deleted',
  'invoice.payment_failed',
  'invoice.payment_succeeded',
  'invoice.paid',
] as const;

/** Why a Stripe event could not be mapped. */
export type StripeRejection = 'malformed' | 'unknown_user' | 'unknown_price';

/** The result of mapping a Stripe event. */
export type StripeMapping =
  | { kind: 'event'; event: NormalLaneEvent }
  /** An event type or status with no meaning for entitlements: acknowledged, not published. */
  | { kind: 'ignored'; reason: string }
  | { kind: 'rejected'; reason: StripeRejection; detail: string };

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);
const idOf = (v: unknown): string | undefined => str(v) ?? (isObj(v) ? str(v.id) : undefined);

const rejected = (reason: StripeRejection, detail: string): StripeMapping => ({ kind: 'rejected', reason, detail });

/** Maps one Stripe event to the domain event it means, or says why it maps to none. */
export function mapStripeEvent(stripeEvent: StripeEvent, options: StripeMappingOptions): StripeMapping {
  const { id, type, created } = stripeEvent;
  const object = stripeEvent.data?.object;
  // The id is our event id and its Nats-Msg-Id, also for an unknown user's dead letter: checked first.
  if (!EventId.safeParse(id).success || !Number.isInteger(created) || !isObj(object)) return rejected('malformed', 'id, created or data.object missing or malformed');
  if (!(HANDLED_STRIPE_TYPES as readonly string[]).includes(type)) return { kind: 'ignored', reason: `unhandled type ${type}` };

  const isInvoice = type.startsWith('invoice.');
  const subscriptionId = isInvoice ? invoiceSubscription(object) : str(object.id);
  if (!subscriptionId) {
    return isInvoice ? { kind: 'ignored', reason: 'invoice without subscription' } : rejected('malformed', 'subscription id missing');
  }
  const userId = userIdOf(object, isInvoice) ?? options.customerUserId;
  if (!userId) return rejected('unknown_user', `no user_id metadata and no mapping for customer ${customerIdOf(stripeEvent) ?? '?'}`);

  const base = { id, userId, at: created * 1000, subscriptionId };
  switch (type) {
    case 'invoice.payment_failed':
      return event({
        type: 'payment_failed',
        ...base,
        attemptCount: typeof object.attempt_count === 'number' ? object.attempt_count : 0,
        nextAttemptAt: typeof object.next_payment_attempt === 'number' ? object.next_payment_attempt * 1000 : null,
      });
    case 'invoice.payment_succeeded':
    case 'invoice.paid':
      return event({ type: 'payment_recovered', ...base });
  }

  const status = type === 'customer.subscription.deleted' ? 'canceled' : billingStatus(str(object.status));
  if (!status) return { kind: 'ignored', reason: `subscription status ${str(object.status) ?? '(none)'}` };
  const tier = subscriptionTier(object, options.priceTiers);
  if (typeof tier !== 'string' && status === 'active') {
    return rejected('unknown_price', `no tier for prices ${tier.prices.join(',') || '(none)'}`);
  }
  return event({ type: 'subscription_updated', ...base, status, tier: typeof tier === 'string' ? tier : null });
}

/**
 * What a Stripe subscription status means for access. `trialing` is a paid plan's Stripe trial:
 * access at its tier. `paused` is a trial that ended without a payment method: nothing is paid.
 * `incomplete` (first payment not made yet) means nothing so far.
 */
function billingStatus(status: string | undefined): BillingStatus | undefined {
  switch (status) {
    case 'active':
    case 'trialing':
      return 'active';
    case 'past_due':
    case 'unpaid':
      return 'past_due';
    case 'canceled':
    case 'incomplete_expired':
    case 'paused':
      return 'canceled';
    default:
      return undefined;
  }
}

/** The Stripe customer id a webhook's object names (an id, or an expanded customer), if any. */
export function customerIdOf(event: StripeEvent): string | undefined {
  return idOf(event.data?.object?.customer);
}

/** Validates the mapped event, so a user_id unfit for a subject is rejected here, not on the wire. */
function event(e: NormalLaneEvent): StripeMapping {
  const parsed = NormalLaneEvent.safeParse(e);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    return rejected('malformed', `${issue.path.join('.')}: ${issue.message}`);
  }
  return { kind: 'event', event: parsed.data };
}

function invoiceSubscription(invoice: Obj): string | undefined {
  const parent = isObj(invoice.parent) ? invoice.parent : undefined;
  const details = parent && isObj(parent.subscription_details) ? parent.subscription_details : undefined;
  // `invoice.subscription` is the pre-2025-03-31 location; still accepted for older endpoints.
  return idOf(details?.subscription) ?? idOf(invoice.subscription);
}

function userIdOf(object: Obj, isInvoice: boolean): string | undefined {
  const metadata = [object.metadata];
  if (isInvoice && isObj(object.parent) && isObj(object.parent.subscription_details)) {
    metadata.unshift(object.parent.subscription_details.metadata);
  }
  for (const m of metadata) {
    const userId = isObj(m) ? str(m.user_id) : undefined;
    if (userId) return userId;
  }
  return undefined;
}

/** The highest tier any of the subscription's item prices buys, or the prices when none is known. */
function subscriptionTier(subscription: Obj, priceTiers: StripeMappingOptions['priceTiers']): PaidTier | { prices: string[] } {
  const items = isObj(subscription.items) && Array.isArray(subscription.items.data) ? subscription.items.data : [];
  const prices = items.map((item) => (isObj(item) ? idOf(item.price) : undefined)).filter((p): p is string => !!p);
  const tiers = prices.map((p) => (Object.hasOwn(priceTiers, p) ? priceTiers[p] : undefined));
  for (const tier of [...PAID_TIERS].reverse()) if (tiers.includes(tier)) return tier;
  return { prices };
}
