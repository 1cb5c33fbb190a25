/**
 * Integration (real nats-server, the `npm start` process: runtime node + HTTP ingress, device
 * processes, real HTTP): Stripe webhooks signed as Stripe signs them reach devices as the right view.
 */
import { describe, expect, it } from 'vitest';
import {
  invoice,
  PRICE_BASIC,
  PRICE_PREMIUM,
  PRICE_TIERS,
  signed,
  stripeEvent,
  subscription,
} from '../support/stripe.ts';
import { CRISIS_FEATURES, event, registerDevices } from '../support/events.ts';
import { PERSON } from '../support/pii.ts';
import { waitFor } from '../support/processes.ts';
import { settled } from '../support/settle.ts';
import { useSystem } from '../support/system.ts';

const SECRET = 'whsec_test_current';
const OLD_SECRET = 'whsec_test_previous';
const system = useSystem(
  {
    STRIPE_WEBHOOK_SECRET: `${SECRET},${OLD_SECRET}`,
    STRIPE_PRICE_TIERS: Object.entries(PRICE_TIERS)
      .map(([price, tier]) => `${price}=${tier}`)
      .join(','),
    PORT: '0',
  },
  { script: 'scripts/start.ts' },
);

async function post(event: unknown, options: { secret?: string; timestamp?: number; tamper?: boolean } = {}) {
  const { body, signature } = signed(event, options.secret ?? SECRET, options.timestamp);
  const res = await fetch(`http://127.0.0.1:${system().runtime.httpPort}/webhooks/stripe`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'stripe-signature': signature },
    body: options.tamper ? body.replace('"active"', '"trialing"') : body,
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

let users = 0;
/** A user with one device process, and Stripe parties for it. */
async function customer() {
  const userId = `stripe-user-${++users}`;
  const parties = { subscriptionId: `sub_test${users}`, customer: `cus_test${users}`, metadata: { user_id: userId } };
  const devices = await system().devices(`${userId}:phone`, `${userId}:web`);
  await system().client.publish(...registerDevices(userId, ['phone', 'web']));
  for (const d of ['phone', 'web']) await devices.waitForView(`${userId}:${d}`, (v) => v.tier === 'trial', 'trial');
  const now = Math.floor(Date.now() / 1000);
  return { userId, parties, devices, at: (offset: number) => now + offset };
}

describe('Stripe webhooks reach the devices', () => {
  it('created, updated (plan change, past_due), invoice failed and succeeded, deleted: each as the right view', async () => {
    const { userId, parties, devices, at } = await customer();
    const both = (predicate: (v: { tier: string; status: string }) => boolean, what: string) =>
      Promise.all(['phone', 'web'].map((d) => devices.waitForView(`${userId}:${d}`, predicate, what)));

    const started = performance.now();
    expect((await post(stripeEvent('customer.subscription.created', subscription('active', [PRICE_PREMIUM], parties), at(1)))).status).toBe(200);
    await both((v) => v.tier === 'premium', 'premium');
    const webhookToDevices = performance.now() - started;
    console.log(`webhook → both devices applied: ${webhookToDevices.toFixed(1)} ms`);

    await post(stripeEvent('customer.subscription.updated', subscription('active', [PRICE_BASIC], parties), at(2)));
    await both((v) => v.tier === 'basic', 'basic after plan change');
    await post(stripeEvent('customer.subscription.updated', subscription('past_due', [PRICE_BASIC], parties), at(3)));
    await both((v) => v.tier === 'grace_period' && v.status === 'past_due', 'grace (past_due)');
    await post(stripeEvent('invoice.payment_succeeded', invoice({ status: 'paid', amount_paid: 999 }, parties), at(4)));
    await both((v) => v.tier === 'basic' && v.status === 'active', 'recovered');
    await post(stripeEvent('invoice.payment_failed', invoice({ attempt_count: 2 }, parties), at(5)));
    await both((v) => v.tier === 'grace_period', 'grace after a failed invoice');
    await post(stripeEvent('customer.subscription.deleted', subscription('canceled', [PRICE_BASIC], parties), at(6)));
    await both((v) => v.status === 'canceled', 'canceled');
  });

  it('a wrong secret, a tampered body, a six-minute-old timestamp: 400 and nothing published; both rotation secrets accepted', async () => {
    const { userId, parties, devices, at } = await customer();
    const created = () => stripeEvent('customer.subscription.created', subscription('active', [PRICE_PREMIUM], parties), at(1));
    const before = (await system().client.jsm.streams.info(system().client.topology.streams.normal)).state.messages;
    expect(await post(created(), { secret: 'whsec_wrong' })).toEqual({ status: 400, body: { error: 'bad_signature' } });
    expect(await post(created(), { tamper: true })).toEqual({ status: 400, body: { error: 'bad_signature' } });
    expect(await post(created(), { timestamp: Math.floor(Date.now() / 1000) - 360 })).toEqual({ status: 400, body: { error: 'stale_timestamp' } });
    expect((await system().client.jsm.streams.info(system().client.topology.streams.normal)).state.messages).toBe(before);

    expect((await post(created(), { secret: OLD_SECRET })).status).toBe(200);
    await devices.waitForView(`${userId}:phone`, (v) => v.tier === 'premium', 'premium via the previous secret');
    expect((await post(stripeEvent('customer.subscription.updated', subscription('active', [PRICE_BASIC], parties), at(2)))).status).toBe(200);
    await devices.waitForView(`${userId}:phone`, (v) => v.tier === 'basic', 'basic via the current secret');
  });

  it('the same event delivered three times: one transition; deleted before an older updated: the final state is right', async () => {
    const { userId, parties, devices, at } = await customer();
    const created = stripeEvent('customer.subscription.created', subscription('active', [PRICE_PREMIUM], parties), at(1));
    const answers = [await post(created), await post(created), await post(created)];
    expect(answers.map((a) => [a.status, a.body.duplicate])).toEqual([
      [200, false],
      [200, true],
      [200, true],
    ]);
    await devices.waitForView(`${userId}:phone`, (v) => v.tier === 'premium', 'premium');
    await post(stripeEvent('customer.subscription.deleted', subscription('canceled', [PRICE_PREMIUM], parties), at(10)));
    await devices.waitForView(`${userId}:phone`, (v) => v.status === 'canceled', 'canceled');
    // An `updated` made before the deletion arrives late: it is placed before it, and premium does not come back.
    const late = stripeEvent('customer.subscription.updated', subscription('active', [PRICE_PREMIUM], parties), at(5));
    expect((await post(late)).status).toBe(200);
    await settled(system().client, devices, `${userId}:phone`);
    expect((await system().client.userRecord(userId))?.state.recentEventIds).toContain(late.id);
    const audit = (await system().client.audit()).filter((a) => a.userId === userId);
    expect(audit.filter((a) => a.eventId === created.id)).toHaveLength(1);
    expect((await system().client.lastView(userId, 'phone'))!.status).toBe('canceled');
  });

  it('an unhandled type: 2xx, not published; an unknown user: 2xx and a dead letter without the body; an unknown price: 400', async () => {
    const { client } = system();
    const before = (await client.jsm.streams.info(client.topology.streams.normal)).state.messages;
    expect(await post(stripeEvent('customer.created', { id: 'cus_x', object: 'customer', email: 'a@b.c' }))).toMatchObject({ status: 200, body: { ignored: 'unhandled type customer.created' } });
    const orphan = stripeEvent('invoice.payment_failed', invoice({}, { customer: 'cus_nobody', metadata: {} }));
    expect(await post(orphan)).toMatchObject({ status: 200, body: { deadLetter: 'unknown_user' } });
    const letter = await waitFor(async () => (await client.deadLetters()).find((l) => l.detail.includes(orphan.id)), 'dead letter');
    expect(letter).toMatchObject({ reason: 'unknown_user', raw: null });
    expect(JSON.stringify(letter)).not.toContain(PERSON.email);
    expect(await post(stripeEvent('customer.subscription.created', subscription('active', ['price_unknown'])))).toMatchObject({ status: 400, body: { error: 'unknown_price' } });
    expect((await client.jsm.streams.info(client.topology.streams.normal)).state.messages).toBe(before);
    expect(system().runtime.lines.filter((l) => l.includes(PERSON.email) || l.includes(PERSON.name))).toEqual([]);
  });

  it('a customer linked by event is found when the metadata names no user', async () => {
    const { userId, devices, at } = await customer();
    await system().client.publish(event(userId, 'customer_linked', { customerId: 'cus_linked1' }));
    const parties = { subscriptionId: 'sub_linked1', customer: 'cus_linked1', metadata: {} };
    await waitFor(async () => {
      const res = await post(stripeEvent('customer.subscription.created', subscription('active', [PRICE_PREMIUM], parties), at(1)));
      return res.body.published === 'subscription_updated';
    }, 'the link to be known');
    await devices.waitForView(`${userId}:phone`, (v) => v.tier === 'premium', 'premium by customer link');
  });

  it('end to end: a webhook for a user in crisis never removes a crisis feature', async () => {
    const { userId, parties, devices, at } = await customer();
    await post(stripeEvent('customer.subscription.created', subscription('active', [PRICE_PREMIUM], parties), at(1)));
    await devices.waitForView(`${userId}:phone`, (v) => v.tier === 'premium', 'premium');
    await system().client.publish(event(userId, 'crisis_button', { deviceId: 'phone' }));
    await devices.waitForView(`${userId}:phone`, (v) => v.crisis, 'crisis');
    await post(stripeEvent('invoice.payment_failed', invoice({}, parties), at(2)));
    await post(stripeEvent('customer.subscription.deleted', subscription('canceled', [PRICE_PREMIUM], parties), at(3)));
    for (const d of ['phone', 'web']) {
      const v = await devices.waitForView(`${userId}:${d}`, (x) => x.status === 'canceled', 'canceled while in crisis');
      expect(v.crisis).toBe(true);
      expect(v.features).toEqual(expect.arrayContaining([...CRISIS_FEATURES, 'advanced_crisis_features']));
      expect(v.priority).toBe('CRISIS_EMERGENCY');
    }
  });
});

describe('NATS outage', () => {
  it('NATS stopped: 503; NATS back: the retried delivery lands once', async () => {
    const { userId, parties, devices, at } = await customer();
    const created = stripeEvent('customer.subscription.created', subscription('active', [PRICE_PREMIUM], parties), at(1));
    system().nats.kill('SIGSTOP');
    let outage: Awaited<ReturnType<typeof post>>;
    try {
      outage = await post(created);
    } finally {
      system().nats.kill('SIGCONT');
    }
    expect(outage).toEqual({ status: 503, body: { error: 'temporarily unavailable' } });
    // Stripe retries: the first attempt may or may not have been stored; either way it lands once.
    const retried = await waitFor(async () => {
      const res = await post(created);
      return res.status === 200 ? res : undefined;
    }, 'a 2xx once NATS is back', 30_000);
    expect(retried.body.published).toBe('subscription_updated');
    await devices.waitForView(`${userId}:phone`, (v) => v.tier === 'premium', 'premium after the outage', 30_000);
    await settled(system().client, devices, `${userId}:phone`);
    expect((await system().client.audit()).filter((a) => a.eventId === created.id)).toHaveLength(1);
    expect(devices.applied.get(`${userId}:phone`)!.filter((v) => v.tier === 'premium')).toHaveLength(1);
  });
});

describe('health and metrics', () => {
  it('/healthz reports NATS, the streams and the partitions this node holds; /metrics exposes runtime and ingress counters', async () => {
    const base = `http://127.0.0.1:${system().runtime.httpPort}`;
    const partitions = Array.from({ length: system().client.topology.options.partitions }, (_, p) => p);
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ nats: 'connected', streams: 'present', node: 'node-1', partitions });
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/^fm_webhooks_total\{outcome="published",node="node-1"\} [1-9]\d*$/m);
    expect(text).toMatch(/^fm_events_applied_total\{node="node-1"\} [1-9]\d*$/m);
    expect(text).toMatch(/^fm_crisis_latency_seconds_bucket\{le="0\.2",node="node-1"\} \d+$/m);
  });
});
