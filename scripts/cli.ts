#!/usr/bin/env node
/**
 * The operator's command line: `npm run cli -- <command>` (or `npx fullmind-sync <command>`).
 *
 *   publish <type> --user <id> [--<field> <value> …]   publish any domain event (validated first)
 *   assessment --user <id> --instrument phq9|gad7 --answers 0,1,…   score at the producer and publish
 *   state <user>                                        current state, record and the user's last view
 *   audit <user> [--follow]                             the user's audit records, oldest first
 *   webhook <stripe-event.json> [--secret s] [--url u]  sign a Stripe event as Stripe does and POST it
 *   device-token <user> <device>                        issue a device's token; the one before is refused
 *   server-env                                          the FM_… variables nats.conf reads, as export lines
 *
 * Connects to NATS_URL (nats://127.0.0.1:4222 by default). Prints no safety-plan or contact text.
 * Reads the secrets directory (FM_SECRETS, else .secrets/); FM_DEVICE_TOKEN_TTL_S: a token's lifetime.
 */
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import Stripe from 'stripe';
import { deploymentFromEnv } from '../actors/config.ts';
import { servingNode } from '../actors/membership.ts';
import { issueDeviceToken } from '../auth/deviceToken.ts';
import { serverEnv } from '../auth/secrets.ts';
import { loadUserRecord } from '../actors/userStore.ts';
import { FullmindPublisher, PublishError, type EventDraft } from '../clients/publisher.ts';
import { DEFAULT_INGRESS_OPTIONS } from '../ingress/server.ts';
import { parseSecrets } from '../ingress/stripeWebhook.ts';
import { deriveView } from '../machines/deviceView.ts';
import { UserEvent } from '../machines/events.ts';
import { fromPersisted } from '../machines/userState.ts';
import { decode } from '../transport/codec.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
import { AuditRecord, type DeviceView } from '../transport/schemas.ts';
import { createTopology } from '../transport/topology.ts';
import { lastView } from '../transport/viewStore.ts';

const USAGE = readFileSync(new URL(import.meta.url), 'utf8').split('\n').slice(3, 12).map((l) => l.replace(/^ \* ?/, '')).join('\n');

const [command, ...rest] = process.argv.slice(2);
const deployment = deploymentFromEnv();
const topology = createTopology(deployment.topology);

/** The command's own options and its words (`strict`: an option it does not know is an error). */
function args<O extends ParseArgsOptionsConfig>(options: O) {
  return parseArgs({ args: rest, options, allowPositionals: true, strict: true });
}

/** A flag's text as the event field it names: numbers as numbers, `a,b` lists as arrays. */
function fieldValue(text: string): unknown {
  if (/^-?\d+(\.\d+)?$/.test(text)) return Number(text);
  if (text === 'null') return null;
  if (text.includes(',')) return text.split(',').map(fieldValue);
  return text;
}

async function withNats<T>(fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
  const nc = await connectNats({ servers: deployment.natsUrl, name: 'fullmind-cli', credentials: { role: 'runtime' }, maxReconnectAttempts: 3 });
  try {
    return await fn(nc);
  } finally {
    await drainNats(nc);
  }
}

/** `publish <type> --user <id> [--<field> <value> …]`: the options are the event type's own fields. */
async function publish(): Promise<number> {
  const types = UserEvent.options.map((o) => o.shape.type.value);
  const schema = UserEvent.options.find((o) => o.shape.type.value === rest[0]);
  if (!schema) return usage(`unknown event type ${rest[0] ?? '(none)'}: one of ${types.join(', ')}`);
  const fields = Object.keys(schema.shape).filter((k) => k !== 'type' && k !== 'userId');
  const { values, positionals } = args({ user: { type: 'string' }, ...Object.fromEntries(fields.map((k) => [k, { type: 'string' } as const])) });
  const { user, ...given } = values as Record<string, string | undefined>;
  if (!user || positionals.length !== 1) return usage();
  const draft = { type: schema.shape.type.value, userId: user, ...Object.fromEntries(Object.entries(given).map(([k, v]) => [k, fieldValue(v!)])) };
  await withNats((nc) => new FullmindPublisher(nc, { topology }).publish(draft as EventDraft));
  console.log(`published ${draft.type} for ${user}`);
  return 0;
}

/** `assessment --user <id> --instrument phq9|gad7 --answers 0,1,…` */
async function assessment(): Promise<number> {
  const { values } = args({ user: { type: 'string' }, instrument: { type: 'string' }, answers: { type: 'string' } });
  const { user, instrument, answers } = values;
  if (!user || !instrument || !answers) return usage();
  const score = await withNats((nc) =>
    new FullmindPublisher(nc, { topology }).assessmentCompleted({
      userId: user,
      instrument: instrument as 'phq9' | 'gad7',
      answers: answers.split(',').map(Number),
    }),
  );
  console.log(`published; total ${score.total} (${score.band})${score.crisis ? ', crisis signalled on the crisis lane' : ''}`);
  return 0;
}

/** `state <user>`: the stored record, the view it derives, and the user's last stored view (what every listed device was sent). */
async function state(): Promise<number> {
  const [userId] = args({}).positionals;
  if (!userId) return usage();
  return withNats(async (nc) => {
    const { record } = await loadUserRecord(await new Kvm(nc).open(topology.buckets.users), userId);
    if (!record) {
      console.log(`no record for ${userId}`);
      return 1;
    }
    const { snapshot } = fromPersisted(record.state);
    const { devices } = snapshot.context;
    const servedBy = await servingNode(await new Kvm(nc).open(topology.buckets.partitions), userId, topology.options.partitions);
    console.log(JSON.stringify({ user: userId, state: snapshot.value, viewVersion: record.viewVersion, servedBy, ...deriveView(snapshot), devices }, null, 2));
    const view = await lastView((await jetstreamManager(nc)).direct, topology, userId);
    console.log(`view: ${describeView(view)}`);
    return 0;
  });
}

/** A stored view in one line, without its safety content (only whether there is some). */
function describeView(v: DeviceView | null): string {
  if (!v) return 'no view stored';
  const safety = `safety plan=${v.safety.plan ? 'yes' : 'no'} contacts=${v.safety.contacts.length}`;
  return `v${v.version} devices=${v.devices.join(',')} ${v.tier}/${v.status} crisis=${v.crisis.active} features=${v.features.enabled.length} ${safety}`;
}

/** `audit <user> [--follow]`: the user's audit records, oldest first; with `--follow`, then every new one. */
async function audit(): Promise<number> {
  const { values, positionals } = args({ follow: { type: 'boolean' } });
  const [userId] = positionals;
  if (!userId) return usage();
  return withNats(async (nc) => {
    const consumer = await jetstream(nc).consumers.get(topology.streams.audit, {
      filter_subjects: [topology.subjects.audit(userId)],
      deliver_policy: DeliverPolicy.All,
    });
    const stored = (await consumer.info(true)).num_pending;
    if (stored === 0 && !values.follow) return 0;
    let shown = 0;
    for await (const m of await consumer.consume()) {
      print(decode(AuditRecord, m.data));
      if (!values.follow && ++shown >= stored) break;
    }
    return 0;
  });
}

/** `webhook <stripe-event.json> [--secret s] [--url u]`: signs the body as Stripe does and POSTs it. */
async function webhook(): Promise<number> {
  const { values, positionals } = args({ secret: { type: 'string' }, url: { type: 'string' } });
  const [file] = positionals;
  if (!file) return usage();
  const body = readFileSync(file, 'utf8');
  const secret = values.secret ?? parseSecrets(process.env.STRIPE_WEBHOOK_SECRET)[0];
  if (!secret) throw new Error('give --secret or set STRIPE_WEBHOOK_SECRET');
  const signature = Stripe.webhooks.generateTestHeaderString({ payload: body, secret });
  const url = values.url ?? `http://127.0.0.1:${process.env.PORT ?? DEFAULT_INGRESS_OPTIONS.port}/webhooks/stripe`;
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signature }, body });
  console.log(res.status, await res.text());
  return res.ok ? 0 : 1;
}

/**
 * `device-token <user> <device>`: what the accounts service does when a device is registered.
 * Prints the token (a secret of the device's: pass it to the device only).
 */
async function deviceToken(): Promise<number> {
  const [userId, deviceId, ...more] = args({}).positionals;
  if (!userId || !deviceId || more.length) return usage();
  console.log(await withNats(async (nc) => issueDeviceToken(await new Kvm(nc).open(topology.buckets.deviceTokens), { userId, deviceId })));
  return 0;
}

/** `server-env`: for an operator who starts nats-server by hand (`eval "$(npm run -s cli -- server-env)"`). */
async function printServerEnv(): Promise<number> {
  if (args({}).positionals.length) return usage();
  for (const [name, value] of Object.entries(serverEnv())) console.log(`export ${name}=${shellQuote(value)}`);
  return 0;
}

/** A value as one word of a POSIX shell. */
function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

const COMMANDS: Readonly<Record<string, () => Promise<number>>> = {
  publish,
  assessment,
  state,
  audit,
  webhook,
  'device-token': deviceToken,
  'server-env': printServerEnv,
};

/** Prints what went wrong, if anything, and the usage; the exit code of a wrong command line. */
function usage(problem?: string): number {
  if (problem) console.error(problem);
  console.error(USAGE);
  return 2;
}

function print(a: AuditRecord): void {
  const level = a.crisisLevel ? ` (${a.crisisLevel})` : '';
  const view = a.viewVersion ? ` → view v${a.viewVersion}` : '';
  console.log(
    `${new Date(a.at).toISOString()}  ${a.eventType.padEnd(26)} ${a.from.subscription}/${a.from.crisis} → ${a.to.subscription}/${a.to.crisis}${level}${view}`,
  );
}

/** Reports a failure; returns the exit code (2: a wrong command line, 1: anything else). */
function failed(err: unknown): number {
  if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) return usage((err as Error).message);
  if (err instanceof PublishError) console.error(`refused (${err.code}${err.field ? `, ${err.field}` : ''}): ${err.message}`);
  else console.error((err as Error).message);
  return 1;
}

try {
  process.exitCode = command !== undefined && Object.hasOwn(COMMANDS, command) ? await COMMANDS[command]!() : usage();
} catch (err) {
  process.exitCode = failed(err);
}
