/**
 * Stripe customer → user lookup for webhooks whose metadata names no user. Kept in KV and fed by
 * the explicit `customer_linked` events the app publishes at checkout (a durable consumer follows
 * them), so the ingress never has to ask Stripe or guess.
 */
import { jetstream, type ConsumerMessages } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { CustomerLinked, UserEvent } from '../machines/events.ts';
import { decode } from '../transport/codec.ts';
import type { Topology } from '../transport/topology.ts';

/** Looks up and follows customer links. */
export class CustomerDirectory {
  private readonly kv: KV;
  private messages: ConsumerMessages | undefined;
  private loop: Promise<void> | undefined;

  constructor(kv: KV) {
    this.kv = kv;
  }

  /** The user linked to a Stripe customer, if any. */
  async userOf(customerId: string): Promise<string | undefined> {
    // An id `customer_linked` would refuse was never linked, and may not even be a KV key (found by fuzzing).
    if (!CustomerLinked.shape.customerId.safeParse(customerId).success) return undefined;
    const entry = await this.kv.get(customerId);
    return entry?.operation === 'PUT' ? entry.string() : undefined;
  }

  /** Follows `customer_linked` events into the KV lookup until {@link stop}. */
  async follow(nc: NatsConnection, t: Topology, onError: (err: Error) => void): Promise<void> {
    const consumer = await jetstream(nc).consumers.get(t.streams.normal, t.consumers.customerLinks);
    const messages = await consumer.consume({ max_messages: 64 });
    this.messages = messages;
    this.loop = (async () => {
      for await (const m of messages) {
        try {
          const event = decode(UserEvent, m.data);
          if (event.type === 'customer_linked') await this.kv.put(event.customerId, event.userId);
          m.ack();
        } catch (err) {
          // A malformed link is the runtime's dead letter; here it is only skipped.
          onError(err as Error);
          m.term();
        }
      }
    })();
  }

  /** Stops following. */
  async stop(): Promise<void> {
    this.messages?.stop();
    await this.loop;
  }
}
