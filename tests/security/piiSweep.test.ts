/**
 * The PII sweep of one whole system (issue 13): the `npm start` process (runtime node, ingress,
 * clinician viewer) and a device process are fed the fixtures' personal data through every door
 * (Stripe webhooks with the customer's e-mail, name, address and card, assessments, the safety plan
 * and emergency contacts, and bad events carrying all of it), then no log line, audit record, dead
 * letter, metric, ingress answer or viewer response may hold any of it. The user's own devices
 * do get the safety plan and contacts (that is the product): the positive control that the needles
 * match the data as it travels. `scripts/piiSweep.ts` sweeps every process's log of the whole suite
 * afterwards.
 */
import { randomUUID } from 'node:crypto';
import { decode as unpack, encode as pack } from '@msgpack/msgpack';
import { beforeAll, describe, expect, it } from 'vitest';
import { FullmindPublisher } from '../../clients/publisher.ts';
import type { UserEventType } from '../../machines/events.ts';
import type { DeadLetter } from '../../transport/schemas.ts';
import { event, registerDevices } from '../support/events.ts';
import { ANSWERS, EMERGENCY_CONTACTS, NEEDLES, needlesIn, PERSON, SAFETY_PLAN } from '../support/pii.ts';
import { waitFor, type DeviceProcess } from '../support/processes.ts';
import { settled } from '../support/settle.ts';
import { charge, invoice, PRICE_PREMIUM, PRICE_TIERS, signed, stripeCustomer, stripeEvent, subscription } from '../support/stripe.ts';
import { useSystem } from '../support/system.ts';

const SECRET = 'whsec_pii_sweep';
const TOKEN = `clinician-${randomUUID()}`;
const system = useSystem(
  {
    STRIPE_WEBHOOK_SECRET: SECRET,
    STRIPE_PRICE_TIERS: Object.entries(PRICE_TIERS)
      .map(([price, tier]) => `${price}=${tier}`)
      .join(','),
    CLINICIAN_TOKEN: TOKEN,
    PORT: '0',
  },
  { script: 'scripts/start.ts' },
);
const base = () => `http://127.0.0.1:${system().runtime.httpPort}`;
const bearer = { authorization: `Bearer ${TOKEN}` };

// Ids carry no marker: they are logged, legitimately.
const USER = `sweep-${randomUUID().slice(0, 8)}`;
const DEVICE = `${USER}:phone`;
const parties = { subscriptionId: 'sub_sweep1', customer: 'cus_sweep1', metadata: { user_id: USER } };

/** Every response body the system gave the test, by where it came from. */
const responses: Array<{ source: string; text: string }> = [];
let devices: DeviceProcess;

async function webhook(body: string, signature: string): Promise<number> {
  const res = await fetch(`${base()}/webhooks/stripe`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'stripe-signature': signature },
    body,
  });
  responses.push({ source: `POST /webhooks/stripe (${res.status})`, text: await res.text() });
  return res.status;
}

/** Posts a Stripe event signed with `secret`; returns the status. */
function post(stripe: unknown, secret = SECRET): Promise<number> {
  const { body, signature } = signed(stripe, secret);
  return webhook(body, signature);
}

/** A message published as is (bad input), on the subject of `type` for the sweep's user. */
function publishRaw(type: UserEventType, body: Uint8Array): Promise<void> {
  const { client } = system();
  return client.publishRaw(client.topology.subjects.event(USER, type), body);
}

/** Everything a dead letter holds, as text: its fields, its bytes, and those bytes decoded when they are msgpack. */
function deadLetterText(letter: DeadLetter): string {
  const { raw, ...fields } = letter;
  if (!raw) return JSON.stringify(fields);
  let decoded = '';
  try {
    decoded = JSON.stringify(unpack(raw));
  } catch {
    // Not msgpack: its bytes as they are.
  }
  return [JSON.stringify(fields), Buffer.from(raw).toString('latin1'), decoded].join('\n');
}

/** An SSE feed read until `done` holds for what arrived, then closed; returns all of it. */
async function readFeed(path: string, done: (text: string) => boolean): Promise<string> {
  const abort = new AbortController();
  const res = await fetch(base() + path, { headers: bearer, signal: abort.signal });
  let text = '';
  const reading = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) text += decoder.decode(chunk, { stream: true });
    } catch {
      // aborted
    }
  })();
  try {
    await waitFor(() => done(text), `${path} to report`);
  } finally {
    abort.abort();
    await reading;
  }
  return text;
}

/** Labels of the needles found per source (only sources with a hit). */
function hits(sources: Array<{ source: string; text: string }>): Record<string, string[]> {
  return Object.fromEntries(sources.flatMap(({ source, text }) => {
    const found = needlesIn(text);
    return found.length ? [[source, found]] : [];
  }));
}

beforeAll(async () => {
  const { client } = system();
  devices = await system().devices(DEVICE);
  await client.publish(...registerDevices(USER, ['phone']), event(USER, 'customer_linked', { customerId: parties.customer }));
  await devices.waitForView(DEVICE, (v) => v.tier === 'trial', 'trial');

  // Stripe: the customer, the subscription, a card payment, invoices; each body full of the person.
  const now = Math.floor(Date.now() / 1000);
  expect(await post(stripeEvent('customer.created', stripeCustomer(parties), now))).toBe(200);
  expect(await post(stripeEvent('customer.subscription.created', subscription('active', [PRICE_PREMIUM], parties), now + 1))).toBe(200);
  expect(await post(stripeEvent('charge.succeeded', charge(parties), now + 2))).toBe(200);
  expect(await post(stripeEvent('invoice.payment_failed', invoice({}, parties), now + 3))).toBe(200);
  expect(await post(stripeEvent('invoice.paid', invoice({ status: 'paid', amount_paid: 999 }, parties), now + 4))).toBe(200);
  // No user to be found: a dead letter. A wrong secret, and a body that is not JSON: refused.
  expect(await post(stripeEvent('invoice.payment_failed', invoice({}, { customer: 'cus_sweepNobody', metadata: {} }), now + 5))).toBe(200);
  expect(await post(stripeEvent('charge.succeeded', charge(parties), now + 6), 'whsec_not_ours')).toBe(400);
  const notJson = signed(charge(parties), SECRET);
  expect(await webhook(`${notJson.body}}`, signed(`${notJson.body}}`, SECRET).signature)).toBe(400);

  // The app and the assessment service.
  await client.publish(event(USER, 'safety_plan_updated', { plan: SAFETY_PLAN }), event(USER, 'emergency_contacts_updated', { contacts: EMERGENCY_CONTACTS }));
  const assessments = new FullmindPublisher(client.nc);
  expect((await assessments.assessmentCompleted({ userId: USER, instrument: 'phq9', answers: [...ANSWERS.phq9] })).crisis).toBe(true);
  await assessments.assessmentCompleted({ userId: USER, instrument: 'gad7', answers: [...ANSWERS.gad7] });

  // Bad events carrying it all: each a dead letter.
  await publishRaw('safety_plan_updated', pack({ ...event(USER, 'safety_plan_updated', { plan: SAFETY_PLAN }), plan: { ...SAFETY_PLAN, extra: ['x'] } }));
  await publishRaw('assessment_completed', pack({ ...event(USER, 'assessment_completed', { instrument: 'phq9', answers: [...ANSWERS.phq9] }), answers: [...ANSWERS.phq9, 1] }));
  await publishRaw('plan_changed', pack(event(USER, 'emergency_contacts_updated', { contacts: EMERGENCY_CONTACTS })));
  await publishRaw('device_registered', pack({ ...event(USER, 'device_registered', { deviceId: 'tablet', platform: 'ios' }), platform: 'tizen', email: PERSON.email, owner: PERSON.name }));
  await publishRaw('payment_failed', new TextEncoder().encode(JSON.stringify({ ...event(USER, 'safety_plan_updated', { plan: SAFETY_PLAN }) })));

  await settled(client, devices, DEVICE);
  await devices.waitForView(DEVICE, (v) => v.crisis && v.safetyPlan && v.contacts === EMERGENCY_CONTACTS.length, 'crisis with the safety content');
  await settled(client, devices, DEVICE);
});

describe('the needles match the data as it travels (positive controls)', () => {
  it('the user\'s own device view holds the safety plan and contacts; a Stripe body holds the person and the card', async () => {
    const view = await system().client.lastView(USER, 'phone');
    const safety = NEEDLES.filter((n) => /safety plan|emergency contact|marker/.test(n.label)).map((n) => n.label);
    expect(needlesIn(JSON.stringify(view?.safety)).sort()).toEqual(safety.sort());
    const stripe = needlesIn(signed(stripeEvent('charge.succeeded', charge(parties)), SECRET).body);
    expect(stripe).toEqual(expect.arrayContaining(['customer e-mail', 'customer name', 'customer phone', 'customer address', 'card fingerprint', 'card last4']));
    expect(needlesIn(JSON.stringify({ answers: ANSWERS }))).toEqual(['PHQ-9 answers', 'GAD-7 answers']);
    // Every bad event was dead-lettered (the unknown Stripe user's too), so the sweep below reads them.
    const letters = await system().client.deadLetters();
    expect(letters.map((l) => l.reason).sort()).toEqual(['invalid', 'invalid', 'invalid', 'invalid', 'malformed', 'unknown_user']);
  });
});

describe('no PII leaves through', () => {
  it('audit records and dead letters', async () => {
    const { client } = system();
    const audit = await client.audit();
    expect(audit.some((a) => a.userId === USER && a.to.crisis === 'active')).toBe(true);
    const letters = await client.deadLetters();
    expect(
      hits([
        ...audit.map((a, i) => ({ source: `audit record ${i} (${a.eventType})`, text: JSON.stringify(a) })),
        ...letters.map((l) => ({ source: `dead letter ${l.reason} on ${l.subject}`, text: deadLetterText(l) })),
      ]),
    ).toEqual({});
  });

  it('metrics: /metrics and the control subject', async () => {
    const scrape = await (await fetch(`${base()}/metrics`)).text();
    expect(scrape).toContain('fm_dead_letters_total');
    const control = await system().client.metrics();
    expect(hits([{ source: '/metrics', text: scrape }, { source: 'fm.ctl.metrics', text: JSON.stringify(control) }])).toEqual({});
  });

  it('the ingress\'s and the clinician viewer\'s responses', async () => {
    const get = async (path: string) => {
      const res = await fetch(base() + path, { headers: bearer });
      expect({ path, status: res.status }).toEqual({ path, status: 200 });
      return { source: `GET ${path}`, text: await res.text() };
    };
    const viewed = [
      await get(`/viewer/api/users/${USER}`),
      await get(`/viewer/api/users/${USER}/audit`),
      await get('/viewer'),
      await get('/healthz'),
    ];
    expect(viewed[0]!.text).toContain('"crisis"');
    const feed = await readFeed(`/viewer/api/users/${USER}/events`, (t) => ['user', 'view', 'audit'].every((e) => t.includes(`event: ${e}\n`)));
    expect(hits([...responses, ...viewed, { source: `GET /viewer/api/users/${USER}/events`, text: feed }])).toEqual({});
  });

  it('log lines of the node, the ingress and the device process', () => {
    const { runtime } = system();
    expect(runtime.logs.some((l) => l.msg === 'dead letter')).toBe(true);
    expect(hits([...runtime.lines, ...devices.lines].map((text, i) => ({ source: `log line ${i}`, text })))).toEqual({});
  });
});
