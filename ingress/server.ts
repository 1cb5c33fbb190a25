/**
 * The HTTP ingress: Stripe webhooks in, health and metrics out; other routes (the clinician
 * viewer) can be served on the same port through the `routes` option.
 *
 * `POST /webhooks/stripe` answers 2xx only once JetStream stored the mapped event (Stripe retries
 * anything else for days, so nothing is lost): 400 with a short reason for a bad signature, a stale
 * timestamp, malformed JSON or an event the mapping rejects (nothing published); 413 over the size
 * limit; 503 when NATS cannot take the event; 2xx for types we do not handle (recorded, not
 * published) and for events whose user cannot be found (kept as a dead letter). Logs carry event
 * ids and types only: a Stripe body holds names, e-mails and card details.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Counter, Histogram, Registry } from 'prom-client';
import type { PaidTier } from '../machines/features.ts';
import { customerIdOf, mapStripeEvent, type StripeEvent } from '../machines/stripe.ts';
import { encode } from '../transport/codec.ts';
import { CustomerDirectory } from './customerDirectory.ts';
import { deadLetter } from '../transport/deadLetters.ts';
import { publishEvent } from '../transport/eventPublisher.ts';
import { DeadLetter } from '../transport/schemas.ts';
import { readBody, type HttpRoutes } from './http.ts';
import { verifyStripeWebhook } from './stripeWebhook.ts';
import { openBucket, streamConfigs, type Topology } from '../transport/topology.ts';

/** Options of {@link startIngress}. */
export interface IngressOptions {
  nc: NatsConnection;
  topology: Topology;
  /**
   * HTTP port, 0 for any free one (`PORT`).
   * @default 8080
   */
  port?: number;
  /** Webhook signing secrets; any one of them may sign (rotation). */
  secrets: readonly string[];
  /** Stripe price id → tier. */
  priceTiers: Readonly<Record<string, PaidTier>>;
  log: Logger;
  /**
   * What /metrics serves, with the ingress's own metrics added (and the process's): the node's
   * registry when the node runs in the same process, so one scrape has both under its node label.
   * @default a registry of its own
   */
  registry?: Registry;
  /**
   * Largest webhook body accepted (Stripe events are a few KB; the largest are well under this).
   * @default 524288 (512 KiB)
   */
  maxBodyBytes?: number;
  /**
   * How long one attempt to store a webhook's event waits for JetStream.
   * @default 2000
   */
  publishTimeoutMs?: number;
  /**
   * How long a webhook retries transient failures (a stream leader election takes 5–7 s) before
   * answering 503, which makes Stripe retry later.
   * @default 8000
   */
  publishRetryMs?: number;
  /** The runtime node in the same process, if any: /healthz says which partitions it holds. */
  node?: { readonly config: { readonly nodeId: string }; readonly partitions: number[] };
  /** More routes served on the same port (the clinician viewer), tried before the 404. */
  routes?: HttpRoutes;
}

/** Defaults of {@link IngressOptions}. */
export const DEFAULT_INGRESS_OPTIONS: Readonly<Required<Pick<IngressOptions, 'port' | 'maxBodyBytes' | 'publishTimeoutMs' | 'publishRetryMs'>>> = {
  port: 8080,
  maxBodyBytes: 512 * 1024,
  publishTimeoutMs: 2_000,
  publishRetryMs: 8_000,
};

/** Options with their defaults filled in. */
type Resolved = IngressOptions & typeof DEFAULT_INGRESS_OPTIONS;

/** A running ingress. */
export interface Ingress {
  readonly port: number;
  readonly server: Server;
  stop(): Promise<void>;
}

/** Parses `STRIPE_PRICE_TIERS` (`price_a=basic,price_b=premium`). */
export function parsePriceTiers(value: string | undefined): Record<string, PaidTier> {
  const tiers: Record<string, PaidTier> = {};
  for (const pair of (value ?? '').split(',').filter(Boolean)) {
    const [price, tier] = pair.split('=').map((s) => s.trim());
    if (!price || (tier !== 'basic' && tier !== 'premium')) throw new Error(`STRIPE_PRICE_TIERS: bad entry "${pair}"`);
    tiers[price] = tier;
  }
  return tiers;
}

/** Starts the ingress HTTP server. */
export async function startIngress(ingressOptions: IngressOptions): Promise<Ingress> {
  const options: Resolved = { ...DEFAULT_INGRESS_OPTIONS, ...ingressOptions };
  const { nc, topology, log } = options;
  // The runtime provisions the streams and buckets; the ingress's role may only use them.
  const customers = await openBucket(nc, topology.buckets.customers);
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc, { timeout: options.publishTimeoutMs });
  const directory = new CustomerDirectory(customers);
  await directory.follow(nc, topology, (err) => log.warn({ err: err.message }, 'customer link skipped'));
  const metrics = ingressMetrics(options.registry ?? new Registry());
  const handler = new WebhookHandler(options, js, directory, metrics);

  const server = createServer((req, res) => {
    route(req, res, handler, options, jsm, metrics.registry).catch((err: Error) => {
      log.error({ err: err.message, path: req.url }, 'request failed');
      if (!res.headersSent) reply(res, 500, { error: 'internal error' });
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port, '0.0.0.0', resolve));
  const port = (server.address() as AddressInfo).port;
  log.info({ port }, 'ingress listening');
  return {
    port,
    server,
    async stop() {
      await options.routes?.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await directory.stop();
    },
  };
}

async function route(
  req: IncomingMessage,
  res: ServerResponse,
  webhooks: WebhookHandler,
  options: Resolved,
  jsm: JetStreamManager,
  registry: Registry,
): Promise<void> {
  const { nc, topology, node, routes: extra } = options;
  const path = new URL(req.url ?? '/', 'http://ingress').pathname;
  if (req.method === 'POST' && path === '/webhooks/stripe') return webhooks.handle(req, res);
  if (req.method === 'GET' && path === '/healthz') {
    const streams = await Promise.all(streamConfigs(topology).map((s) => jsm.streams.info(s.name).then(() => true, () => false)));
    const ok = !nc.isClosed() && streams.every(Boolean);
    return reply(res, ok ? 200 : 503, {
      nats: nc.isClosed() ? 'closed' : 'connected',
      streams: streams.every(Boolean) ? 'present' : 'missing',
      ...(node && { node: node.config.nodeId, partitions: node.partitions }),
    });
  }
  if (req.method === 'GET' && path === '/metrics') {
    res.writeHead(200, { 'content-type': registry.contentType });
    res.end(await registry.metrics());
    return;
  }
  if (extra && (await extra.handle(req, res))) return;
  reply(res, 404, { error: 'not found' });
}

function reply(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

interface IngressMetrics {
  registry: Registry;
  webhooks: Counter<'outcome'>;
  publishSeconds: Histogram;
}

function ingressMetrics(registry: Registry): IngressMetrics {
  // The process's own: CPU, memory, heap, event-loop delay, garbage collections.
  collectDefaultMetrics({ register: registry });
  const webhooks = new Counter({
    name: 'fm_webhooks_total',
    help: 'Stripe webhooks by outcome',
    labelNames: ['outcome'] as const,
    registers: [registry],
  });
  const publishSeconds = new Histogram({
    name: 'fm_webhook_publish_seconds',
    help: 'Time from a verified webhook to JetStream storing its event',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5],
    registers: [registry],
  });
  return { registry, webhooks, publishSeconds };
}

/** Handles `POST /webhooks/stripe`. */
class WebhookHandler {
  private readonly options: Resolved;
  private readonly js: JetStreamClient;
  private readonly directory: CustomerDirectory;
  private readonly metrics: IngressMetrics;

  constructor(options: Resolved, js: JetStreamClient, directory: CustomerDirectory, metrics: IngressMetrics) {
    this.options = options;
    this.js = js;
    this.directory = directory;
    this.metrics = metrics;
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { log, secrets, priceTiers, topology } = this.options;
    const answer = (status: number, outcome: string, body: Record<string, unknown>) => {
      this.metrics.webhooks.inc({ outcome });
      reply(res, status, body);
    };
    const raw = await readBody(req, this.options.maxBodyBytes);
    if (!raw) return answer(413, 'too_large', { error: 'too_large' });
    const verified = verifyStripeWebhook(raw, req.headers['stripe-signature'] as string | undefined, secrets);
    if (!verified.ok) {
      log.warn({ reason: verified.reason }, 'webhook refused');
      return answer(400, verified.reason, { error: verified.reason });
    }
    const stripeEvent = verified.event;
    const ids = { stripeEventId: stripeEvent.id, stripeType: stripeEvent.type };
    let mapping = mapStripeEvent(stripeEvent, { priceTiers });
    if (mapping.kind === 'rejected' && mapping.reason === 'unknown_user') {
      const customerId = customerIdOf(stripeEvent);
      const userId = customerId && (await this.directory.userOf(customerId));
      if (userId) mapping = mapStripeEvent(stripeEvent, { priceTiers, customerUserId: userId });
    }
    try {
      switch (mapping.kind) {
        case 'ignored':
          log.info({ ...ids, reason: mapping.reason }, 'webhook ignored');
          return answer(200, 'ignored', { received: true, ignored: mapping.reason });
        case 'rejected':
          if (mapping.reason === 'unknown_user') {
            await this.storeDeadLetter(stripeEvent, mapping.detail);
            log.warn({ ...ids, reason: mapping.reason }, 'webhook for unknown user kept as dead letter');
            return answer(200, 'unknown_user', { received: true, deadLetter: 'unknown_user' });
          }
          log.warn({ ...ids, reason: mapping.reason }, 'webhook rejected');
          return answer(400, mapping.reason, { error: mapping.reason });
        case 'event': {
          const started = performance.now();
          const ack = await publishEvent(this.js, topology.subjects, mapping.event, { retryForMs: this.options.publishRetryMs });
          this.metrics.publishSeconds.observe((performance.now() - started) / 1000);
          log.info({ ...ids, eventType: mapping.event.type, userId: mapping.event.userId, duplicate: ack.duplicate }, 'webhook published');
          return answer(200, ack.duplicate ? 'duplicate' : 'published', { received: true, published: mapping.event.type, duplicate: ack.duplicate });
        }
      }
    } catch (err) {
      log.warn({ ...ids, err: (err as Error).message }, 'NATS could not take the webhook; Stripe will retry');
      return answer(503, 'unavailable', { error: 'temporarily unavailable' });
    }
  }

  /** A webhook whose user is unknown: kept with its ids, never its body (it holds customer details). */
  private async storeDeadLetter(event: StripeEvent, detail: string): Promise<void> {
    const { topology } = this.options;
    const letter = deadLetter(topology.subjects, {
      reason: 'unknown_user',
      detail: `${event.type} ${event.id}: ${detail}`,
      subject: `stripe.${event.type}`,
      raw: null,
      receivedAt: Date.now(),
    });
    await this.js.publish(topology.subjects.deadLetter(letter.reason), encode(DeadLetter, letter), { msgID: `dlq:${event.id}` });
  }
}
