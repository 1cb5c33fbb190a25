/**
 * `npm start`: the main job on an embedded default. Starts nats-server from nats.conf (store under
 * the project's .data/, unless NATS_URL points at a server already running), one runtime node and
 * its auth callout replica (unless `FM_RUNTIME=off`: the ingress alone, beside nodes running
 * elsewhere, as `npm run cluster` does; `FM_CALLOUT=off`: the node without it), and the HTTP
 * ingress (Stripe webhooks, /healthz, /metrics on PORT, 8080 by default, and the clinician viewer
 * at /viewer behind CLINICIAN_TOKEN); Ctrl-C stops them cleanly (the callout after the node).
 */
import { fileURLToPath } from 'node:url';
import { startNodeCallout } from '../auth/callout.ts';
import { configFromEnv, processTitle } from '../actors/config.ts';
import { createLogger } from '../actors/logger.ts';
import { RuntimeNode } from '../actors/node.ts';
import { stopOnSignals } from '../actors/shutdown.ts';
import { connectNats, drainNats } from '../transport/connection.ts';
import { createTopology } from '../transport/topology.ts';
import { DEFAULT_INGRESS_OPTIONS, parsePriceTiers, startIngress, type Ingress } from '../ingress/server.ts';
import { parseSecrets } from '../ingress/stripeWebhook.ts';
import { userMachine } from '../machines/userMachine.ts';
import { createViewer } from '../viewer/routes.ts';
import { startNatsProcess, type NatsProcess } from './natsProcess.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** A started system: the node, its ingress and, when embedded, the server they run on. */
export interface System {
  /** Absent with `FM_RUNTIME=off`. */
  node: RuntimeNode | undefined;
  ingress: Ingress;
  nats: NatsProcess | undefined;
  stop(): Promise<void>;
}

/** Starts nats-server (unless `NATS_URL` is set), one runtime node (unless `FM_RUNTIME=off`) and the ingress. */
export async function startSystem(env: NodeJS.ProcessEnv = process.env): Promise<System> {
  const nats = env.NATS_URL ? undefined : await startNatsProcess({ cwd: ROOT });
  const config = configFromEnv(env);
  const node = env.FM_RUNTIME === 'off' ? undefined : await RuntimeNode.start(config);
  const callout = node && (await startNodeCallout(config));
  const topology = node?.topology ?? createTopology(config.topology);
  const log = createLogger({ component: 'ingress' });
  const secrets = parseSecrets(env.STRIPE_WEBHOOK_SECRET);
  if (secrets.length === 0) log.warn('STRIPE_WEBHOOK_SECRET is not set: every webhook will be refused');
  const nc = await connectNats({ servers: config.natsUrl, name: `${config.nodeId}/ingress`, credentials: { role: 'ingress' } });
  const viewerNc = await connectNats({ servers: config.natsUrl, name: `${config.nodeId}/viewer`, credentials: { role: 'viewer' } });
  const viewer = await createViewer({
    nc: viewerNc,
    topology,
    token: env.CLINICIAN_TOKEN,
    machine: userMachine,
    log: createLogger({ component: 'viewer' }),
  });
  const ingress = await startIngress({
    nc,
    topology,
    port: env.PORT ? Number(env.PORT) : DEFAULT_INGRESS_OPTIONS.port,
    secrets,
    priceTiers: parsePriceTiers(env.STRIPE_PRICE_TIERS),
    log,
    registry: node?.metrics.registry,
    node,
    routes: viewer,
  });
  return {
    node,
    ingress,
    nats,
    async stop() {
      await ingress.stop();
      await drainNats(viewerNc);
      await drainNats(nc);
      await node?.stop();
      await callout?.stop();
      await nats?.terminate();
    },
  };
}

if (import.meta.main) {
  process.title = processTitle(configFromEnv());
  const system = await startSystem();
  const log = system.node?.log ?? createLogger({ component: 'ingress' });
  log.info({ embeddedNats: system.nats !== undefined, runtime: system.node !== undefined, port: system.ingress.port }, 'fullmind-sync running; Ctrl-C to stop');
  stopOnSignals(() => system.stop());
}
