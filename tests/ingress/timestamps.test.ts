/**
 * Stripe signature timestamps: refused more than the tolerance away from now, in either direction;
 * the signature is checked first, so a forged header never learns which bound it crossed.
 */
import { describe, expect, it } from 'vitest';
import { STRIPE_TOLERANCE_S, verifyStripeWebhook } from '../../ingress/stripeWebhook.ts';
import { signed, stripeEvent, subscription } from '../support/stripe.ts';

const SECRET = 'whsec_timestamps';
const NOW_MS = 1_750_000_000_000;
const NOW_S = NOW_MS / 1000;
const event = stripeEvent('customer.subscription.created', subscription('active', []));

function verify(timestamp: number, secret = SECRET) {
  const { body, signature } = signed(event, secret, timestamp);
  return verifyStripeWebhook(Buffer.from(body), signature, [SECRET], NOW_MS);
}

describe('Stripe signature timestamps', () => {
  it.each([
    ['now', NOW_S],
    ['at the tolerance in the past', NOW_S - STRIPE_TOLERANCE_S],
    ['at the tolerance in the future', NOW_S + STRIPE_TOLERANCE_S],
  ])('accepts one signed %s', (_, timestamp) => {
    expect(verify(timestamp)).toMatchObject({ ok: true, event: { id: event.id } });
  });

  it.each([
    ['stale_timestamp', NOW_S - STRIPE_TOLERANCE_S - 1],
    ['future_timestamp', NOW_S + STRIPE_TOLERANCE_S + 1],
    ['future_timestamp', NOW_S + 86_400],
  ])('refuses %s (signed at %i)', (reason, timestamp) => {
    expect(verify(timestamp)).toEqual({ ok: false, reason });
  });

  it('refuses a future timestamp under a wrong secret as a bad signature', () => {
    expect(verify(NOW_S + 86_400, 'whsec_other')).toEqual({ ok: false, reason: 'bad_signature' });
  });
});
