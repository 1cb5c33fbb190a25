/**
 * Which NATS failures are transient, a wire fact: the same request may succeed later. nats.js
 * retries its own JetStream requests on a timeout and on no responders only (`_request`, `_publish`),
 * and so do we, adding JetStream's 503 answers (a stream leader being elected, JetStream starting)
 * and a stream writer's publish whose PubAck a reconnect lost.
 * No responders on the JetStream API is what nats.js reports as `JetStreamNotEnabled` ("jetstream is
 * not enabled"), with the no-responders error as its cause; a retried publish whose first attempt is
 * still being stored ("duplicate message id is in process") is transient too. Everything else is terminal: a refused
 * request (size, permission, a wrong sequence), a closed or draining connection, a codec error.
 */
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { NoRespondersError, PermissionViolationError, TimeoutError } from '@nats-io/transport-node';
import { ReplyLostError } from './streamWriter.ts';

/** HTTP-like status JetStream answers while it cannot serve (no leader, not started yet). */
const UNAVAILABLE = 503;
/**
 * JetStream's answer to a publish whose `Nats-Msg-Id` an earlier attempt is still storing (409): a
 * retry after a timeout during an election. The same id again is answered once the first is stored.
 */
const DUPLICATE_IN_PROCESS = 10158;

/** Whether retrying the request that failed with `err` can succeed (see the module comment). */
export function isTransient(err: unknown): boolean {
  // nats.js wraps what happened (`RequestError` → `NoRespondersError`), so walk the causes.
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof TimeoutError || e instanceof NoRespondersError || e instanceof ReplyLostError) return true;
    if (e instanceof JetStreamApiError && (e.status === UNAVAILABLE || e.code === DUPLICATE_IN_PROCESS)) return true;
  }
  return false;
}

/** JetStream's "no suitable peers for placement": a replicated asset asked of a cluster still forming. */
const NO_PEERS_FOR_PLACEMENT = 10005;

/**
 * Whether a request failed because a cluster is not (yet, or not now) able to place a replicated
 * stream or consumer: its servers are still meeting, or too few of them are up. Worth waiting for at
 * start-up; terminal otherwise.
 */
export function isClusterForming(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.code === NO_PEERS_FOR_PLACEMENT;
}

/**
 * The server's refusal behind `err` when the connection's role may not send or subscribe to what it
 * tried (never worth a retry); nats.js may wrap it, so the causes are walked.
 */
export function permissionViolation(err: unknown): PermissionViolationError | undefined {
  for (let e: unknown = err; e instanceof Error; e = e.cause) if (e instanceof PermissionViolationError) return e;
  return undefined;
}

/**
 * Whether a publish was refused because its subject's (or stream's) last sequence was not the one it
 * expected: someone else stored a message there since it was read. Fencing, not a failure to retry.
 */
export function isWrongLastSequence(err: unknown): boolean {
  return (
    err instanceof JetStreamApiError &&
    (err.code === JetStreamApiCodes.StreamWrongLastSequence || err.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown)
  );
}
