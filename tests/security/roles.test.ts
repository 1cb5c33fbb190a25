/**
 * Integration (real nats-server from nats.conf, runtime process): what each role may do. A plain
 * connection and one without credentials are refused; a service publishes its own event kinds and
 * nothing else, and reads no view; the viewer reads but publishes nothing; the ingress reads no
 * view; the store on disk holds no safety-plan text.
 */
import { readdir, readFile } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, describe, expect, it } from 'vitest';
import { connectNats, drainNats } from '../../transport/connection.ts';
import { credentialOptions, type Role } from '../../transport/credentials.ts';
import { lastView } from '../../transport/viewStore.ts';
import { encode } from '../../transport/codec.ts';
import { UserEvent } from '../../machines/events.ts';
import { event } from '../support/events.ts';
import { SAFETY_PLAN } from '../support/pii.ts';
import { waitFor } from '../support/processes.ts';
import { useSystem } from '../support/system.ts';

const system = useSystem();
const opened: NatsConnection[] = [];
afterAll(() => Promise.all(opened.map(drainNats)));

async function as(role: Role): Promise<NatsConnection> {
  const nc = await connectNats({ servers: system().nats.url, name: `test/${role}`, credentials: { role }, maxReconnectAttempts: 0 });
  opened.push(nc);
  return nc;
}

/** Resolves with the server's permission violation for `subject` that `act` causes on `nc`. */
async function violation(nc: NatsConnection, subject: string, act: () => unknown): Promise<string> {
  const seen = (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'error' && s.error.message.includes(`"${subject}"`)) return s.error.message;
    }
    return 'connection closed';
  })();
  const failed = Promise.resolve()
    .then(act)
    .then(
      () => new Promise<string>(() => {}),
      (err: Error) => err.message,
    );
  return Promise.race([seen, failed]);
}

const bytes = (e: UserEvent) => encode(UserEvent, e);

describe('transport security', () => {
  it('refuses a plain connection: the server requires TLS and drops a client that speaks plain text', async () => {
    const port = Number(new URL(system().nats.url).port);
    const { text, closedByServer } = await new Promise<{ text: string; closedByServer: boolean }>((resolve, reject) => {
      let text = '';
      let sent = false;
      let closedByServer = false;
      const socket = tcpConnect(port, '127.0.0.1');
      const giveUp = setTimeout(() => socket.destroy(), 10_000);
      socket.on('data', (chunk) => {
        text += chunk.toString();
        if (!sent && text.includes('\r\n')) {
          sent = true;
          socket.write('CONNECT {"verbose":false}\r\nPING\r\n');
        }
      });
      socket.on('end', () => (closedByServer = true));
      socket.on('close', () => {
        clearTimeout(giveUp);
        resolve({ text, closedByServer });
      });
      socket.on('error', reject);
    });
    expect(text).toMatch(/^INFO .*"tls_required":true/);
    expect(text).not.toMatch(/PONG/);
    expect(closedByServer).toBe(true);
  });

  it('refuses a TLS connection without credentials', async () => {
    const tls = credentialOptions({ role: 'runtime' }).tls;
    await expect(connect({ servers: system().nats.url, tls, maxReconnectAttempts: 0 })).rejects.toThrow(/Authorization Violation/);
  });
});

describe('roles', () => {
  const user = 'roles-user';

  it('a service publishes its own event kinds, and not another service’s, nor a crisis', async () => {
    const { client } = system();
    await client.publish(event(user, 'device_registered', { deviceId: 'phone', platform: 'ios' }));
    const assessments = await as('assessments');
    const js = jetstream(assessments);
    const own = event(user, 'assessment_completed', { instrument: 'phq9', answers: [0, 1, 0, 1, 0, 1, 0, 0, 0] });
    await expect(js.publish(client.topology.subjects.event(user, own.type), bytes(own))).resolves.toMatchObject({ stream: client.topology.streams.normal });
    const premium = event(user, 'subscription_activated', { subscriptionId: 'sub_free', tier: 'premium' });
    const premiumSubject = client.topology.subjects.event(user, premium.type);
    expect(await violation(assessments, premiumSubject, () => js.publish(premiumSubject, bytes(premium)))).toMatch(/Permissions Violation for Publish/);
    const resolved = event(user, 'crisis_resolved', { by: 'clinician' });
    const resolvedSubject = client.topology.subjects.event(user, resolved.type);
    expect(await violation(assessments, resolvedSubject, () => js.publish(resolvedSubject, bytes(resolved)))).toMatch(/Permissions Violation for Publish/);
  });

  it('a service reads no view, lists no stream and reads no record', async () => {
    const { topology } = system().client;
    const payments = await as('payments');
    const view = topology.subjects.view(user);
    expect(await violation(payments, view, () => payments.subscribe(view))).toMatch(/Permissions Violation for Subscription/);
    const direct = `$JS.API.DIRECT.GET.${topology.streams.views}.${view}`;
    const jsm = await jetstreamManager(payments, { checkAPI: false });
    expect(await violation(payments, direct, () => lastView(jsm.direct, topology, user))).toMatch(/Permissions Violation for Publish/);
    expect(await violation(payments, '$JS.API.STREAM.NAMES', () => jsm.streams.names().next())).toMatch(/Permissions Violation for Publish/);
    const record = `$JS.API.DIRECT.GET.KV_${topology.buckets.users}.$KV.${topology.buckets.users}.${user}`;
    expect(await violation(payments, record, () => payments.request(record, '', { timeout: 2_000 }))).toMatch(/Permissions Violation for Publish/);
  });

  it('the ingress reads no view and publishes no crisis event', async () => {
    const { topology } = system().client;
    const ingress = await as('ingress');
    const jsm = await jetstreamManager(ingress, { checkAPI: false });
    const direct = `$JS.API.DIRECT.GET.${topology.streams.views}.${topology.subjects.view(user)}`;
    expect(await violation(ingress, direct, () => lastView(jsm.direct, topology, user))).toMatch(/Permissions Violation for Publish/);
    const resolved = event(user, 'crisis_resolved', { by: 'clinician' });
    const subject = topology.subjects.event(user, resolved.type);
    expect(await violation(ingress, subject, () => jetstream(ingress).publish(subject, bytes(resolved)))).toMatch(/Permissions Violation for Publish/);
  });

  it('the viewer reads the view but publishes nothing: no event, no view, no record', async () => {
    const { client } = system();
    const { topology } = client;
    await waitFor(() => client.lastView(user), 'the user’s view');
    const viewer = await as('viewer');
    const jsm = await jetstreamManager(viewer, { checkAPI: false });
    expect((await lastView(jsm.direct, topology, user))?.userId).toBe(user);
    const forged = { subject: topology.subjects.view(user), data: new Uint8Array([1, 2, 3]) };
    expect(await violation(viewer, forged.subject, () => viewer.publish(forged.subject, forged.data))).toMatch(/Permissions Violation for Publish/);
    const resolved = topology.subjects.event(user, 'crisis_resolved');
    expect(await violation(viewer, resolved, () => viewer.publish(resolved, bytes(event(user, 'crisis_resolved', { by: 'clinician' }))))).toMatch(
      /Permissions Violation for Publish/,
    );
    const record = `$KV.${topology.buckets.users}.${user}`;
    expect(await violation(viewer, record, () => viewer.publish(record, new Uint8Array(1)))).toMatch(/Permissions Violation for Publish/);
  });
});

describe('encryption at rest', () => {
  it('the store on disk holds no safety-plan text, while the view read through NATS does', async () => {
    const { client, nats } = system();
    const user = 'at-rest-user';
    await client.publish(event(user, 'device_registered', { deviceId: 'phone', platform: 'ios' }), event(user, 'safety_plan_updated', { plan: SAFETY_PLAN }));
    const view = await waitFor(async () => {
      const v = await client.lastView(user);
      return v?.safety.plan ? v : null;
    }, 'view with the safety plan');
    const needle = SAFETY_PLAN.warningSigns[0]!;
    expect(JSON.stringify(view.safety)).toContain(needle);
    const files = await filesUnder(nats.storeDir);
    expect(files.length).toBeGreaterThan(10);
    const hits: string[] = [];
    for (const file of files) if ((await readFile(file)).includes(Buffer.from(needle))) hits.push(file);
    expect(hits).toEqual([]);
  });
});

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}
