/**
 * Retrying I/O that must eventually succeed: a commit that cannot complete must not be skipped, or
 * an event would be acknowledged without its effects. Only transient failures are retried (see
 * `transport/errors.ts`); a terminal one (a codec or size error, a refused request, a fence) is
 * thrown at once, since trying again would fail the same way.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isTransient } from '../transport/errors.ts';
import type { Logger } from './logger.ts';
import type { RuntimeMetrics } from './metrics.ts';

const FIRST_DELAY_MS = 50;
const MAX_DELAY_MS = 2_000;

/** Where retries report, and what ends them all. */
export interface RetryHost {
  /** Aborted when the node stops: every retry ends with its reason. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly metrics: RuntimeMetrics;
}

/**
 * Calls `fn` until it succeeds, backing off after each transient failure, with a log line and a
 * count per retry. Throws a terminal error at once, and the abort reason once `host.signal` or
 * `signal` (the caller's own, e.g. a stopped actor's) is aborted.
 */
export async function retry<T>(op: string, fn: () => Promise<T>, host: RetryHost, signal?: AbortSignal): Promise<T> {
  for (let attempt = 2, delayMs = FIRST_DELAY_MS; ; attempt++, delayMs = Math.min(delayMs * 2, MAX_DELAY_MS)) {
    try {
      return await fn();
    } catch (err) {
      if (!isTransient(err)) throw err;
      const cancel = signal ? AbortSignal.any([host.signal, signal]) : host.signal;
      cancel.throwIfAborted();
      host.metrics.retries++;
      host.log.warn({ op, attempt, delayMs, err: (err as Error).message }, 'transient NATS failure, retrying');
      await sleep(delayMs, undefined, { signal: cancel }).catch(() => cancel.throwIfAborted());
    }
  }
}
