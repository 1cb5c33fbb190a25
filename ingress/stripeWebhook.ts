/**
 * Stripe webhook verification with the official `stripe` package: the signature is checked on the
 * raw body against every configured secret (several during a rotation) with Stripe's 300 s tolerance,
 * on both sides of now: the package refuses an old timestamp only, and a signature made for a time
 * in the future would stay valid until long after it was captured.
 */
import Stripe from 'stripe';
import type { StripeEvent } from '../machines/stripe.ts';

/** Stripe's default and our limit for the distance of a signed timestamp from now, either way. */
export const STRIPE_TOLERANCE_S = 300;

/** Why a webhook was refused before mapping. */
export type WebhookRefusal = 'missing_signature' | 'bad_signature' | 'stale_timestamp' | 'future_timestamp' | 'malformed_json';

/** The outcome of verifying a webhook. */
export type Verified = { ok: true; event: StripeEvent } | { ok: false; reason: WebhookRefusal };

/** Parses `STRIPE_WEBHOOK_SECRET`: comma-separated, blanks ignored. */
export function parseSecrets(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Verifies a webhook's signature on its raw body against each secret in turn, at `now` (ms since epoch). */
export function verifyStripeWebhook(raw: Buffer, signature: string | undefined, secrets: readonly string[], now = Date.now()): Verified {
  if (!signature) return { ok: false, reason: 'missing_signature' };
  let reason: WebhookRefusal = 'bad_signature';
  for (const secret of secrets) {
    let event: StripeEvent;
    try {
      event = Stripe.webhooks.constructEvent(raw, signature, secret, STRIPE_TOLERANCE_S, undefined, now) as unknown as StripeEvent;
    } catch (err) {
      if (err instanceof SyntaxError) return { ok: false, reason: 'malformed_json' };
      // The timestamp check comes after a matching signature, so its message is specific.
      if (/tolerance/i.test((err as Error).message)) reason = 'stale_timestamp';
      continue;
    }
    // The signature matched, so its timestamp is the one Stripe signed.
    if (signedAt(signature) - Math.floor(now / 1000) > STRIPE_TOLERANCE_S) return { ok: false, reason: 'future_timestamp' };
    // JSON, but not an event: `null` would break whatever reads its fields (found by fuzzing).
    if (typeof event !== 'object' || event === null || Array.isArray(event)) return { ok: false, reason: 'malformed_json' };
    return { ok: true, event };
  }
  return { ok: false, reason };
}

/** The `t=` timestamp (seconds) of a `Stripe-Signature` header, read as the package reads it. */
function signedAt(signature: string): number {
  const t = signature.split(',').find((item) => item.split('=')[0] === 't');
  return Number.parseInt(t?.split('=')[1] ?? '', 10);
}
