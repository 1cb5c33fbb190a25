/**
 * Browser test of the clinician viewer: headless Chromium (Debian's, driven by playwright-core)
 * against the real `npm start` process (runtime node + ingress + viewer) on a private nats-server,
 * with a scripted user history. Saves a screenshot to test-results/viewer.png.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UserEvent } from '../../machines/events.ts';
import { userMachine } from '../../machines/userMachine.ts';
import { statechartGraph } from '../../viewer/statechart.ts';
import { launchChromium } from '../support/browser.ts';
import { event, registerDevices } from '../support/events.ts';
import { EMERGENCY_CONTACTS, SAFETY_PLAN } from '../support/pii.ts';
import { waitFor } from '../support/processes.ts';
import { useSystem } from '../support/system.ts';

const TOKEN = `clinician-${randomUUID()}`;
const system = useSystem({ CLINICIAN_TOKEN: TOKEN, PORT: '0' }, { script: 'scripts/start.ts' });
const SCREENSHOT = 'test-results/viewer.png';

// Personal content the user's devices hold: it must never reach the viewer.
const PLAN_TEXT = SAFETY_PLAN.copingStrategies[0]!;
const { name: CONTACT_NAME, phone: CONTACT_PHONE } = EMERGENCY_CONTACTS[1]!;

let browser: Browser;
beforeAll(async () => {
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
});

const base = () => `http://127.0.0.1:${system().runtime.httpPort}`;
const userId = `viewer-${randomUUID().slice(0, 8)}`;
const sub = { subscriptionId: 'sub_viewer1' };

/**
 * The scripted history, one event at a time (the runtime drains the crisis lane first, so events
 * published together would not be applied in publication order). Returns the event types of the
 * audit records it leaves: events that change no state (devices, safety content) leave none.
 */
async function scriptHistory(): Promise<string[]> {
  const { client } = system();
  const recorded: string[] = [];
  const step = async (e: UserEvent, audited: boolean) => {
    await client.publish(e);
    if (!audited) return;
    recorded.push(e.type);
    await waitFor(async () => (await auditOf()).length === recorded.length, `the audit record of ${e.type}`);
  };
  for (const e of registerDevices(userId, ['phone', 'web'])) await step(e, false);
  await step(event(userId, 'subscription_activated', { ...sub, tier: 'premium' }), true);
  await step(
    event(userId, 'safety_plan_updated', {
      plan: { warningSigns: [PLAN_TEXT], copingStrategies: [], distractions: [], peopleToAsk: [], professionals: [], safeEnvironment: [] },
    }),
    false,
  );
  await step(event(userId, 'emergency_contacts_updated', { contacts: [{ name: CONTACT_NAME, phone: CONTACT_PHONE }] }), false);
  await step(event(userId, 'plan_changed', { ...sub, tier: 'basic' }), true);
  await step(event(userId, 'payment_failed', { ...sub, attemptCount: 1, nextAttemptAt: null }), true);
  await step(event(userId, 'crisis_button', { deviceId: 'phone' }), true);
  await step(event(userId, 'crisis_detected', { source: 'clinician', level: 'critical' }), true);
  await step(event(userId, 'payment_recovered', sub), true);
  await step(event(userId, 'crisis_resolved', { by: 'clinician' }), true);
  return recorded;
}

/** Polls until the assertion holds (the page renders asynchronously). */
const poll = <T>(read: () => Promise<T> | T) => expect.poll(read, { timeout: 15_000, interval: 50 });
const auditOf = async () => (await system().client.audit()).filter((a) => a.userId === userId);
const currentStates = (page: Page) => page.$$eval('#chart [data-state-id].current', (gs) => gs.map((g) => g.getAttribute('data-state-id')).sort());
const timelineTypes = (page: Page) => page.$$eval('#timeline tbody tr', (rows) => rows.map((r) => r.getAttribute('data-event-type')));

describe('clinician viewer in a browser', () => {
  it('shows the whole statechart, the user’s current states, devices, timeline and crisis episode, and follows live', async () => {
    const expectedTypes = await scriptHistory();
    expect(expectedTypes).toEqual(['subscription_activated', 'plan_changed', 'payment_failed', 'crisis_button', 'crisis_detected', 'payment_recovered', 'crisis_resolved']);
    // The last view settles (basic views are coalesced for a moment).
    for (const d of ['phone', 'web']) {
      await waitFor(async () => {
        const v = await system().client.lastView(userId, d);
        return v?.tier === 'basic' && !v.crisis.active;
      }, `${d}'s final view`);
    }

    const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
    const page = await context.newPage();

    // No session yet: 401 and the token form; the token typed into it opens the viewer.
    const refused = await page.goto(`${base()}/viewer`);
    expect(refused!.status()).toBe(401);
    expect(await page.locator('#chart').count()).toBe(0);
    await page.getByLabel('Clinician token').fill(TOKEN);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${base()}/viewer`);
    await page.locator('#chart svg').waitFor();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (m) => m.type() === 'error' && pageErrors.push(m.text()));

    // Keyboard: the picker has the focus; type the opaque id and press Enter.
    expect(await page.evaluate('document.activeElement && document.activeElement.id')).toBe('user-id');
    await page.keyboard.type(userId);
    await page.keyboard.press('Enter');
    await page.locator('#live[data-state="live"]').waitFor();

    // Every state and every transition of the machine is drawn.
    const graph = statechartGraph(userMachine);
    const drawnStates = await page.$$eval('#chart [data-state-id]', (gs) => gs.map((g) => g.getAttribute('data-state-id')));
    expect(drawnStates.sort()).toEqual(graph.states.map((s) => s.id).sort());
    const drawnTransitions = await page.$$eval('#chart [data-transition]', (ts) => ts.map((t) => t.getAttribute('data-transition')));
    expect(drawnTransitions.sort()).toEqual(graph.transitions.map((t) => t.key).sort());
    for (const s of graph.states) await poll(() => page.locator(`[data-state-id="${s.id}"] .state-title`).textContent()).toContain(s.key);

    // Current states in both regions.
    await poll(() => currentStates(page)).toEqual(['user.crisis.stable', 'user.subscription.basic']);
    expect(await page.locator('#summary').textContent()).toMatch(/Subscription: basic.*Crisis: stable/);

    // The timeline, in stream order, as the audit stream has it.
    await poll(() => timelineTypes(page)).toEqual(expectedTypes);
    const audit = await auditOf();
    expect(audit.map((a) => a.eventType)).toEqual(expectedTypes);
    const rows = page.locator('#timeline tbody tr');
    expect(await rows.nth(2).locator('td').nth(3).textContent()).toBe('basic → grace_period');
    expect(await rows.nth(3).locator('td').nth(4).textContent()).toContain('stable → active');
    const seqs = await page.$$eval('#timeline tbody tr', (rs) => rs.map((r) => Number(r.getAttribute('data-seq'))));
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));

    // The crisis episode: from the button to the clinician's resolution, marked on those rows.
    expect(await page.locator('#episodes li').allTextContents()).toEqual([expect.stringMatching(/^Crisis episode 1: started .*crisis_button.*resolved .*crisis_resolved.*highest level critical/)]);
    expect(await page.$$eval('#timeline tbody tr.in-crisis', (rs) => rs.map((r) => r.getAttribute('data-event-type')))).toEqual([
      'crisis_button',
      'crisis_detected',
      'payment_recovered',
      'crisis_resolved',
    ]);

    // The view each device holds.
    for (const d of ['phone', 'web']) {
      const held = (await system().client.lastView(userId, d))!;
      const row = page.locator(`#devices tr[data-device-id="${d}"]`);
      await poll(() => row.getAttribute('data-version')).toBe(String(held.version));
      expect(await row.locator('td').nth(1).textContent()).toBe('basic');
      expect(await row.locator('td').nth(3).textContent()).toBe('off');
      expect(await row.locator('td').nth(4).textContent()).toContain('mood_tracking');
    }

    // Live: a clinician declares a new crisis; the page follows without a reload.
    await system().client.publish(event(userId, 'crisis_detected', { source: 'clinician', level: 'high' }));
    await poll(() => currentStates(page)).toEqual(['user.crisis.active', 'user.subscription.basic']);
    await poll(() => timelineTypes(page)).toEqual([...expectedTypes, 'crisis_detected']);
    await poll(() => page.locator('#episodes li').count()).toBe(2);
    expect(await page.locator('#episodes li').nth(1).textContent()).toMatch(/Crisis episode 2: started .*crisis_detected.*ongoing.*highest level high/);
    for (const d of ['phone', 'web']) {
      await poll(() => page.locator(`#devices tr[data-device-id="${d}"] td`).nth(3).textContent()).toBe('ON (high)');
    }
    expect(await page.locator('#summary').textContent()).toMatch(/Crisis: active \(level high/);

    // No personal content anywhere on the page.
    const html = await page.content();
    for (const secret of [PLAN_TEXT, CONTACT_NAME, CONTACT_PHONE]) expect(html).not.toContain(secret);
    expect(pageErrors).toEqual([]);

    mkdirSync('test-results', { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    await context.close();
  });
});
