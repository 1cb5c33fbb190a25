/**
 * The clinician viewer over HTTP, against the real `npm start` process: 401 without the clinician
 * token on every route, the session cookie, the read-only API (no safety plan, no contacts), the
 * live feed; and a viewer with no token configured, which refuses everything.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import type { AnyStateMachine } from 'xstate';
import { userMachine } from '../../machines/userMachine.ts';
import type { Timeline } from '../../viewer/data.ts';
import type { HttpRoutes } from '../../ingress/http.ts';
import { createViewer } from '../../viewer/routes.ts';
import { event, registerDevices } from '../support/events.ts';
import { EMERGENCY_CONTACTS, SAFETY_PLAN } from '../support/pii.ts';
import { waitFor } from '../support/processes.ts';
import { useSystem } from '../support/system.ts';
import { machineWithPausedState } from './machines.ts';
import { partitionOf } from '../../actors/partitions.ts';

const TOKEN = `clinician-${randomUUID()}`;
const system = useSystem({ CLINICIAN_TOKEN: TOKEN, PORT: '0' }, { script: 'scripts/start.ts' });
const base = () => `http://127.0.0.1:${system().runtime.httpPort}`;
const bearer = { authorization: `Bearer ${TOKEN}` };

const PLAN_TEXT = SAFETY_PLAN.warningSigns[0]!;
const CONTACT = EMERGENCY_CONTACTS[0]!;

/** A user with two devices, premium, safety content, and one crisis. */
async function userWithHistory(): Promise<string> {
  const userId = `http-${randomUUID().slice(0, 8)}`;
  const { client } = system();
  await client.publish(
    ...registerDevices(userId, ['phone', 'web']),
    event(userId, 'subscription_activated', { subscriptionId: 'sub_http', tier: 'premium' }),
    event(userId, 'safety_plan_updated', {
      plan: { warningSigns: [PLAN_TEXT], copingStrategies: [], distractions: [], peopleToAsk: [], professionals: [], safeEnvironment: [] },
    }),
    event(userId, 'emergency_contacts_updated', { contacts: [CONTACT] }),
  );
  await waitFor(async () => (await client.lastView(userId, 'web'))?.safety.contacts.length === 1, 'safety content on the devices');
  await client.publish(event(userId, 'crisis_button', { deviceId: 'phone' }));
  await waitFor(async () => (await client.lastView(userId, 'web'))?.crisis.active, 'crisis view');
  return userId;
}

describe('clinician token', () => {
  it('401 without it on every viewer route; /healthz and 404s unchanged', async () => {
    const userId = await userWithHistory();
    const routes = [
      '/viewer',
      '/viewer/',
      '/viewer/page.js',
      '/viewer/page.css',
      '/viewer/statechart.css',
      '/viewer/statechart.svg',
      `/viewer/api/users/${userId}`,
      `/viewer/api/users/${userId}/audit`,
      `/viewer/api/users/${userId}/events`,
      '/viewer/nothing-here',
    ];
    for (const path of routes) {
      for (const headers of [{}, { authorization: 'Bearer wrong-token' }, { authorization: `Bearer ${TOKEN}x` }, { cookie: 'fm_viewer_session=1.forged' }]) {
        const res = await fetch(base() + path, { headers, redirect: 'manual' });
        const body = await res.text();
        expect({ path, headers, status: res.status }).toEqual({ path, headers, status: 401 });
        expect(body).not.toContain(userId);
      }
    }
    expect((await fetch(`${base()}/viewer?token=wrong`, { redirect: 'manual' })).status).toBe(401);
    expect((await fetch(`${base()}/viewer/session`, { method: 'POST', body: new URLSearchParams({ token: 'wrong' }), redirect: 'manual' })).status).toBe(401);
    // The ingress's own routes are untouched.
    expect((await fetch(`${base()}/healthz`)).status).toBe(200);
    expect((await fetch(`${base()}/elsewhere`)).status).toBe(404);
  });

  it('?token= once sets an HttpOnly session cookie (not the token) and redirects; the cookie then opens everything', async () => {
    const res = await fetch(`${base()}/viewer?token=${encodeURIComponent(TOKEN)}`, { redirect: 'manual' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe('/viewer');
    const setCookie = res.headers.get('set-cookie')!;
    expect(setCookie).toMatch(/^fm_viewer_session=\d+\.[\w-]+; Path=\/viewer; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
    expect(setCookie).not.toContain(TOKEN);
    const cookie = setCookie.split(';')[0]!;
    const page = await fetch(`${base()}/viewer`, { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await page.text();
    expect(html).toContain('data-state-id="user.subscription.grace_period"');
    expect(html).not.toMatch(/<script[^>]*src="(?!\/viewer\/)/); // every script is ours
    // Nothing loaded from elsewhere: the only absolute URL is the SVG namespace.
    expect(new Set(html.match(/https?:\/\/[^"' )]+/g))).toEqual(new Set(['http://www.w3.org/2000/svg']));
    for (const path of ['/viewer/page.js', '/viewer/page.css', '/viewer/statechart.css', '/viewer/statechart.svg']) {
      expect((await fetch(base() + path, { headers: { cookie } })).status).toBe(200);
    }
    // The form does the same.
    const form = await fetch(`${base()}/viewer/session`, { method: 'POST', body: new URLSearchParams({ token: TOKEN }), redirect: 'manual' });
    expect(form.status).toBe(303);
    expect(form.headers.get('set-cookie')).toMatch(/^fm_viewer_session=/);
    // Read-only.
    expect((await fetch(`${base()}/viewer/api/users/someone`, { method: 'DELETE', headers: bearer })).status).toBe(405);
  });
});

describe('read-only API', () => {
  it('a user: state ids for the drawing, each device’s view; never the safety plan or the contacts', async () => {
    const userId = await userWithHistory();
    const res = await fetch(`${base()}/viewer/api/users/${userId}`, { headers: bearer });
    expect(res.status).toBe(200);
    const text = await res.text();
    const { user, devices } = JSON.parse(text);
    expect(user).toMatchObject({
      userId,
      value: { subscription: 'premium', crisis: 'active' },
      crisis: { level: 'high', source: 'button' },
      devices: ['phone', 'web'],
    });
    expect(user.activeStateIds).toEqual(['user', 'user.subscription', 'user.subscription.premium', 'user.crisis', 'user.crisis.active']);
    // Which node serves the user: the claim on its partition.
    expect(user.servedBy).toMatchObject({ partition: partitionOf(userId, system().client.topology.options.partitions), nodeId: 'node-1' });
    const views = await Promise.all(['phone', 'web'].map((d) => system().client.lastView(userId, d)));
    expect(devices.map((d: { deviceId: string; version: number }) => [d.deviceId, d.version])).toEqual(['phone', 'web'].map((d, i) => [d, views[i]!.version]));
    expect(devices[0]).toMatchObject({ tier: 'premium', crisis: { active: true, level: 'high' } });
    expect(Object.keys(devices[0]).sort()).toEqual(['crisis', 'deviceId', 'features', 'gracePeriod', 'issuedAt', 'status', 'sync', 'tier', 'version']);
    for (const secret of [PLAN_TEXT, CONTACT.name, CONTACT.phone, '"safety"', '"contacts"', 'sub_http']) expect(text).not.toContain(secret);

    const audit = (await (await fetch(`${base()}/viewer/api/users/${userId}/audit`, { headers: bearer })).json()) as Timeline;
    expect(audit.entries.map((e) => e.eventType)).toEqual(['subscription_activated', 'crisis_button']);
    expect(audit.lastSeq).toBe(audit.entries[1]!.seq);
    expect(JSON.stringify(audit)).not.toContain(PLAN_TEXT);

    expect((await fetch(`${base()}/viewer/api/users/nobody-${randomUUID().slice(0, 8)}`, { headers: bearer })).status).toBe(404);
    expect((await fetch(`${base()}/viewer/api/users/${encodeURIComponent('a.b')}`, { headers: bearer })).status).toBe(400);
    expect(await (await fetch(`${base()}/viewer/api/users/nobody-at-all/audit`, { headers: bearer })).json()).toEqual({ entries: [], lastSeq: 0, truncated: false });
  });

  it('the live feed: the current record and views at once, then audit records after the cursor as they happen', async () => {
    const userId = await userWithHistory();
    const { lastSeq } = (await (await fetch(`${base()}/viewer/api/users/${userId}/audit`, { headers: bearer })).json()) as Timeline;
    const abort = new AbortController();
    const res = await fetch(`${base()}/viewer/api/users/${userId}/events?after=${lastSeq}`, { headers: bearer, signal: abort.signal });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const events: Array<{ event: string; id?: string; data: Record<string, unknown> }> = [];
    let raw = '';
    const reading = (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
          raw += decoder.decode(chunk, { stream: true });
          let end: number;
          while ((end = raw.indexOf('\n\n')) >= 0) {
            const block = raw.slice(0, end);
            raw = raw.slice(end + 2);
            const fields = Object.fromEntries(block.split('\n').filter((l) => l && !l.startsWith(':')).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 2)]));
            if (fields.event) events.push({ event: fields.event, id: fields.id, data: JSON.parse(fields.data!) });
          }
        }
      } catch {
        // aborted
      }
    })();
    try {
      await waitFor(() => events.some((e) => e.event === 'user') && events.filter((e) => e.event === 'view').length >= 2, 'the current record and both views');
      expect(events.filter((e) => e.event === 'audit')).toEqual([]); // nothing after the cursor yet
      await system().client.publish(event(userId, 'crisis_resolved', { by: 'clinician' }));
      const audit = await waitFor(() => events.find((e) => e.event === 'audit'), 'a live audit record');
      expect(audit.data).toMatchObject({ eventType: 'crisis_resolved', from: { crisis: 'active' }, to: { crisis: 'stable' } });
      expect(Number(audit.id)).toBe(audit.data.seq);
      expect(Number(audit.id)).toBeGreaterThan(lastSeq);
      await waitFor(() => events.some((e) => e.event === 'user' && (e.data.value as { crisis: string }).crisis === 'stable'), 'the record after the resolution');
      await waitFor(() => events.some((e) => e.event === 'view' && !(e.data.crisis as { active: boolean }).active), 'a view after the resolution');
      const all = JSON.stringify(events);
      for (const secret of [PLAN_TEXT, CONTACT.name, CONTACT.phone]) expect(all).not.toContain(secret);
    } finally {
      abort.abort();
      await reading;
    }
  });
});

describe('a viewer started in-process', () => {
  const servers: Server[] = [];
  const viewers: HttpRoutes[] = [];
  afterAll(async () => {
    for (const v of viewers) await v.close();
    for (const s of servers) await new Promise<void>((resolve) => s.close(() => resolve()));
  });

  /** Serves a viewer on a free port; returns its base URL and what it logged. */
  async function serve(token: string | undefined, machine: AnyStateMachine = userMachine) {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    const viewer = await createViewer({ nc: system().client.nc, topology: system().client.topology, token, machine, log });
    viewers.push(viewer);
    const server = createServer((req, res) => {
      void viewer.handle(req, res).then((handled) => {
        if (!handled) res.writeHead(404).end();
      });
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, lines };
  }

  it('without CLINICIAN_TOKEN: 401 to everything, whatever is sent, and a warning at start', async () => {
    const { url, lines } = await serve(undefined);
    expect(lines.some((l) => l.includes('CLINICIAN_TOKEN is not set'))).toBe(true);
    for (const path of ['/viewer', '/viewer?token=', '/viewer?token=undefined', '/viewer/page.js', '/viewer/statechart.svg', '/viewer/api/users/u1', '/viewer/api/users/u1/events']) {
      for (const headers of [{}, { authorization: 'Bearer ' }, { authorization: 'Bearer undefined' }]) {
        expect({ path, status: (await fetch(url + path, { headers, redirect: 'manual' })).status }).toEqual({ path, status: 401 });
      }
    }
    expect((await fetch(`${url}/viewer/session`, { method: 'POST', body: new URLSearchParams({ token: '' }), redirect: 'manual' })).status).toBe(401);
  });

  it('a state added to the machine appears on the page with no other change', async () => {
    const { url, lines } = await serve('t0ken', machineWithPausedState());
    expect(lines.some((l) => l.includes('CLINICIAN_TOKEN is not set'))).toBe(false);
    const html = await (await fetch(`${url}/viewer`, { headers: { authorization: 'Bearer t0ken' } })).text();
    expect(html).toContain('data-state-id="user.subscription.paused"');
    expect(html).toContain('data-transition="user.subscription.premium|subscription_paused|0"');
    const svg = await (await fetch(`${url}/viewer/statechart.svg`, { headers: { authorization: 'Bearer t0ken' } })).text();
    expect(svg).toContain('data-state-id="user.subscription.paused"');
    const plain = await (await fetch(`${base()}/viewer`, { headers: bearer })).text();
    expect(plain).not.toContain('user.subscription.paused');
  });
});
