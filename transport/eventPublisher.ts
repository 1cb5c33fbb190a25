/**
 * Publishing domain events, the producer's side of the wire contract: validate with the event's
 * schema, encode, publish to the event's lane subject with `Nats-Msg-Id` = event id (a retried
 * publish is stored once), and wait for JetStream's acknowledgement.
 *
 * On a cluster a stream answers nothing for 5–7 s while it elects a new leader ("jetstream not
 * enabled", no responders, timeouts): within `retryForMs` such a transient failure is retried with
 * the same `Nats-Msg-Id`, so the event is stored once however many attempts it took.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { JetStreamClient, PubAck } from '@nats-io/jetstream';
import { UserEvent } from '../machines/events.ts';
import { encode } from './codec.ts';
import { isTransient } from './errors.ts';
import type { Subjects } from './subjects.ts';

/** Options of {@link publishEvent}. */
export interface PublishEventOptions {
  /** How long transient failures are retried before the last one is thrown. @default 0 (not retried) */
  retryForMs?: number;
  /** How long one attempt waits for JetStream's acknowledgement. @default nats.js's (5 s) */
  timeoutMs?: number;
}

/** Validates and publishes one event; resolves once JetStream stored it (or knew it already). */
export async function publishEvent(js: JetStreamClient, subjects: Subjects, event: UserEvent, options: PublishEventOptions = {}): Promise<PubAck> {
  const data = encode(UserEvent, event);
  const subject = subjects.event(event.userId, event.type);
  const giveUpAt = Date.now() + (options.retryForMs ?? 0);
  for (let delayMs = 50; ; delayMs = Math.min(delayMs * 2, 1_000)) {
    try {
      return await js.publish(subject, data, { msgID: event.id, timeout: options.timeoutMs });
    } catch (err) {
      if (!isTransient(err) || Date.now() + delayMs > giveUpAt) throw err;
      await sleep(delayMs);
    }
  }
}
