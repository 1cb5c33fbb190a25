/**
 * Publishing domain events, the producer's side of the wire contract: validate with the event's
 * schema, encode, publish to the event's lane subject with `Nats-Msg-Id` = event id (a retried
 * publish is stored once), and wait for JetStream's acknowledgement.
 */
import type { JetStreamClient, PubAck } from '@nats-io/jetstream';
import { UserEvent } from '../machines/events.ts';
import { encode } from './codec.ts';
import type { Subjects } from './subjects.ts';

/** Validates and publishes one event; resolves once JetStream stored it (or knew it already). */
export function publishEvent(js: JetStreamClient, subjects: Subjects, event: UserEvent): Promise<PubAck> {
  const data = encode(UserEvent, event);
  return js.publish(subjects.event(event.userId, event.type), data, { msgID: event.id });
}
