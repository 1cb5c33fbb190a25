/**
 * Fuzzing the Stripe webhook (issue 13), on a real nats-server and the `npm start` process (node
 * and ingress): arbitrary bodies and headers (no or a garbage `Stripe-Signature`, another secret,
 * stale and future timestamps, a valid signature over text that is not JSON, over JSON that is not
 * an event, over events of a wrong shape; see `fuzz.ts`) POSTed with the lifecycles of a few users,
 * signed as Stripe signs, in between. Every bad request gets its typed refusal (never a 5xx), and
 * nothing of them is published; every valid webhook is published and applied.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_INGRESS_OPTIONS } from '../../ingress/server.ts';
import { badWebhook, FUZZ_SEED, interleave, signatureHeader, type FuzzWebhook } from '../support/fuzz.ts';
import { lanesSettled } from '../support/settle.ts';
import { invoice, PRICE_BASIC, PRICE_PREMIUM, PRICE_TIERS_ENV, stripeEvent, subscription } from '../support/stripe.ts';
import { useSystem } from '../support/system.ts';

/** Bad requests sent. */
const REQUESTS = 40_000;
/** Users whose Stripe lifecycles (5 webhooks each) go in between. */
const USERS = Array.from({ length: 5 }, (_, i) => `fuzz-stripe-${i}`);
/** The user the wrong-shape webhooks are about: none of them may reach it. */
const TARGET = 'fuzz-stripe-target';
/** Requests in flight at once. */
const WINDOW = 32;
const SECRET = 'whsec_fuzz_current';

const system = useSystem({ STRIPE_WEBHOOK_SECRET: SECRET, STRIPE_PRICE_TIERS: PRICE_TIERS_ENV, PORT: '0' }, { script: 'scripts/start.ts' });

/** A valid webhook: its Stripe event, its user and the event type the ingress publishes for it. */
interface Valid {
  user: string;
  event: ReturnType<typeof stripeEvent>;
  published: string;
}

/** A user's lifecycle: premium, basic, a failed and a paid invoice, premium again; `created` a second apart. */
function lifecycle(user: string, start: number): Valid[] {
  const parties = { subscriptionId: `sub_${user.replace(/\W/g, '')}`, customer: `cus_${user.replace(/\W/g, '')}`, metadata: { user_id: user } };
  return [
    { user, event: stripeEvent('customer.subscription.created', subscription('active', [PRICE_PREMIUM], parties), start + 1), published: 'subscription_updated' },
    { user, event: stripeEvent('customer.subscription.updated', subscription('active', [PRICE_BASIC], parties), start + 2), published: 'subscription_updated' },
    { user, event: stripeEvent('invoice.payment_failed', invoice({ attempt_count: 1 }, parties), start + 3), published: 'payment_failed' },
    { user, event: stripeEvent('invoice.payment_succeeded', invoice({ status: 'paid', amount_paid: 999 }, parties), start + 4), published: 'payment_recovered' },
    { user, event: stripeEvent('customer.subscription.updated', subscription('active', [PRICE_PREMIUM], parties), start + 5), published: 'subscription_updated' },
  ];
}

describe('webhook fuzzing', () => {
  it(`${REQUESTS.toLocaleString('en')} arbitrary requests, Stripe lifecycles in between: each its typed refusal, no 5xx, nothing of them published; every valid webhook applied`, { timeout: 300_000 }, async () => {
    const { client, runtime } = system();
    const url = `http://127.0.0.1:${runtime.httpPort}/webhooks/stripe`;
    const bad = fc.sample(badWebhook(SECRET, TARGET, DEFAULT_INGRESS_OPTIONS.maxBodyBytes), { numRuns: REQUESTS, seed: FUZZ_SEED });
    const start = Math.floor(Date.now() / 1000);
    const valid = USERS.flatMap((u) => lifecycle(u, start)).sort((a, b) => a.event.created - b.event.created);
    const stored = async () => {
      const [normal, dlq] = await Promise.all([client.topology.streams.normal, client.topology.streams.deadLetters].map((s) => client.jsm.streams.info(s)));
      return { events: normal!.state.messages, deadLetters: dlq!.state.messages };
    };
    const before = await stored();

    const post = async (w: Pick<FuzzWebhook, 'body' | 'signature' | 'headers'>) => {
      const signature = signatureHeader(w.signature, w.body);
      const res = await fetch(url, { method: 'POST', headers: { ...w.headers, ...(signature !== undefined && { 'stripe-signature': signature }) }, body: w.body });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const postValid = (v: Valid) => post({ body: JSON.stringify(v.event), signature: { kind: 'signed', secret: SECRET, offsetS: 0 }, headers: { 'content-type': 'application/json' } });
    const wrong: Array<{ kind: string; body: string; expected: FuzzWebhook['expected']; got: unknown }> = [];
    const send = async (w: FuzzWebhook) => {
      const got = await post(w);
      if (got.status !== w.expected.status || JSON.stringify(got.body) !== JSON.stringify(w.expected.body)) {
        wrong.push({ kind: w.kind, body: typeof w.body === 'string' ? w.body.slice(0, 300) : `${w.body.byteLength} bytes`, expected: w.expected, got });
      }
    };

    const answers: Array<Awaited<ReturnType<typeof post>>> = [];
    const started = performance.now();
    await interleave(bad, valid, WINDOW, { bad: send, valid: async (v) => answers.push(await postValid(v)) });
    const sent = performance.now();
    await lanesSettled(client);
    const settled = performance.now();
    const kinds = Object.groupBy(bad, (w) => `${w.kind}: ${w.expected.status} ${JSON.stringify(w.expected.body)}`);
    console.log(
      `webhook fuzzing: ${bad.length} bad requests and ${valid.length} valid webhooks sent in ${((sent - started) / 1000).toFixed(1)} s, ` +
        `settled ${((settled - sent) / 1000).toFixed(1)} s later; bad requests by kind and answer:`,
      Object.fromEntries(Object.entries(kinds).map(([k, v]) => [k, v!.length]).sort()),
    );

    // Every bad request got exactly its answer: a typed 4xx refusal (or, for an unknown customer, 2xx and a dead letter).
    expect({ wrong: wrong.length, first: wrong.slice(0, 10) }).toEqual({ wrong: 0, first: [] });
    expect(runtime.running).toBe(true);
    expect((await fetch(`http://127.0.0.1:${runtime.httpPort}/healthz`)).status).toBe(200);

    // Every valid webhook published and applied; nothing else published; one dead letter per unknown customer.
    expect(answers).toEqual(valid.map((v) => ({ status: 200, body: { received: true, published: v.published, duplicate: false } })));
    const unknownIds = new Set(bad.filter((w) => w.expected.status === 200).map((w) => (JSON.parse(w.body as string) as { id: string }).id));
    expect(await stored()).toEqual({ events: before.events + valid.length, deadLetters: before.deadLetters + unknownIds.size });
    for (const u of USERS) {
      const record = await client.userRecord(u);
      expect(record?.state.recentEventIds, u).toEqual(expect.arrayContaining(valid.filter((v) => v.user === u).map((v) => v.event.id)));
      expect(await client.lastView(u), u).toMatchObject({ tier: 'premium', status: 'active' });
    }
    expect(await client.userRecord(TARGET)).toBeNull();
  });
});
