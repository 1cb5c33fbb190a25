#!/usr/bin/env node
/**
 * The operator's command line: `npm run cli -- <command>` (or `npx fullmind-sync <command>`).
 *
 *   publish <type> --user <id> [--<field> <value> …]   publish any domain event (validated first)
 *   assessment --user <id> --instrument phq9|gad7 --answers 0,1,…   score at the producer and publish
 *   state <user>                                        current state, record and every device's view
 *   audit <user> [--follow]                             the user's audit records, oldest first
 *   webhook <stripe-event.json> [--secret s] [--url u]  sign a Stripe event as Stripe does and POST it
 *
 * Connects to NATS_URL (nats://127.0.0.1:4222 by default). Prints no safety-plan or contact text.
 */
import { readFileSync } from 'node:fs';
import { decode as unpack } from '@msgpack/msgpack';
import { DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import Stripe from 'stripe';
import type { UserRecord } from '../actors/userStore.ts';
import { deriveView } from '../machines/deviceView.ts';
import { fromPersisted } from '../machines/userState.ts';
import { decode } from '../transport/codec.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
import { FullmindPublisher, PublishError, type EventDraft } from '../clients/publisher.ts';
import { AuditRecord } from '../transport/schemas.ts';
import { parseSecrets } from '../ingress/stripeWebhook.ts';
import { createTopology } from '../transport/topology.ts';
import { decodeDeviceView } from '../transport/viewWire.ts';

const USAGE = readFileSync(new URL(import.meta.url), 'utf8').split('\n').slice(3, 10).map((l) => l.replace(/^ \* ?/, '')).join('\n');

/** `--name value` pairs and positional words. */
function parseArgs(argv: string[]): { words: string[]; flags: Record<string, string> } {
  const words: string[] = [];
  const flags: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) words.push(arg);
    else if (argv[i + 1] === undefined || argv[i + 1]!.startsWith('--')) flags[arg.slice(2)] = 'true';
    else flags[arg.slice(2)] = argv[++i]!;
  }
  return { words, flags };
}

/** A flag's text as the event field it names: numbers as numbers, `a,b` lists as arrays. */
function fieldValue(text: string): unknown {
  if (/^-?\d+(\.\d+)?$/.test(text)) return Number(text);
  if (text === 'null') return null;
  if (text.includes(',')) return text.split(',').map(fieldValue);
  return text;
}

const { words, flags } = parseArgs(process.argv.slice(2));
const [command, arg] = words;
const topology = createTopology(process.env.FM_PREFIX ? { prefix: process.env.FM_PREFIX } : {});

async function withNats<T>(fn: (nc: Awaited<ReturnType<typeof connectNats>>) => Promise<T>): Promise<T> {
  const nc = await connectNats({ name: 'fullmind-cli', maxReconnectAttempts: 3 });
  try {
    return await fn(nc);
  } finally {
    await drainNats(nc);
  }
}

async function main(): Promise<number> {
  switch (command) {
    case 'publish': {
      if (!arg || !flags.user) break;
      const { user, ...fields } = flags;
      const draft = { type: arg, userId: user, ...Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, fieldValue(v)])) };
      await withNats((nc) => new FullmindPublisher(nc, { topology }).publish(draft as EventDraft));
      console.log(`published ${arg} for ${user}`);
      return 0;
    }
    case 'assessment': {
      if (!flags.user || !flags.instrument || !flags.answers) break;
      const score = await withNats((nc) =>
        new FullmindPublisher(nc, { topology }).assessmentCompleted({
          userId: flags.user!,
          instrument: flags.instrument as 'phq9' | 'gad7',
          answers: flags.answers!.split(',').map(Number),
        }),
      );
      console.log(`published; total ${score.total} (${score.band})${score.crisis ? ', crisis signalled on the crisis lane' : ''}`);
      return 0;
    }
    case 'state': {
      if (!arg) break;
      return withNats(async (nc) => {
        const entry = await (await new Kvm(nc).open(topology.buckets.users)).get(arg);
        if (!entry || entry.operation !== 'PUT') {
          console.log(`no record for ${arg}`);
          return 1;
        }
        const record = unpack(entry.value) as UserRecord;
        const { snapshot } = fromPersisted(record.state);
        const view = deriveView(snapshot);
        console.log(JSON.stringify({ user: arg, state: snapshot.value, viewVersion: record.viewVersion, ...view, devices: snapshot.context.devices }, null, 2));
        const jsm = await jetstreamManager(nc);
        for (const deviceId of snapshot.context.devices) {
          const m = await jsm.streams.getMessage(topology.streams.views, { last_by_subj: topology.subjects.view(arg, deviceId) }).catch(() => null);
          const v = m && decodeDeviceView(m.data, m.header);
          console.log(
            v
              ? `device ${deviceId}: v${v.version} ${v.tier}/${v.status} crisis=${v.crisis.active} features=${v.features.enabled.length} safety plan=${v.safety.plan ? 'yes' : 'no'} contacts=${v.safety.contacts.length}`
              : `device ${deviceId}: no view stored`,
          );
        }
        return 0;
      });
    }
    case 'audit': {
      if (!arg) break;
      return withNats(async (nc) => {
        const consumer = await jetstream(nc).consumers.get(topology.streams.audit, {
          filter_subjects: [topology.subjects.audit(arg)],
          deliver_policy: DeliverPolicy.All,
        });
        const follow = flags.follow === 'true';
        const stored = (await consumer.info(true)).num_pending;
        if (stored === 0 && !follow) return 0;
        let shown = 0;
        for await (const m of await consumer.consume()) {
          print(decode(AuditRecord, m.data));
          if (!follow && ++shown >= stored) break;
        }
        return 0;
      });
    }
    case 'webhook': {
      if (!arg) break;
      const body = readFileSync(arg, 'utf8');
      const secret = flags.secret ?? parseSecrets(process.env.STRIPE_WEBHOOK_SECRET)[0];
      if (!secret) throw new Error('give --secret or set STRIPE_WEBHOOK_SECRET');
      const signature = Stripe.webhooks.generateTestHeaderString({ payload: body, secret });
      const url = flags.url ?? `http://127.0.0.1:${process.env.PORT ?? 8080}/webhooks/stripe`;
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'stripe-signature': signature }, body });
      console.log(res.status, await res.text());
      return res.ok ? 0 : 1;
    }
  }
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

try {
  process.exitCode = await main();
} catch (err) {
  if (err instanceof PublishError) console.error(`refused (${err.code}${err.field ? `, ${err.field}` : ''}): ${err.message}`);
  else console.error((err as Error).message);
  process.exitCode = 1;
}
