/**
 * Stripe webhook verification with the official `stripe` package: the signature is checked on the
 * raw body against every configured secret (several during a rotation) with Stripe's 300 s tolerance.
 */
import Stripe from 'stripe';
import type { StripeEvent } from '../machines/stripe.ts';

/** Stripe's default and our limit for the age of a signed timestamp. */
export const STRIPE_TOLERANCE_S = 300;

/** Why a webhook was refused before mapping. */
export type WebhookRefusal = 'missing_signature' | 'bad_signature' | 'stale_timestamp' | 'malformed_json';

/** The outcome of verifying a webhook. */
export type Verified = { ok: true; event: StripeEvent } | { ok: false; reason: WebhookRefusal };

/** Parses `STRIPE_WEBHOOK_SECRET`: comma-separated, blanks ignored. */
export function parseSecrets(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Verifies a webhook's signature on its raw body against each secret in turn. */
export function verifyStripeWebhook(raw: Buffer, signature: string | undefined, secrets: readonly string[]): Verified {
  if (!signature) return { ok: false, reason: 'missing_signature' };
  let reason: WebhookRefusal = 'bad_signature';
  for (const secret of secrets) {
    try {
      return { ok: true, event: Stripe.webhooks.constructEvent(raw, signature, secret, STRIPE_TOLERANCE_S) as unknown as StripeEvent };
    } catch (err) {
      if (err instanceof SyntaxError) return { ok: false, reason: 'malformed_json' };
      // The timestamp check comes after a matching signature, so its message is specific.
      if (/tolerance/i.test((err as Error).message)) reason = 'stale_timestamp';
    }
  }
  return { ok: false, reason };
}
