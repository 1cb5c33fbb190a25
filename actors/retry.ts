/**
 * Retrying I/O that must eventually succeed: a commit that cannot complete must not be skipped, or
 * an event would be acknowledged without its effects. Errors are of two kinds (as Restate's SDK
 * splits them; the transient ones are those nats.js itself retries, see `transport/errors.ts`):
 *
 * - Transient (a timeout, no responders, JetStream's 503s such as "jetstream is not enabled" while a
 *   leader is elected, NATS away): retried here with backoff, a warning and a count per retry, until
 *   it succeeds or is cancelled (the node stops, or the actor that asked stops).
 * - Terminal (everything else) is thrown at once, since trying again would fail the same way:
 *   - a message that does not decode (size, msgpack, schema, user or subject mismatch): a dead
 *     letter, acknowledged (`RuntimeNode.receive`);
 *   - a valid event the statechart throws on: a dead letter, the actor goes on (`UserActor.apply`);
 *   - a fence: the actor stops, its events go back to the lane for the new owner (`UserActor.stop`);
 *   - anything else in an actor's activation or commit (a record that does not parse, a record or
 *     view NATS refuses, a bug): the actor stops, its uncommitted events become dead letters and
 *     are acknowledged (`UserActor.stop`), never redelivered to fail again;
 *   - a dead letter NATS refuses (it is built to always fit): logged as "dead letter not stored"
 *     and acknowledged (`RuntimeNode.storeDeadLetter`).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isTransient } from '../transport/errors.ts';
import type { RetryPolicy } from './config.ts';
import type { Logger } from './logger.ts';
import type { RuntimeMetrics } from './metrics.ts';

/** Where retries report, and what ends them all. */
export interface RetryHost {
  /** Aborted when the node stops: every retry ends with its reason. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly metrics: RuntimeMetrics;
  readonly config: { readonly retry: RetryPolicy };
}

/**
 * Calls `fn` until it succeeds, backing off after each transient failure, with a log line and a
 * count per retry. Throws a terminal error at once, and the abort reason once `host.signal` or
 * `signal` (the caller's own, e.g. a stopped actor's) is aborted.
 */
export async function retry<T>(op: string, fn: () => Promise<T>, host: RetryHost, signal?: AbortSignal): Promise<T> {
  const { firstDelayMs, maxDelayMs } = host.config.retry;
  for (let attempt = 2, delayMs = firstDelayMs; ; attempt++, delayMs = Math.min(delayMs * 2, maxDelayMs)) {
    try {
      return await fn();
    } catch (err) {
      if (!isTransient(err)) throw err;
      const cancel = signal ? AbortSignal.any([host.signal, signal]) : host.signal;
      if (!cancel.aborted) {
        host.metrics.retries++;
        host.log.warn({ op, attempt, delayMs, err: (err as Error).message }, 'transient NATS failure, retrying');
        await sleep(delayMs, undefined, { signal: cancel }).catch(() => {});
      }
      if (cancel.aborted) {
        host.log.info({ op, attempt, err: (err as Error).message }, 'retry cancelled');
        throw cancel.reason;
      }
    }
  }
}
