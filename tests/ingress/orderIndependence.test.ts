/**
 * Payments in any order, end to end (DESIGN §4): generated Stripe lifecycles (the pure property in
 * tests/machines/billing.test.ts, smaller) are signed and POSTed to the `npm start` process, each
 * event 1–3 times in a shuffled order, many users at once; once the runtime committed everything,
 * every user's stored statechart state equals the pure fold of the same events in the order they
 * happened.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { mapStripeEvent, type StripeEvent } from '../../machines/stripe.ts';
import { applyEvent, createUserState } from '../../machines/userState.ts';
import { delivered, stripeEvents, type Delivered } from '../support/lifecycles.ts';
import { lanesSettled } from '../support/settle.ts';
import { PRICE_TIERS, signed } from '../support/stripe.ts';
import { useSystem } from '../support/system.ts';

const SECRET = 'whsec_test_order';
const USERS = 40;
const system = useSystem(
  {
    STRIPE_WEBHOOK_SECRET: SECRET,
    STRIPE_PRICE_TIERS: Object.entries(PRICE_TIERS)
      .map(([price, tier]) => `${price}=${tier}`)
      .join(','),
    PORT: '0',
  },
  { script: 'scripts/start.ts' },
);

async function post(event: StripeEvent): Promise<number> {
  const { body, signature } = signed(event, SECRET);
  const res = await fetch(`http://127.0.0.1:${system().runtime.httpPort}/webhooks/stripe`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'stripe-signature': signature },
    body,
  });
  await res.body?.cancel();
  return res.status;
}

/** The statechart state the pure fold reaches with these events in the order they happened. */
function inOrder(userId: string, events: readonly StripeEvent[]) {
  let state = createUserState(userId, 0);
  for (const e of events) {
    const mapping = mapStripeEvent(e, { priceTiers: PRICE_TIERS });
    if (mapping.kind !== 'event') throw new Error(`${e.type} did not map`);
    state = applyEvent(state, mapping.event).state;
  }
  return { value: state.snapshot.value, context: state.snapshot.context };
}

describe('payments in any order, through the ingress', () => {
  it(`${USERS} generated lifecycles, each event delivered 1–3 times shuffled, end where in-order delivery ends`, async () => {
    const { client } = system();
    const seed = Date.now();
    const tag = seed.toString(36);
    const start = Math.floor(Date.now() / 1000) - 3600;
    const users = fc.sample(delivered, { numRuns: USERS, seed }).map((d: Delivered, i) => {
      const userId = `order-${tag}-${i}`;
      return { userId, delivery: d, events: stripeEvents(d.steps, { userId, subscriptionPrefix: `sub_${tag}${i}`, start }) };
    });

    const statuses = await Promise.all(
      users.map(async ({ delivery, events }) => {
        const answers: number[] = [];
        for (const i of delivery.order) answers.push(await post(events[i]!));
        return answers;
      }),
    );
    expect(statuses.flat().filter((s) => s !== 200)).toEqual([]);
    await lanesSettled(client);

    const wrong: string[] = [];
    for (const { userId, delivery, events } of users) {
      const record = await client.userRecord(userId);
      const got = record && { value: record.state.value, context: record.state.context };
      try {
        expect(got).toEqual(inOrder(userId, events));
      } catch (err) {
        wrong.push(`${userId} (seed ${seed}): ${String(delivery)}\n${(err as Error).message}`);
      }
    }
    console.log(`order independence through the ingress: ${USERS} users, ${statuses.flat().length} webhooks, seed ${seed}`);
    expect(wrong).toEqual([]);
  });
});
